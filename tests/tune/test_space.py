"""Search-space files: parsing, conditional (define-by-run) sampling, grids, one-line errors."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from harp.errors import ConfigError
from harp.tune.space import apply_params, base_config, load_space, parse_space

REPO = Path(__file__).resolve().parents[2]
SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))


def test_every_shipped_space_parses_into_a_valid_config():
    names = {p.stem for p in SPACES}
    assert "default" in names
    for prefix in ("000", "001", "002", "003", "004"):
        assert any(n.startswith(prefix) for n in names), f"no search space for study {prefix}"
    for path in SPACES:
        space = load_space(path)
        cfg = base_config(space)
        assert space.params, path
        if cfg.sweep.searcher == "grid":
            assert len(space.grid_points()) >= 2


def test_paper_001_grid_is_the_papers_values():
    space = load_space(REPO / "search_spaces" / "001_timesformer_hmdb25.yaml")
    by_key: dict[str, list] = {}
    for p in space.params:
        by_key.setdefault(p.key, []).extend(p.values)
    assert by_key["optim.lr"] == [0.0035, 0.0045, 0.0007, 0.0001]
    assert by_key["train.batch_size"] == [4, 8]
    assert set(by_key["optim.name"]) == {"sgd", "adam"}
    assert set(by_key["model.family"]) == {"timesformer", "vivit"}  # Table 4: the ViViT comparison
    assert set(by_key["model.pretrained"]) == {"kinetics400", "kinetics600", "ssv2"}
    assert set(by_key["sampling.method"]) == {"uniform", "equidistant", "random"}
    # 4 lr x 2 batch x 2 optimisers in every cell; cells: TimeSformer 3 sources x 3 samplings, ViViT 1 x 3
    assert len(space.grid_points()) == 4 * 2 * 2 * (3 * 3 + 1 * 3)
    cfg = base_config(space)
    assert cfg.train.epochs == 8 and cfg.optim.schedule == "linear" and cfg.optim.weight_decay == 0.003
    # HMDB_simp rebuilt from HMDB51: 25 classes x 50 videos, 5 / 9 / 36 a class = 125 / 225 / 900
    assert len(set(cfg.data.classes)) == 25 and cfg.data.per_class == 50
    from harp.data.splits import exact_counts

    assert exact_counts(cfg.data.per_class, cfg.data.test_fraction, cfg.data.val_fraction) == {"train": 36, "val": 9, "test": 5}
    assert cfg.sweep.group_by == ["model.family", "model.pretrained", "sampling.method"]


PAPER_SPACES = [p for p in SPACES if p.stem[:3] in ("000", "001", "002", "003", "004")]


@pytest.mark.parametrize("path", PAPER_SPACES, ids=lambda p: p.stem[:3])
def test_every_paper_space_declares_its_table_and_what_it_changes(path):
    """The header says which table it reproduces and what it deliberately changes; the sweep says how
    the table is laid out (group_by keys its cells; rows and columns are among them), and the schedule
    never ranks one cell's trials against another's."""
    text = path.read_text()
    header = text.split("\ndescription:")[0]
    assert "Reproduces" in header and "Deliberate changes" in header and "Table" in header
    cfg = base_config(load_space(path))
    assert cfg.sweep.group_by, path
    laid_out = [*cfg.sweep.table.rows, *cfg.sweep.table.columns]
    assert laid_out and set(laid_out) <= set(cfg.sweep.group_by)
    if len(cfg.sweep.group_by) > 1:
        assert cfg.sweep.scheduler == "none", "early stopping would compare trials of different cells"


def _distinct_trials(space, cfg):
    """The distinct model x data x sampling configurations of a grid space, as trials get them."""
    import optuna

    seen: dict[str, dict] = {}
    for point in space.grid_points():
        params = space.sample(optuna.trial.FixedTrial(point))
        relevant = {k: v for k, v in params.items() if k.startswith(("model.", "sampling.", "data"))}
        seen.setdefault(repr(sorted(relevant.items())), params)
    return [apply_params(cfg, params) for params in seen.values()]


def test_every_paper_space_builds_each_model_with_its_protocol():
    """Every distinct trial of the grid spaces resolves, builds (on the meta device) and gets the
    sampling and input normalisation its paper's protocol names."""
    import torch

    from harp.models import resolve
    from harp.models.pretrained import hub_target
    from harp.train.run import model_config, sampling_config

    checked: dict[str, list] = {}
    built: dict[str, torch.nn.Module] = {}
    for path in PAPER_SPACES:
        space = load_space(path)
        cfg = base_config(space)
        if cfg.sweep.searcher != "grid":
            continue
        for trial in _distinct_trials(space, cfg):
            resolved = resolve(model_config(trial), 25)
            sampling = sampling_config(trial, resolved)
            key = repr((resolved.spec.name, resolved.args))
            if key not in built:
                with torch.device("meta"):
                    built[key] = resolved.spec.build(resolved.args)
            model = built[key]
            checked.setdefault(path.stem[:3], []).append((trial, resolved, sampling, model))
    for trial, _, sampling, _ in checked["001"]:
        frames = {"timesformer": (8, 32), "vivit": (32, 2)}[trial.model.family]
        assert (sampling.num_frames, sampling.interval) == frames and trial.data.short_video == "augment"
    families_003 = {t.model.family: (t, r, s, m) for t, r, s, m in checked["003"]}
    assert set(families_003) == {"late_fusion", "lrcn", "c3d", "i3d", "i3d_nonlocal"}
    for family in ("late_fusion", "lrcn"):
        trial, resolved, sampling, model = families_003[family]
        assert hub_target(resolved.spec, trial.model.pretrained, model).endswith("resnet152-394f9c45.pth")
        assert sampling.method == "equidistant" and sampling.num_frames == 5
    c3d = [r for t, r, s, m in checked["003"] if t.model.family == "c3d"][0]
    assert c3d.norm.channels == "bgr" and c3d.mean == pytest.approx((102 / 255, 98 / 255, 90 / 255))
    nonlocal_trial = families_003["i3d_nonlocal"][0]
    assert nonlocal_trial.model.pretrained == "kinetics400" and nonlocal_trial.model.options["nonlocal_pool"] == "projection"
    assert {s.method for t, r, s, m in checked["003"] if t.model.family in ("c3d", "i3d", "i3d_nonlocal")} == {"dense", "multi_clip"}
    assert all(t.eval.num_clips > 1 for t, *_ in checked["003"]), "test clips averaged, as the paper's"
    for trial, _, sampling, _ in checked["004"]:
        if trial.model.family == "mdt":  # 16 segments x 5 adjacent frames
            assert (sampling.method, sampling.segment_frames, sampling.num_frames) == ("segment_frames", 5, 80)
        else:
            assert (sampling.method, sampling.num_frames) == ("equidistant", 16)
        if trial.model.pretrained == "res2net50":
            assert trial.model.options["base_width"] == 26
        assert trial.sweep.objectives == ["gflops:min"]
    assert {t.model.options.get("salience") for t, *_ in checked["004"] if t.model.family == "mdt"} == {True, False}


