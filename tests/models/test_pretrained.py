"""Pretraining sources, without the network: tiny checkpoints saved here and loaded back as sources.

Covers every source kind (file: safetensors / torch / directory, hf: directory and cached repo id,
named sources through hub_checkpoints as a hub repo and as a weights URL in the torch.hub cache),
head replacement, the one-summary report, refusal of a near-empty match (model untouched),
weights_only safety, convert_state_dict ordering, and the offline errors (fast, with how to fetch).
"""
from __future__ import annotations

import dataclasses
import pickle
import time

import pytest
import torch
from safetensors.torch import save_file

from harp.config.schema import ModelConfig
from harp.errors import HarpError
from harp.models import build_model, get_family, resolve
from harp.models.pretrained import PretrainedError, hf_cache_dir, load_pretrained, url_cache_path

TIMESFORMER = get_family("timesformer")


@pytest.fixture(autouse=True)
def _offline_caches(tmp_path, monkeypatch):
    """Every test gets empty HF and torch caches and no network."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _timesformer(classes: int, seed: int, **overrides):
    torch.manual_seed(seed)
    return build_model(ModelConfig(family="timesformer", size="tiny", dropout=0.0, **overrides), classes).eval()


def _body(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}


def _assert_body_equal(a, b) -> None:
    body_a, body_b = _body(a), _body(b)
    assert body_a.keys() == body_b.keys()
    for key in body_a:
        assert torch.equal(body_a[key], body_b[key]), key


def _fake_hub_cache(repo_id: str, files: dict[str, bytes | str]) -> None:
    """Lay out a Hugging Face cache entry (refs/main -> snapshots/<commit>/...) like huggingface_hub does."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = hf_cache_dir() / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (snapshot / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def test_hf_directory_replaces_the_head_and_loads_everything_else(tmp_path):
    source = _timesformer(classes=7, seed=0)
    source.save_pretrained(tmp_path / "ckpt")  # safetensors + config.json
    target = _timesformer(classes=3, seed=1)
    report = load_pretrained(target, TIMESFORMER, f"hf:{tmp_path / 'ckpt'}")
    _assert_body_equal(source, target)
    assert target.classifier.weight.shape == (3, 64)
    assert [(k, tuple(a), tuple(b)) for k, a, b in report.head_replaced] == [
        ("classifier.weight", (7, 64), (3, 64)),
        ("classifier.bias", (7,), (3,)),
    ]
    assert report.clean and report.matched_fraction == 1.0
    summary = report.summary()
    assert "loaded 47/49 tensors" in summary and "classifier.weight 7x64 -> 3x64" in summary


def test_file_sources_safetensors_torch_and_wrapped_checkpoints(tmp_path):
    source = _timesformer(classes=3, seed=0)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pt")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "trainer.ckpt")
    (tmp_path / "dir").mkdir()
    save_file(state, str(tmp_path / "dir" / "model.safetensors"))
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        expected = source(clips)
    for path in ("w.safetensors", "w.pt", "trainer.ckpt", "dir"):
        target = _timesformer(classes=3, seed=1)
        report = load_pretrained(target, TIMESFORMER, f"file:{tmp_path / path}")
        assert report.clean and not report.head_replaced, (path, report.summary())
        with torch.no_grad():
            assert torch.equal(target(clips), expected), path


def test_torch_files_are_read_with_weights_only(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"weight": Payload()}, handle, protocol=2)
    model = _timesformer(classes=3, seed=0)
    with pytest.raises(PretrainedError, match="weights_only=True"):
        load_pretrained(model, TIMESFORMER, f"file:{tmp_path / 'evil.pt'}")
    assert "this must never run" not in capsys.readouterr().out


def test_refuses_a_checkpoint_that_matches_almost_nothing_and_leaves_the_model_alone(tmp_path):
    c3d = build_model(ModelConfig(family="c3d", size="tiny"), 3)
    save_file({k: v.contiguous() for k, v in c3d.state_dict().items()}, str(tmp_path / "c3d.safetensors"))
    model = _timesformer(classes=3, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PretrainedError) as info:
        load_pretrained(model, TIMESFORMER, f"file:{tmp_path / 'c3d.safetensors'}")
    message = str(info.value)
    assert "refusing" in message and "0.0%" in message and "conv1.weight" in message and "\n" not in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_partial_match_is_loaded_and_reported(tmp_path):
    """A 4-layer checkpoint into a 2-layer model: layers 2-3 unused, the rest loaded, one summary."""
    deep = _timesformer(classes=3, seed=0, options={"num_hidden_layers": 4})
    save_file({k: v.contiguous() for k, v in deep.state_dict().items()}, str(tmp_path / "deep.safetensors"))
    model = _timesformer(classes=3, seed=1)
    report = load_pretrained(model, TIMESFORMER, f"file:{tmp_path / 'deep.safetensors'}")
    assert report.matched_fraction == 1.0 and not report.missing
    assert len(report.unexpected) == 2 * 20 and all(".layer.2." in k or ".layer.3." in k for k in report.unexpected)
    assert "unused checkpoint tensors (40): timesformer.encoder.* (40)" in report.summary()


