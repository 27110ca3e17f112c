"""A study's cells and table without running a sweep: the layout and its one-line errors, which
trials share a cell (data sets named by preset, format or folder), each cell ranked on its own,
the Markdown grid, and a data preset as a search-space parameter."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from harp.config.load import load_config, to_dict
from harp.errors import ConfigError
from harp.export.cells import cell_dir_names, cell_key, cell_labels, study_layout, value_order
from harp.export.study import CellResult
from harp.export.table import csv_rows, render_markdown
from harp.tune.results import TrialRecord, group_trials, pick_best
from harp.tune.space import apply_params, base_config, parse_space
from harp.tune.trial import trial_config


def _cfg(*overrides: str):
    return load_config(list(overrides))


def test_layout_defaults_to_first_key_as_rows_and_the_rest_as_columns():
    layout = study_layout(_cfg("sweep.group_by=[model.family,data,optim.name]"))
    assert layout is not None
    assert (layout.rows, layout.columns) == (("model.family",), ("data", "optim.name"))
    layout = study_layout(_cfg("sweep.group_by=[data,model.family]", "sweep.table.columns=[data]"))
    assert layout is not None and (layout.rows, layout.columns) == (("model.family",), ("data",))
    single = study_layout(_cfg("sweep.group_by=[data]"))
    assert single is not None and (single.rows, single.columns) == (("data",), ())
    assert study_layout(_cfg()) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sweep.group_by=[model.famly]"], "unknown config key 'model.famly'"),
        (["sweep.group_by=[data,data]"], "names a key twice"),
        (["sweep.group_by=[data]", "sweep.table.rows=[model.family]"], "'model.family' is not one of sweep.group_by"),
        (["sweep.group_by=[data,model.family]", "sweep.table.rows=[data]", "sweep.table.columns=[data]"], "'data' is in both"),
        (["sweep.table.rows=[data]"], "set sweep.group_by"),
    ],
)
def test_a_bad_layout_is_one_line_that_names_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        study_layout(_cfg(*overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def _record(trial_id: str, params: dict, vals: list[float], metric: str = "val_top1") -> TrialRecord:
    history = [{"epoch": i + 1, metric: v} for i, v in enumerate(vals)]
    return TrialRecord(trial_id=trial_id, params=params, status="TERMINATED", path=None, history=history)


def test_trials_group_by_data_set_and_family_and_each_cell_ranks_its_own():
    """Trials on two data roots x two families: four cells, each with its own best, even where
    another cell's trials score higher on their (different) validation split."""
    base = to_dict(_cfg("data.root=/data/a", "sweep.group_by=[data,model.family]"))
    records = [
        _record("t1", {"data.root": "/data/a", "model.family": "tsm", "optim.lr": 0.1}, [0.2, 0.3]),
        _record("t2", {"data.root": "/data/b", "model.family": "tsm", "optim.lr": 0.1}, [0.9, 0.8]),
        _record("t3", {"data.root": "/data/a", "model.family": "tsm", "optim.lr": 0.01}, [0.4, 0.35]),
        _record("t4", {"data.root": "/data/a", "model.family": "tsn", "optim.lr": 0.01}, [0.1]),
        _record("t5", {"data.root": "/data/b", "model.family": "tsn", "optim.lr": 0.01}, [0.5]),
    ]
    keys = ("data", "model.family")
    cells = group_trials(records, lambda r: cell_key(trial_config(base, r.params), r.params, keys))
    assert [[r.trial_id for r in members] for members in cells.values()] == [["t1", "t3"], ["t2"], ["t4"], ["t5"]]
    labels = cell_labels(cells, keys)
    assert list(labels.values()) == [("a", "tsm"), ("b", "tsm"), ("a", "tsn"), ("b", "tsn")]
    best = {labels[k]: pick_best(v, "val_top1", "max").trial_id for k, v in cells.items()}
    assert best == {("a", "tsm"): "t3", ("b", "tsm"): "t2", ("a", "tsn"): "t4", ("b", "tsn"): "t5"}
    assert list(cell_dir_names(labels).values()) == ["a__tsm", "b__tsm", "a__tsn", "b__tsn"]


def test_a_data_set_is_named_by_its_preset_else_its_format_else_its_folder():
    base = to_dict(_cfg())
    by_preset = [{"data": "ucf101", "data.root": "/x/UCF-101"}, {"data": "hmdb51", "data.root": "/x/hmdb51"}]
    by_format = [{"data.format": "ucf101", "data.root": "/x/one"}, {"data.format": "hmdb51", "data.root": "/x/two"}]
    by_folder = [{"data.root": "/x/one"}, {"data.root": "/y/two"}]
    for params, expected in ((by_preset, ["ucf101", "hmdb51"]), (by_format, ["ucf101", "hmdb51"]), (by_folder, ["one", "two"])):
        cells = [cell_key(trial_config(base, p), p, ["data"]) for p in params]
        assert [label[0] for label in cell_labels(cells, ["data"]).values()] == expected
    # one data set reached two ways (a split setting that is not the data set) is one cell
    same = [cell_key(trial_config(base, p), p, ["data"]) for p in ({"data.num_workers": 0}, {"data.num_workers": 1})]
    assert same[0] == same[1]