def test_conditional_parameters_never_appear_where_they_do_not_apply():
    from harp.tune.study import make_sampler

    space = load_space(REPO / "search_spaces" / "default.yaml")
    cfg = base_config(space)
    sampler = make_sampler("random", seed=0, num_samples=60, multi_objective=False, space=space)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    seen = {"sgd": 0, "adamw": 0, "tsm": 0, "cnn3d_attention": 0}
    for i in range(60):
        trial = study.ask()
        params = space.sample(trial)
        assert ("optim.momentum" in params) == (params["optim.name"] == "sgd")
        assert ("model.options.fold_div" in params) == (params["model.family"] == "tsm")
        # Optuna only saw the applicable ones, each under its config key (optim.lr once, whichever range)
        assert set(trial.params) == set(params)
        if params["optim.name"] == "sgd":
            assert 1e-2 <= params["optim.lr"] <= 1e-1
        else:
            assert 2e-3 <= params["optim.lr"] <= 3e-2
        seen[params["optim.name"]] += 1
        seen[params["model.family"]] += 1
        if i % 15 == 0:  # the sampled values make a valid config (slow-ish: a full validation)
            trial_cfg = apply_params(cfg, params)
            assert trial_cfg.optim.name == params["optim.name"] and trial_cfg.optim.lr == params["optim.lr"]
        study.tell(trial, 0.0)
    assert min(seen.values()) > 5