def test_other_clip_shape_interpolates_time_and_position_embeddings(tmp_path):
    source = _timesformer(classes=3, seed=0)  # 8 frames x 32 px: 8 time and 1 + 4x4 position embeddings
    source.save_pretrained(tmp_path / "ckpt")
    target = _timesformer(classes=3, seed=1, frames=16, frame_size=64)  # 16 frames, 1 + 8x8 positions
    report = load_pretrained(target, TIMESFORMER, f"hf:{tmp_path / 'ckpt'}")
    assert report.clean and report.matched_fraction == 1.0
    time_old = source.timesformer.embeddings.time_embeddings[0]
    time_new = target.timesformer.embeddings.time_embeddings[0]
    assert time_new.shape == (16, 64)
    # Linear interpolation, align_corners=False: new frame 2k+1 sits between old frames k and k+1 (3/4 : 1/4).
    torch.testing.assert_close(time_new[3], 0.75 * time_old[1] + 0.25 * time_old[2])
    pos_old = source.timesformer.embeddings.position_embeddings[0]
    pos_new = target.timesformer.embeddings.position_embeddings[0]
    assert pos_new.shape == (65, 64) and torch.equal(pos_new[0], pos_old[0])  # CLS position kept
    with torch.no_grad():
        assert target(torch.randn(1, 3, 16, 64, 64)).shape == (1, 3)


def test_convert_state_dict_runs_before_matching(tmp_path):
    source = _timesformer(classes=3, seed=0)
    save_file({f"legacy.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "legacy.safetensors"))
    seen = []

    def strip_legacy(state, src, model):
        seen.append(src)
        return {k.removeprefix("legacy."): v for k, v in state.items()}

    spec = dataclasses.replace(TIMESFORMER, convert_state_dict=strip_legacy)
    target = _timesformer(classes=3, seed=1)
    report = load_pretrained(target, spec, f"file:{tmp_path / 'legacy.safetensors'}")
    assert seen == [f"file:{tmp_path / 'legacy.safetensors'}"] and report.clean
    _assert_body_equal(source, target)


def test_named_hub_source_not_cached_fails_at_once_with_how_to_fetch():
    model = _timesformer(classes=3, seed=0)
    started = time.perf_counter()
    with pytest.raises(PretrainedError) as info:
        load_pretrained(model, TIMESFORMER, "kinetics400")
    assert time.perf_counter() - started < 5.0
    message = str(info.value)
    assert "facebook/timesformer-base-finetuned-k400" in message
    assert "harp models fetch kinetics400 --family timesformer" in message
    assert "$HF_HOME" in message and "hf:" in message and str(hf_cache_dir()) in message
    with pytest.raises(PretrainedError, match="harp models fetch hf:someone/missing-model"):
        load_pretrained(model, TIMESFORMER, "hf:someone/missing-model")


def test_named_hub_source_loads_from_the_local_cache(tmp_path):
    source = _timesformer(classes=400, seed=0)
    source.save_pretrained(tmp_path / "ckpt")
    _fake_hub_cache(
        "harp-test/tiny-timesformer-k400",
        {name: (tmp_path / "ckpt" / name).read_bytes() for name in ("config.json", "model.safetensors")},
    )
    spec = dataclasses.replace(TIMESFORMER, hub_checkpoints={"kinetics400": "harp-test/tiny-timesformer-k400"})
    target = _timesformer(classes=5, seed=1)
    report = load_pretrained(target, spec, "kinetics400")
    _assert_body_equal(source, target)
    assert report.matched_fraction == 1.0 and len(report.head_replaced) == 2
    # hf:REPO reads the same cache entry.
    target = _timesformer(classes=5, seed=2)
    load_pretrained(target, spec, "hf:harp-test/tiny-timesformer-k400")
    _assert_body_equal(source, target)


def test_named_url_source_uses_the_torch_hub_cache_under_its_original_name(tmp_path):
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    spec = dataclasses.replace(get_family("tsn"), hub_checkpoints={"imagenet": url})
    resolved = resolve(ModelConfig(family="tsn", size="tiny"), 3)
    torch.manual_seed(0)
    model = spec.build(resolved.args)
    cached = url_cache_path(url)
    assert cached == tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(PretrainedError) as info:
        load_pretrained(model, spec, "imagenet")
    assert str(cached) in str(info.value) and "harp models fetch imagenet --family tsn" in str(info.value)
    # A torchvision-style file: ImageNet's 1000-class fc, which the head replacement drops.
    torch.manual_seed(1)
    donor = spec.build(resolved.args)
    state = {k: v.clone() for k, v in donor.state_dict().items()}
    head = [k for k in state if k.startswith(spec.head_prefixes)]
    for key in head:
        state[key] = torch.zeros((1000, *state[key].shape[1:]))
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    report = load_pretrained(model, spec, "imagenet")
    assert report.matched_fraction == 1.0 and {k for k, _, _ in report.head_replaced} == set(head)


def test_sources_a_family_does_not_accept_are_one_line_errors():
    with pytest.raises(HarpError, match="choose one of: none, kinetics400, kinetics600, ssv2, file:PATH, hf:REPO_OR_DIR"):
        build_model(ModelConfig(family="timesformer", pretrained="imagenet"), 3)
    model = _timesformer(classes=3, seed=0)
    with pytest.raises(PretrainedError, match="no such file or directory"):
        load_pretrained(model, TIMESFORMER, "file:/nonexistent/weights.safetensors")
    assert load_pretrained(model, TIMESFORMER, "none") is None


def test_build_model_loads_the_configured_source(tmp_path):
    source = _timesformer(classes=4, seed=0)
    source.save_pretrained(tmp_path / "ckpt")
    torch.manual_seed(5)
    model = build_model(ModelConfig(family="timesformer", size="tiny", pretrained=f"hf:{tmp_path / 'ckpt'}"), 6)
    _assert_body_equal(source, model)
    assert model.classifier.out_features == 6
