"""R3D-18 / R(2+1)D-18: the mid-channel rule, parameter parity with the 3D block, torchvision layout."""
from __future__ import annotations

import torch

from harp.config.schema import ModelConfig
from harp.models import build_model
from harp.models.video_resnet import Conv2Plus1D, Conv3DSimple, r2plus1d_mid_channels


def _n(module: torch.nn.Module, kind=torch.nn.Conv3d) -> int:
    return sum(p.numel() for m in module.modules() if isinstance(m, kind) for p in m.parameters())


def test_mid_channel_formula_by_hand():
    # M = floor(t d^2 Nin Nout / (d^2 Nin + t Nout)), t = d = 3
    assert r2plus1d_mid_channels(64, 64) == 144  # 27*64*64 / (9*64 + 3*64) = 110592 / 768
    assert r2plus1d_mid_channels(128, 128) == 288
    assert r2plus1d_mid_channels(256, 256) == 576
    assert r2plus1d_mid_channels(512, 512) == 1152
    assert r2plus1d_mid_channels(64, 128) == 230  # 221184 / 960 = 230.4
    assert r2plus1d_mid_channels(3, 64) == (27 * 3 * 64) // (27 + 192)


def test_factorised_conv_has_the_3d_convs_parameters():
    for nin, nout in [(64, 64), (64, 128), (128, 128), (128, 256), (256, 512), (512, 512), (8, 16)]:
        m = r2plus1d_mid_channels(nin, nout)
        p3d = _n(Conv3DSimple(nin, nout))
        p21 = _n(Conv2Plus1D(nin, nout, m))
        assert p3d == 27 * nin * nout
        assert p21 == m * (9 * nin + 3 * nout)
        # floor() leaves at most one intermediate channel's worth of parameters on the table
        assert 0 <= p3d - p21 < 9 * nin + 3 * nout
        assert (p3d - p21) / p3d < 0.01 or nin < 16


def test_every_block_of_r2plus1d_follows_the_rule_and_matches_r3d():
    r3d = build_model(ModelConfig(family="r3d", size="base", num_classes=400))
    r21 = build_model(ModelConfig(family="r2plus1d", size="base", num_classes=400))
    blocks = [(name, b) for name, b in r21.named_modules() if name.count(".") == 1 and name.startswith("layer")]
    assert len(blocks) == 8
    for name, block in blocks:
        conv1 = block.conv1[0]
        nin, nout = conv1[0].in_channels, conv1[3].out_channels
        mid = r2plus1d_mid_channels(nin, nout)
        assert conv1[0].out_channels == mid and conv1[0].kernel_size == (1, 3, 3) and conv1[3].kernel_size == (3, 1, 1)
        # the same block of R3D: a full 3x3x3 conv with the same in/out channels and ~ the same parameters
        ref = r3d.get_submodule(name).conv1[0]
        assert isinstance(ref, torch.nn.Conv3d) and ref.kernel_size == (3, 3, 3)
        assert 0 <= _n(ref) - _n(conv1) < 9 * nin + 3 * nout
        # conv2 (Nout -> Nout) reuses conv1's width, as torchvision does (weight compatibility)
        assert block.conv2[0][0].out_channels == mid
        if nin == nout:  # where the rule and torchvision agree, conv2 is parameter-matched as well
            assert 0 <= _n(r3d.get_submodule(name).conv2[0]) - _n(block.conv2[0]) < 12 * nout
    # Whole networks: torchvision's published parameter counts of r3d_18 and r2plus1d_18 (400 classes)
    assert sum(p.numel() for p in r3d.parameters()) == 33_371_472
    assert sum(p.numel() for p in r21.parameters()) == 31_505_325


def test_torchvision_names_shapes_and_strides():
    r3d = build_model(ModelConfig(family="r3d", size="base", num_classes=400))
    r21 = build_model(ModelConfig(family="r2plus1d", size="base", num_classes=400))
    s3, s21 = r3d.state_dict(), r21.state_dict()
    assert s3["stem.0.weight"].shape == (64, 3, 3, 7, 7)
    assert s3["layer1.0.conv1.0.weight"].shape == (64, 64, 3, 3, 3)
    assert s3["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1, 1)
    assert s3["fc.weight"].shape == (400, 512)
    assert s21["stem.0.weight"].shape == (45, 3, 1, 7, 7) and s21["stem.3.weight"].shape == (64, 45, 3, 1, 1)
    assert s21["layer1.0.conv1.0.0.weight"].shape == (144, 64, 1, 3, 3)
    assert s21["layer1.0.conv1.0.1.running_var"].shape == (144,)
    assert s21["layer1.0.conv1.0.3.weight"].shape == (64, 144, 3, 1, 1)
    assert s21["layer4.1.conv2.1.weight"].shape == (512,)
    assert len(s3) == 122 and len(s21) == 224  # every torchvision key, no extra (dropout is parameter-free)
    # 16x112 clips -> layer4 maps of 2x7x7 (T/8, H/16), as torchvision's video ResNets
    tiny = build_model(ModelConfig(family="r2plus1d", size="tiny", num_classes=3)).eval()
    with torch.no_grad():
        assert tiny.features(torch.randn(1, 3, 16, 112, 112)).shape == (1, 64, 2, 7, 7)


def test_kinetics400_source_is_torchvisions_file_and_replaces_the_head(tmp_path, monkeypatch):
    from harp.models import get_family
    from harp.models.pretrained import load_pretrained

    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for family, file in (("r3d", "r3d_18-b3b3357e.pth"), ("r2plus1d", "r2plus1d_18-91a641e6.pth")):
        spec = get_family(family)
        assert spec.hub_checkpoints["kinetics400"] == f"https://download.pytorch.org/models/{file}"
        # A 400-class checkpoint with torchvision's layout (tiny width so the test stays small).
        torch.manual_seed(1)
        k400 = build_model(ModelConfig(family=family, size="tiny", num_classes=400)).state_dict()
        torch.save(k400, checkpoints / file)
        model = build_model(ModelConfig(family=family, size="tiny", num_classes=10))
        report = load_pretrained(model, spec, "kinetics400")
        assert report.clean and report.matched_fraction == 1.0
        assert [(k, tuple(a), tuple(b)) for k, a, b in report.head_replaced] == [
            ("fc.weight", (400, 64), (10, 64)), ("fc.bias", (400,), (10,))]
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in k400.items() if not k.startswith("fc."))