def test_grid_expands_conditions_and_alternatives():
    space = parse_space(
        {
            "params": {
                "data.format": {"type": "grid", "values": ["ucf101", "hmdb51"]},
                "data.root": [
                    {"type": "grid", "values": ["data/UCF-101"], "when": {"data.format": "ucf101"}},
                    {"type": "grid", "values": ["data/hmdb51"], "when": {"data.format": "hmdb51"}},
                ],
                "optim.name": {"type": "grid", "values": ["sgd", "adam"]},
                "optim.momentum": {"type": "grid", "values": [0.8, 0.9], "when": {"optim.name": "sgd"}},
                "optim.milestones": {"type": "categorical", "values": [[30, 40, 50], [10]]},
            }
        },
        name="t",
    )
    points = space.grid_points()
    assert len(points) == 2 * (2 + 1) * 2
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for point in points:
        study.enqueue_trial(point)
    sampled = [space.sample(study.ask()) for _ in points]
    for params in sampled:
        assert params["data.root"] == ("data/UCF-101" if params["data.format"] == "ucf101" else "data/hmdb51")
        assert params["optim.milestones"] in ([30, 40, 50], [10])  # lists travel through Optuna and back
    assert len({str(sorted(p.items())) for p in sampled}) == len(points)


@pytest.mark.parametrize(
    "content, expected",
    [
        ("params:\n  optim.lrr: {type: uniform, low: 0.1, high: 1}\n", "params.optim.lrr: unknown config key 'optim.lrr'"),
        ("params:\n  optim.lr: {type: gaussian, low: 0.1, high: 1}\n", "params.optim.lr: unknown type 'gaussian'"),
        ("params:\n  optim.lr: {type: loguniform, low: 0.1}\n", "params.optim.lr: type loguniform needs high"),
        ("params:\n  optim.lr: {type: loguniform, low: 0, high: 1}\n", "loguniform needs low > 0"),
        ("params:\n  optim.momentum: {type: uniform, low: 0.1, high: 1, when: {optim.name: sgd}}\n",
         "'optim.name' must be a parameter declared before 'optim.momentum'"),
        ("params:\n  optim.name: {type: categorical, values: [sgd]}\n"
         "  optim.momentum: {type: uniform, low: 0.1, high: 1, when: {optim.name: sdg}}\n", "optim.name='sdg' is not one of"),
        ("params:\n  model.family: {type: categorical, values: [tsm, resnet9000]}\n", "params.model.family='resnet9000'"),
        ("config:\n  train.epoch: 3\n", "config.train.epoch: unknown config key"),
        ("sweep:\n  num_sample: 3\n", "sweep.num_sample: unknown sweep setting"),
        ("parms: {}\n", "unknown top-level key 'parms'"),
        ("params:\n  optim.lr: {type: uniform, low: 1, high: 2, step: 3}\n", "unknown field 'step' for type uniform"),
        ("params: [1, 2\n", "not a valid search-space YAML"),
    ],
)
def test_a_bad_space_file_gets_one_clear_line(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        base_config(load_space(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert expected in message


def test_base_config_layers_in_memory_without_temporary_files(monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise AssertionError("a search space's base config must not go through temporary files")

    for name in ("mkdtemp", "mkstemp", "TemporaryDirectory", "NamedTemporaryFile", "TemporaryFile"):
        monkeypatch.setattr(tempfile, name, refuse)
    space = load_space(REPO / "search_spaces" / "001_timesformer_hmdb25.yaml")
    cfg = base_config(space, ["train.epochs=2"])
    assert cfg.data.format == "hmdb51" and cfg.train.epochs == 2  # the space's preset, the CLI's override
    assert cfg.sweep.search_space == str(space.path)
    assert base_config(space, ["data=ucf101"]).data.format == "ucf101"  # a CLI preset beats the space's
    trial = apply_params(cfg, {"optim.name": "sgd", "model.options.extra": 3})
    assert trial.optim.name == "sgd" and trial.model.options["extra"] == 3


def test_space_values_are_checked_by_the_schema_and_the_registry():
    fixed = parse_space({"config": {"model.family": "nope"}, "params": {"optim.lr": {"type": "uniform", "low": 0.1, "high": 1}}}, name="t")
    with pytest.raises(ConfigError, match="^t: unknown model family 'nope'; choose one of: "):
        base_config(fixed)
    bad_enum = parse_space({"params": {"sweep.searcher": {"type": "categorical", "values": ["tpe", "bayes"]}}}, name="t")
    with pytest.raises(ConfigError, match=r"^t: params.sweep.searcher='bayes': sweep.searcher='bayes' is not valid; choose one of: tpe"):
        base_config(bad_enum)


def test_describe_space_lists_what_varies():
    from harp.tune.space import describe_space

    text = describe_space(load_space(REPO / "search_spaces" / "default.yaml"))
    assert "optim.lr" in text and "when optim.name in ['sgd']" in text
