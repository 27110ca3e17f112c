"""The registry: every family is declared completely, configs resolve or fail in one line, and
``harp models`` / ``harp.models.flops`` report measured numbers that a hand count confirms."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from harp.commands import models as commands
from harp.config.schema import ModelConfig
from harp.errors import ConfigError, HarpError
from harp.models import FAMILIES, build_model, family_names, get_family, resolve
from harp.models.flops import count_flops, count_params, model_cost
from harp.models.spec import FamilySpec
from harp.papers import PAPERS

NAMED_SOURCES = {"imagenet", "kinetics400", "kinetics600", "ssv2", "res2net50", "synthetic-src"}  # synthetic-src: built here
ISSUE_FAMILIES = {
    "timesformer", "vivit", "videomae", "c3d", "r3d", "r2plus1d", "i3d", "i3d_nonlocal", "cnn3d_attention",
    "tsn", "tsm", "tea", "late_fusion", "lrcn", "mdt",
}


def test_registry_holds_exactly_the_issue_families():
    assert set(family_names()) == ISSUE_FAMILIES


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_spec_is_complete(name):
    spec = get_family(name)
    assert isinstance(spec, FamilySpec) and spec.name == name
    assert spec.description and spec.paper in PAPERS
    assert {"tiny", "base"} <= set(spec.sizes)
    tiny, base = spec.sizes["tiny"], spec.sizes["base"]
    assert tiny.frames <= 16 and tiny.frame_size <= 64, "tiny must train on CPU in seconds"
    assert base.frame_size >= 112 and base.frames >= tiny.frames
    for stats in (spec.mean, spec.std):
        assert len(stats) == 3 and all(0 < v < 1 for v in stats)
    assert 0 <= spec.default_dropout < 1
    assert set(spec.pretrained_sources) <= NAMED_SOURCES
    assert set(spec.hub_checkpoints) <= set(spec.pretrained_sources)
    for target in spec.hub_checkpoints.values():
        assert target.startswith("https://") or target.count("/") == 1, target
    # The head prefixes name the classifier: its output layer has one row per class.
    model = spec.build(resolve(ModelConfig(family=name, size="tiny"), 11).args)
    head = {k: v for k, v in model.state_dict().items() if k.startswith(spec.head_prefixes)}
    assert any(v.shape[0] == 11 for v in head.values()), sorted(head)


def test_transformer_sources_map_to_the_public_checkpoints():
    assert dict(get_family("timesformer").hub_checkpoints) == {
        "kinetics400": "facebook/timesformer-base-finetuned-k400",
        "kinetics600": "facebook/timesformer-base-finetuned-k600",
        "ssv2": "facebook/timesformer-base-finetuned-ssv2",
    }
    assert dict(get_family("vivit").hub_checkpoints) == {"kinetics400": "google/vivit-b-16x2-kinetics400"}
    assert dict(get_family("videomae").hub_checkpoints) == {
        "kinetics400": "MCG-NJU/videomae-base-finetuned-kinetics",
        "ssv2": "MCG-NJU/videomae-base-finetuned-ssv2",
    }


def test_resolve_fills_family_defaults_and_config_wins():
    r = resolve(ModelConfig(family="timesformer", size="base"), 101)
    assert (r.frames, r.frame_size, r.args.dropout, r.args.num_classes) == (8, 224, 0.0, 101)
    r = resolve(ModelConfig(family="timesformer", size="tiny", frames=4, frame_size=48, dropout=0.3), 5)
    assert (r.frames, r.frame_size, r.args.dropout) == (4, 48, 0.3)
    assert r.mean == get_family("timesformer").mean


@pytest.mark.parametrize(
    "cfg, num_classes, fragment",
    [
        (ModelConfig(family="resnext"), 3, "unknown model family 'resnext'; choose one of: timesformer, vivit"),
        (ModelConfig(family="c3d", size="huge"), 3, "model.size='huge' is not available for c3d; choose one of: tiny, base"),
        (ModelConfig(family="c3d", pretrained="kinetics400"), 3, "choose one of: none, file:PATH, hf:REPO_OR_DIR"),
        (ModelConfig(family="vivit", pretrained="ssv2"), 3, "choose one of: none, kinetics400, file:PATH"),
        (ModelConfig(family="tsm"), None, "at least 2 classes"),
        (ModelConfig(family="vivit", frames=7), 3, "multiple of the tubelet size 2"),
        (ModelConfig(family="timesformer", frame_size=36), 3, "multiple of the patch size 8"),
        (ModelConfig(family="videomae", options={"depth": 3}), 3, "not options of the transformer families"),
    ],
)
def test_invalid_configs_fail_in_one_line_listing_what_is_valid(cfg, num_classes, fragment):
    with pytest.raises(HarpError) as info:
        build_model(cfg, num_classes)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_build_model_honours_frames_frame_size_and_classes():
    model = build_model(ModelConfig(family="videomae", size="tiny", frames=4, frame_size=48), 9).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 4, 48, 48)).shape == (2, 9)
    assert model.config.num_frames == 4 and model.config.image_size == 48


def test_flop_counter_matches_a_hand_count_for_vivit():
    """Tubelet conv + 2 layers x (QKV, attention, output, MLP) + classifier, multiply-add = 2 FLOPs.

    The attention matmuls run through SDPA here, so this also proves flop_counter counts SDPA."""
    t, s, p, d, inner, layers, classes = 8, 32, 8, 64, 128, 2, 400
    n = (t // 2) * (s // p) ** 2 + 1  # tokens incl. CLS
    conv = (n - 1) * d * (3 * 2 * p * p)
    per_layer = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * inner
    expected = 2 * (conv + layers * per_layer + d * classes)
    cost = model_cost("vivit", "tiny", classes)
    assert cost.flops == expected
    assert cost.gmacs == pytest.approx(expected / 2e9)


def test_flop_counter_matches_a_hand_count_for_a_conv3d():
    model = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 5))
    flops = count_flops(model, (1, 3, 4, 16, 16))
    assert flops == 2 * (4 * 16 * 16 * 8 * 3 * 27 + 8 * 5)
    assert count_params(model) == 8 * 3 * 27 + 8 + 8 * 5 + 5


def test_published_parameter_counts_at_base_size():
    """Architectures whose published weight files must load have their published sizes exactly
    (torchvision r3d_18, r2plus1d_18, resnet50 with a 400-class fc) or closely (TimeSformer 121.4M)."""
    assert model_cost("r3d", "base", 400).params == 33_371_472
    assert model_cost("r2plus1d", "base", 400).params == 31_505_325
    assert model_cost("tsn", "base", 400).params == 25_557_032 - 2048 * 1000 - 1000 + 2048 * 400 + 400
    assert model_cost("timesformer", "base", 400).params == pytest.approx(121.4e6, rel=0.005)
    assert model_cost("timesformer", "base", 400).gmacs == pytest.approx(196, rel=0.01)  # the paper's 0.59 TFLOPs / 3 views


def test_harp_models_table_and_json(capsys):
    assert commands.main(["--size", "tiny", "--family", "timesformer", "c3d", "--json", "--num-classes", "10"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["family"], r["size"]) for r in rows] == [("timesformer", "tiny"), ("c3d", "tiny")]
    for row in rows:
        model = build_model(ModelConfig(family=row["family"], size="tiny"), 10)
        assert row["params"] == count_params(model)
        assert row["gflops"] > 0 and row["frames"] == 8
        assert "none" in row["sources"]
    assert "kinetics600" in rows[0]["sources"]
    assert commands.main(["--size", "tiny"]) == 0
    table = capsys.readouterr().out
    for name in FAMILIES:
        assert f"\n{name} " in table
    assert "failed to build" not in table


def test_harp_models_fetch_errors_without_network():
    with pytest.raises(HarpError, match="needs --family"):
        commands.main(["fetch", "kinetics400"])
    with pytest.raises(HarpError, match="is local"):
        commands.main(["fetch", "file:/tmp/x.safetensors"])
    with pytest.raises(HarpError, match="not available for c3d"):
        commands.main(["fetch", "kinetics400", "--family", "c3d"])


def test_every_family_declares_the_sampling_its_paper_feeds_it():
    from harp.config.schema import SamplingMethod

    declared = {name: get_family(name).default_sampling for name in FAMILIES}
    assert all(method in tuple(SamplingMethod) for method in declared.values()), declared
    assert declared["mdt"] == "segment_frames"  # S segments x k adjacent frames (Xu, Cao and Yi)
    assert {declared[f] for f in ("tsn", "tsm", "tea", "late_fusion", "lrcn")} == {"equidistant"}  # TSN segments; Anh's 5 frames
    assert declared["c3d"] == "dense"  # Tran et al.: 16 consecutive frames
    assert declared["timesformer"] == "uniform"
