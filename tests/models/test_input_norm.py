"""Input normalisation follows the pretraining source: what each source's weights want, how a
``file:`` source declares it, and the input the model really sees (``resolve_run`` + ``forward_views``).

The C3D case is the one the papers need: Sports-1M weights converted from Caffe read BGR frames in
0-255 minus the data set's mean; harp feeds them RGB clips normalised so that the network computes
exactly what it computed on the Caffe input."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from harp.config import load_config
from harp.config.schema import ModelConfig
from harp.data.transforms import to_model_input
from harp.errors import ConfigError
from harp.models import build_model, get_family, resolve
from harp.models.input_norm import SIDECAR_SUFFIX, declared_input_norm, resolve_input_norm
from harp.models.pretrained import PretrainedError, hub_target
from harp.models.spec import INPUT_NORMS, TORCHVISION_VIDEO_MEAN
from harp.train.run import forward_views, resolve_run

C3D_CAFFE = {"mean": [90, 98, 102], "std": [1, 1, 1], "pixel_range": 255, "channels": "bgr"}  # B, G, R


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _c3d_weights(path, classes: int, seed: int = 0, metadata: dict | None = None):
    """A tiny C3D with random weights, saved as a source; returns the model (eval)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(family="c3d", size="tiny", dropout=0.0), classes).eval()
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)
    else:
        torch.save(model.state_dict(), path)
    return model


