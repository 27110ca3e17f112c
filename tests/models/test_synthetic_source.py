"""``synthetic-src``, the pretraining source harp builds itself (``harp pretrain``).

The module builds it once for cnn3d_attention through the command, with a tiny recipe (a few 32 px
clips, two optimiser steps) in an empty weights cache, then checks: the file sits in the torch
weights cache under the family and its architecture, carries the metadata every harp weights file
carries plus the source's, loads into a model of another class count with the head replaced, and a
second build finds it cached; a missing one fails in one line saying how to build it; the
architecture key separates what cannot share weights and joins what can; and the sweep hook asks
for exactly the architectures the main job's space samples.
"""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from safetensors.torch import load_file

from harp import cli
from harp.commands.pretrain import sweep_builds
from harp.config.schema import ModelConfig
from harp.models import build_model, get_family, resolve
from harp.models.built_sources import architecture_key
from harp.models.pretrained import PretrainedError, load_pretrained, torch_checkpoint_dir
from harp.train.checkpoint import read_model_card
from harp.train.pretrain import SOURCE_TASKS, cache_path, read_source_metadata, source_config
from harp.tune.space import base_config, find_space, load_space

SOURCE = "synthetic-src"
SOURCE_CLASSES = list(SOURCE_TASKS[SOURCE].config["data.classes"])
# The recipe at test size: 4 clips a class at 32 px, one epoch of two optimiser steps.
TINY_RECIPE = (
    "data.synth.clips_per_class=4", "data.synth.min_size=32", "data.synth.max_size=32", "data.synth.min_frames=8",
    "data.synth.max_frames=10", "data.synth.short_fraction=0", "data.val_fraction=0.25",
    "train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=4",
)  # fmt: skip
CNN = ModelConfig(family="cnn3d_attention")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty torch weights cache ($TORCH_HOME) for the whole module."""
    home = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield home


def _harp(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def built(cache, tmp_path_factory):
    """`harp pretrain synthetic-src --family cnn3d_attention` (tiny recipe): its output and file."""
    data = tmp_path_factory.mktemp("source_videos")
    code, output = _harp("pretrain", SOURCE, "--family", "cnn3d_attention", "--data-root", str(data), *TINY_RECIPE)
    assert code == 0, output
    return output, cache_path(SOURCE, CNN), data


def test_the_weights_land_in_the_torch_cache_under_family_and_architecture(built, cache):
    output, path, _ = built
    assert "building it once" in output and "built in" in output, output
    assert path.is_file() and path.parent == torch_checkpoint_dir() / f"harp-{SOURCE}"
    assert torch_checkpoint_dir() == cache / "hub" / "checkpoints"
    spec = get_family("cnn3d_attention")
    fresh = spec.build(resolve(CNN, 3).args)
    assert path.name == f"cnn3d_attention-{architecture_key(fresh, spec.head_prefixes)}.safetensors"
    assert not list(path.parent.glob("*.partial")), "the file is written beside and renamed"


def test_the_weights_carry_harp_metadata_and_the_source(built):
    _, path, data = built
    meta = read_source_metadata(path)
    spec = get_family("cnn3d_attention")
    # What every harp weights file says (train.checkpoint.weights_metadata) ...
    assert meta["family"] == "cnn3d_attention" and meta["size"] == "tiny"
    assert json.loads(meta["class_names"]) == SOURCE_CLASSES and meta["num_classes"] == str(len(SOURCE_CLASSES))
    assert (int(meta["frames"]), int(meta["frame_size"])) == (8, 32)
    # ... the input it was trained on is what a run from this named source is fed with
    norm = spec.source_norm(SOURCE)
    assert json.loads(meta["mean"]) == pytest.approx(list(norm.mean)) and json.loads(meta["std"]) == pytest.approx(list(norm.std))
    # ... and what the source is
    assert meta["source"] == SOURCE and path.stem.endswith(meta["architecture"])
    task = json.loads(meta["source_task"])
    assert task["data"]["classes"] == SOURCE_CLASSES and task["data"]["synth"]["seed"] == 1
    assert task["data"]["root"] == str(data)
    card = read_model_card(path)
    assert card.family == "cnn3d_attention" and list(card.class_names) == SOURCE_CLASSES
    assert card.config.model.pretrained == "none", "the source run itself starts from scratch"


def test_a_run_loads_it_with_the_head_replaced(built, capsys):
    _, path, _ = built
    stored = load_file(str(path))
    model = build_model(ModelConfig(family="cnn3d_attention", pretrained=SOURCE), 6)
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert value.shape[0] == 6
        else:
            assert torch.equal(value, stored[key]), key
    fresh = get_family("cnn3d_attention").build(resolve(CNN, 6).args)
    report = load_pretrained(fresh, get_family("cnn3d_attention"), SOURCE)
    assert report is not None and report.matched_fraction == 1.0 and report.clean
    assert len(report.loaded) == len(stored) - 2
    assert sorted((k, tuple(a), tuple(b)) for k, a, b in report.head_replaced) == [("fc.bias", (8,), (6,)), ("fc.weight", (8, 64), (6, 64))]
    # the load says so even where no logging is configured (a Ray trial): on stderr
    assert f"cnn3d_attention <- {SOURCE}: loaded {len(stored) - 2}/{len(stored)} tensors" in capsys.readouterr().err


def test_a_second_build_finds_it_cached(built):
    _, path, data = built
    before = path.stat().st_mtime_ns
    code, output = _harp("pretrain", "--family", "cnn3d_attention", "--data-root", str(data), *TINY_RECIPE)
    assert code == 0 and f"cached ({path})" in output and "building" not in output
    assert path.stat().st_mtime_ns == before


def test_a_missing_source_fails_in_one_line_with_how_to_build_it(cache, synthetic_config, tmp_path, capsys):
    missing = cache_path(SOURCE, ModelConfig(family="tsm"))
    with pytest.raises(PretrainedError) as caught:
        build_model(ModelConfig(family="tsm", pretrained=SOURCE), 6)
    message = str(caught.value)
    assert "\n" not in message and str(missing) in message
    assert f"harp pretrain {SOURCE} --family tsm" in message
    # the same line from `harp train`, before any epoch, and `harp models fetch` says it is not a download
    data = f"data.root={synthetic_config.data.root}"
    code = cli.main(["train", data, "data.synth.num_classes=4", "data.num_workers=0", "model.family=tsm", f"model.pretrained={SOURCE}",
                     f"train.output_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("harp train: error: tsm synthetic-src weights") and "harp pretrain" in err[-1], err
    assert cli.main(["models", "fetch", SOURCE, "--family", "tsm"]) == 2
    assert "built on this machine, not downloaded" in capsys.readouterr().err


def test_the_architecture_key_follows_the_weights_not_the_head():
    def key(family: str, classes: int, **options) -> str:
        spec = get_family(family)
        return architecture_key(spec.build(resolve(ModelConfig(family=family, options=options), classes).args), spec.head_prefixes)

    assert key("tsm", 3) == key("tsm", 11) == key("tsm", 3, fold_div=4), "head size and weightless options share one file"
    assert key("cnn3d_attention", 3) != key("cnn3d_attention", 3, channels=8), "another width is another file"
    assert cache_path(SOURCE, CNN) != cache_path(SOURCE, ModelConfig(family="cnn3d_attention", size="base"))


def test_the_source_run_trains_the_run_architecture_from_scratch_on_its_own_videos(cache):
    cfg = source_config(SOURCE, ModelConfig(family="tsm", pretrained=SOURCE, num_classes=6, options={"fold_div": 4}))
    assert cfg.model.family == "tsm" and cfg.model.options == {"fold_div": 4} and cfg.model.pretrained == "none"
    assert cfg.model.num_classes is None and cfg.data.classes == SOURCE_CLASSES and cfg.data.synth.seed == 1
    assert cfg.data.root.startswith(str(torch_checkpoint_dir() / f"harp-{SOURCE}" / "data-"))
    other = source_config(SOURCE, ModelConfig(family="tsm"), overrides=["data.synth.seed=2"])
    assert other.data.root != cfg.data.root, "other generator settings get other videos"
    with pytest.raises(Exception, match="does not declare the pretraining source"):
        source_config(SOURCE, ModelConfig(family="c3d"))


def test_the_sweep_builds_what_the_main_job_samples():
    space = load_space(find_space("default"))
    cfg = base_config(space)
    builds = sweep_builds(cfg, space)
    assert {(source, model.family, model.options.get("fold_div")) for source, model in builds} == {
        (SOURCE, "cnn3d_attention", None), (SOURCE, "tsm", 4), (SOURCE, "tsm", 8),
    }  # fmt: skip
    assert all(model.size == "tiny" for _, model in builds)
    assert len({cache_path(source, model) for source, model in builds}) == 2, "fold_div holds no weights: one file for tsm"
    paper = load_space(find_space("001_timesformer_hmdb25"))
    assert sweep_builds(base_config(paper), paper) == [], "downloaded sources are not built"