def test_table_order_follows_the_space_and_the_grid_puts_each_cell_in_its_place():
    space = parse_space(
        {"params": {"model.family": {"type": "grid", "values": ["tsn", "tsm", "tea"]}, "data": {"type": "grid", "values": ["ucf101", "hmdb51"]}}},
        name="order",
    )
    assert value_order(space, "model.family", ["tea", "tsn", "other", "tsm"]) == ["tsn", "tsm", "tea", "other"]
    assert value_order(space, "data", ["hmdb51", "ucf101"]) == ["ucf101", "hmdb51"]
    cfg = _cfg("sweep.group_by=[model.family,data]", "sweep.name=order")
    layout = study_layout(cfg)
    assert layout is not None

    def cell(family: str, data: str, top1: float | None, refit: bool = False, note: str = "") -> CellResult:
        test = {"top1": top1, "top5": 1.0, "mean_class_accuracy": top1, "num_videos": 10} if top1 is not None else {}
        return CellResult(labels={"model.family": family, "data": data}, name=f"{data}__{family}", trials=3, epochs_spent=9,
                          trial_id=None if note else f"{family}-{data}", epoch=2, epochs_planned=3, val=0.5, test=test,
                          protocol={"split": "test", "num_clips": 10, "num_crops": 3}, gflops_per_view=2.0, mparams=1.5,
                          refit=refit, refit_epochs=2 if refit else None, note=note)

    cells = [cell("tsm", "hmdb51", 0.25), cell("tsn", "ucf101", 0.875, refit=True), cell("tsn", "hmdb51", None, note="no trial reported val_top1"),
             cell("tsm", "ucf101", 0.5)]
    markdown = render_markdown(cells, layout, cfg, space, evaluated=True)
    grid = markdown.split("\n\n")[1].splitlines()
    assert grid[0] == "| model.family \\ data | ucf101 | hmdb51 |"
    assert grid[2] == "| tsn | 87.5† | – |" and grid[3] == "| tsm | 50.0 | 25.0 |"
    assert "10 clips x 3 crops per video" in markdown and "no trial reported val_top1" in markdown
    rows = csv_rows(cells, layout, "val_top1")
    assert rows[1]["gflops_per_video"] == pytest.approx(60.0) and rows[1]["views"] == 30 and rows[1]["refit"] is True


def test_a_data_preset_varies_as_a_parameter_and_keeps_the_other_data_settings(tmp_path):
    space = parse_space(
        {
            "config": {"data.num_workers": 0, "data.val_fraction": 0.2},
            "params": {
                "data": {"type": "grid", "values": ["synthetic", "ucf101"]},
                "data.root": [{"type": "grid", "values": ["videos/ucf"], "when": {"data": "ucf101"}},
                              {"type": "grid", "values": [str(tmp_path / "syn")], "when": {"data": "synthetic"}}],
            },
        },
        name="presets",
    )
    space.base_dir = tmp_path
    cfg = base_config(space)
    sampled = [space.sample(optuna.trial.FixedTrial(point)) for point in space.grid_points()]
    assert [s["data.root"] for s in sampled] == [str(tmp_path / "syn"), str(tmp_path / "videos" / "ucf")]  # relative -> from base_dir
    synthetic, ucf = (apply_params(cfg, s) for s in sampled)
    assert (ucf.data.format, ucf.data.flip, ucf.data.flip_swap) == ("ucf101", "safe", {})
    assert (synthetic.data.format, synthetic.data.flip) == ("synthetic", "swap") and synthetic.data.flip_swap
    for trial_cfg in (synthetic, ucf):
        assert (trial_cfg.data.num_workers, trial_cfg.data.val_fraction) == (0, 0.2)
    # a preset whose own root is relative is anchored too, when no data.root is sampled
    bare = parse_space({"params": {"data": {"type": "grid", "values": ["hmdb51"]}}}, name="bare")
    bare.base_dir = Path("/work/here")
    assert bare.sample(optuna.trial.FixedTrial({"data": "hmdb51"}))["data.root"] == "/work/here/data/hmdb51"
    with pytest.raises(ConfigError, match="'ucf' is not a data preset"):
        parse_space({"params": {"data": {"type": "grid", "values": ["ucf"]}}}, name="bad")


def test_a_study_that_leaves_out_its_data_sets_is_split_by_them_anyway():
    """group_by=[model.family] over trials on two data roots: ranking their validation scores
    together would compare data sets, so the data set becomes a column key too."""
    from harp.export.study import _split_by_data_set

    base = to_dict(_cfg("sweep.group_by=[model.family]"))
    params = {"t1": {"data.root": "/d/a", "model.family": "tsm"}, "t2": {"data.root": "/d/b", "model.family": "tsm"}}
    resolved = {tid: trial_config(base, p) for tid, p in params.items()}
    layout = study_layout(load_config(["sweep.group_by=[model.family]"]))
    assert layout is not None
    split = _split_by_data_set(layout, resolved, params)
    assert (split.keys, split.rows, split.columns) == (("model.family", "data"), ("model.family",), ("data",))
    one = {"t1": params["t1"]}
    assert _split_by_data_set(layout, {"t1": resolved["t1"]}, one) == layout