def test_each_kind_of_source_resolves_its_own_normalisation(tmp_path):
    c3d, tsn = get_family("c3d"), get_family("tsn")
    assert resolve_input_norm(c3d, "none").mean == (0.45, 0.45, 0.45)  # the family's own
    assert resolve_input_norm(tsn, "imagenet").mean == (0.485, 0.456, 0.406)
    # a named source whose weights want something else than the family (the per-source table)
    spec = dataclasses.replace(get_family("i3d"), source_norms={"kinetics400": INPUT_NORMS["kinetics"]})
    assert resolve_input_norm(spec, "kinetics400").mean == (0.45, 0.45, 0.45) and resolve_input_norm(spec, "imagenet").mean == (0.485, 0.456, 0.406)

    # file: a weights file with a sidecar: BGR in 0-255 becomes RGB in [0, 1] units
    pth = tmp_path / "c3d.pth"
    _c3d_weights(pth, 4)
    assert declared_input_norm(f"file:{pth}") is None  # nothing declared: the family's
    pth.with_name(pth.name + SIDECAR_SUFFIX).write_text(json.dumps(C3D_CAFFE))
    norm = resolve_input_norm(c3d, f"file:{pth}")
    assert norm.channels == "bgr" and norm.mean == pytest.approx((102 / 255, 98 / 255, 90 / 255)) and norm.std == pytest.approx((1 / 255,) * 3)
    assert norm.mean == pytest.approx(INPUT_NORMS["c3d_sports1m"].mean)

    # file: safetensors metadata, as a JSON declaration or as harp's own exported weights write it (mean/std)
    st = tmp_path / "w.safetensors"
    _c3d_weights(st, 4, metadata={"input_norm": json.dumps({"name": "torchvision_video"})})
    assert resolve_input_norm(c3d, f"file:{st}").mean == TORCHVISION_VIDEO_MEAN
    _c3d_weights(st, 4, metadata={"mean": "[0.5, 0.4, 0.3]", "std": "[0.2, 0.2, 0.2]"})
    assert resolve_input_norm(c3d, f"file:{st}").mean == (0.5, 0.4, 0.3)

    # hf:/file: folders: input_norm.json, or a 1/255-rescaling preprocessor_config.json
    folder = tmp_path / "hfdir"
    folder.mkdir()
    videomae = {"do_rescale": True, "rescale_factor": 1 / 255, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    (folder / "preprocessor_config.json").write_text(json.dumps(videomae))
    assert resolve_input_norm(get_family("videomae"), f"hf:{folder}").mean == (0.485, 0.456, 0.406)
    # ViViT's processor rescales to [-1, 1] with an offset: not a plain declaration, the family's table holds
    (folder / "preprocessor_config.json").write_text(json.dumps({"rescale_factor": 1 / 127.5, "offset": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    assert resolve_input_norm(get_family("timesformer"), f"hf:{folder}").mean == (0.45, 0.45, 0.45)
    (folder / "input_norm.json").write_text(json.dumps({"name": "inception"}))
    assert resolve_input_norm(get_family("timesformer"), f"file:{folder}").mean == (0.5, 0.5, 0.5)

    # model.input_norm beats the source: a name, or a JSON file
    assert resolve_input_norm(c3d, f"file:{pth}", "imagenet").channels == "rgb"
    custom = tmp_path / "norm.json"
    custom.write_text(json.dumps({"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5]}))
    assert resolve_input_norm(c3d, "none", str(custom)).mean == (0.1, 0.2, 0.3)


def test_unreadable_declarations_fail_in_one_line(tmp_path):
    c3d = get_family("c3d")
    with pytest.raises(PretrainedError, match=r"no such file, so its input normalisation is unknown; fix the path, or set model.input_norm"):
        resolve_input_norm(c3d, f"file:{tmp_path / 'gone.pth'}")
    with pytest.raises(ConfigError, match=r"^model.input_norm='vgg' is neither a name \(imagenet, kinetics"):
        resolve_input_norm(c3d, "none", "vgg")
    pth = tmp_path / "c3d.pth"
    _c3d_weights(pth, 4)
    pth.with_name(pth.name + SIDECAR_SUFFIX).write_text(json.dumps({"mean": [90, 98], "std": [1, 1, 1]}))
    with pytest.raises(PretrainedError, match=r"c3d.pth.norm.json: mean must be 3 numbers"):
        resolve_input_norm(c3d, f"file:{pth}")
    pth.with_name(pth.name + SIDECAR_SUFFIX).write_text(json.dumps({**C3D_CAFFE, "channels": "grb"}))
    with pytest.raises(PretrainedError, match=r"channels='grb'; choose one of rgb, bgr"):
        resolve_input_norm(c3d, f"file:{pth}")


def _model_input(model: torch.nn.Module, batch: dict, run) -> torch.Tensor:
    """What the model's forward receives from ``forward_views`` for this run."""
    seen: list[torch.Tensor] = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        forward_views(model, batch, torch.device("cpu"), run.model.mean, run.model.std)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("source", ["none", "file-sidecar", "file-harp-weights", "override"])
def test_the_model_sees_the_input_its_source_wants(source, synthetic_config, tmp_path):
    """resolve_run picks the normalisation up; forward_views hands the model exactly that input."""
    pth = tmp_path / "c3d.pth"
    _c3d_weights(pth, 4)
    overrides = {"none": [], "override": ["model.input_norm=imagenet"]}.get(source, [f"model.pretrained=file:{pth}"])
    expected = {"none": INPUT_NORMS["kinetics"], "override": INPUT_NORMS["imagenet"], "file-sidecar": INPUT_NORMS["c3d_sports1m"]}
    if source == "file-sidecar":
        pth.with_name(pth.name + SIDECAR_SUFFIX).write_text(json.dumps(C3D_CAFFE))
    if source == "file-harp-weights":
        st = tmp_path / "harp.safetensors"
        _c3d_weights(st, 4, metadata={"mean": "[0.3, 0.3, 0.3]", "std": "[0.1, 0.2, 0.4]"})
        overrides = [f"model.pretrained=file:{st}"]
    cfg = load_config([*_synthetic_overrides(synthetic_config), "model.family=c3d", "model.size=tiny", *overrides])
    run = resolve_run(cfg)
    model = build_model(dataclasses.replace(cfg.model, pretrained="none"), len(run.class_names)).eval()
    clip = torch.randint(0, 256, (1, 8, 32, 32, 3), dtype=torch.uint8)
    seen = _model_input(model, {"video": clip, "label": torch.tensor([0])}, run)
    pixels = clip.permute(0, 4, 1, 2, 3).float()  # (1, C, T, H, W), RGB, 0..255
    if source == "file-harp-weights":
        mean, std = torch.tensor([0.3, 0.3, 0.3]), torch.tensor([0.1, 0.2, 0.4])
    else:
        mean, std = torch.tensor(expected[source].mean), torch.tensor(expected[source].std)
    want = (pixels / 255 - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1)
    torch.testing.assert_close(seen, want, rtol=1e-5, atol=1e-4)
    if source == "file-sidecar":  # Caffe's 0-255 minus the mean, per RGB channel
        torch.testing.assert_close(seen[0, 0], pixels[0, 0] - 102.0, rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(seen[0, 2], pixels[0, 2] - 90.0, rtol=1e-5, atol=1e-3)


def _synthetic_overrides(cfg) -> list[str]:
    return [f"data.root={cfg.data.root}", "data.synth.num_classes=4", "data.num_workers=0"]


def test_a_bgr_caffe_c3d_computes_on_rgb_clips_what_it_computed_on_bgr_input(tmp_path):
    """Loading a BGR source reverses conv1's colour axis: harp's RGB, (x/255 - m)/s input through the
    loaded model equals the original weights on the Caffe input (BGR, 0-255 minus B/G/R means)."""
    pth = tmp_path / "c3d_sports1m.pth"
    original = _c3d_weights(pth, 5, seed=3)
    pth.with_name(pth.name + SIDECAR_SUFFIX).write_text(json.dumps(C3D_CAFFE))
    cfg = ModelConfig(family="c3d", size="tiny", dropout=0.0, pretrained=f"file:{pth}")
    resolved = resolve(cfg, 5)
    loaded = build_model(cfg, 5).eval()
    clip = torch.randint(0, 256, (2, 8, 32, 32, 3), dtype=torch.uint8)
    caffe = clip.flip(-1).permute(0, 4, 1, 2, 3).float() - torch.tensor([90.0, 98.0, 102.0]).view(1, 3, 1, 1, 1)
    with torch.no_grad():
        ours = loaded(to_model_input(clip, resolved.mean, resolved.std))
        theirs = original(caffe)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    # the same weights declared RGB would not: the conversion is what makes them equal
    pth.with_name(pth.name + SIDECAR_SUFFIX).write_text(json.dumps({**C3D_CAFFE, "channels": "rgb", "mean": [102, 98, 90]}))
    as_rgb = build_model(cfg, 5).eval()
    with torch.no_grad():
        assert not torch.allclose(as_rgb(to_model_input(clip, resolved.mean, resolved.std)), theirs, atol=1e-3)


def test_imagenet_source_follows_the_backbone_depth():
    """Anh et al.'s Late Fusion and LRCN start from an ImageNet ResNet-152: the imagenet source of a
    depth-152 backbone is torchvision's ResNet-152 file, the default depth keeps the ResNet-50."""
    for family in ("late_fusion", "lrcn", "tsn"):
        spec = get_family(family)
        with torch.device("meta"):
            deep = spec.build(resolve(ModelConfig(family=family, size="base", options={"depth": 152}), 7).args)
            default = spec.build(resolve(ModelConfig(family=family, size="base"), 7).args)
        assert hub_target(spec, "imagenet", deep).endswith("resnet152-394f9c45.pth")
        assert hub_target(spec, "imagenet", default).endswith("resnet50-0676ba61.pth")
        assert hub_target(spec, "imagenet").endswith("resnet50-0676ba61.pth")  # `harp models fetch` without a model
