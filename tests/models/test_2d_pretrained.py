"""ImageNet weights in torchvision's layout load into every 2D family; the numbers come out as the 2D net's.

No network: a torchvision-format checkpoint is made with ``build_resnet2d`` (same names and shapes as
torchvision's resnet files, 1000-class ``fc``) at the tiny families' depth/width and saved to disk.
"""
from __future__ import annotations

import pytest
import torch

from harp.config.schema import ModelConfig
from harp.models import resolve
from harp.models.pretrained import load_pretrained
from harp.models.resnet2d import build_resnet2d
from harp.models.segment import TINY_BACKBONE

FAMILIES_2D = ("tsn", "tsm", "tea", "mdt", "late_fusion", "lrcn")


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    torch.manual_seed(123)
    net = build_resnet2d(TINY_BACKBONE["depth"], TINY_BACKBONE["width"], layers=TINY_BACKBONE["layers"]).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a forgotten buffer would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("imagenet") / "resnet_tiny.pth"
    torch.save(net.state_dict(), path)
    return net, path


def _build(name: str):
    resolved = resolve(ModelConfig(family=name, size="tiny", dropout=0.0), 7)
    torch.manual_seed(0)
    return resolved, resolved.spec.build(resolved.args).eval()


@pytest.mark.parametrize("name", FAMILIES_2D)
def test_imagenet_file_loads_backbone_and_replaces_head(name, imagenet_file):
    net, path = imagenet_file
    resolved, model = _build(name)
    report = load_pretrained(model, resolved.spec, f"file:{path}")
    assert not report.mismatched and not report.unexpected, report.summary()
    assert [k for k, _, _ in report.head_replaced] == ["fc.weight", "fc.bias"]
    assert model.fc.out_features == 7
    own = model.state_dict()
    for key, value in net.state_dict().items():
        if key.startswith("fc.") or (name == "tea" and key.endswith("conv2.weight")):
            continue
        assert torch.equal(own[key], value), key
    if name == "tea":  # MTA's spatial convs are the diagonal blocks of torchvision's conv2 (fragments 1-3)
        w = net.state_dict()["layer2.0.conv2.weight"]
        c = w.shape[0] // 4
        torch.testing.assert_close(own["layer2.0.conv2.spatial.1.weight"], w[c : 2 * c, c : 2 * c], rtol=0, atol=0)


def test_tsn_with_imagenet_weights_scores_each_frame_like_the_2d_net(imagenet_file):
    net, path = imagenet_file
    resolved, tsn = _build("tsn")
    load_pretrained(tsn, resolved.spec, f"file:{path}")
    clip = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        frames = clip.transpose(1, 2).reshape(16, 3, 32, 32)
        torch.testing.assert_close(tsn.frame_features(clip).reshape(16, -1), net.pooled(frames), rtol=1e-5, atol=1e-5)


def test_tsm_reference_code_checkpoint_names_load():
    """A checkpoint named like mit-han-lab/temporal-shift-module's (module.base_model..., conv1.net, new_fc)."""
    resolved, tsm = _build("tsm")
    torch.manual_seed(5)
    _, donor = _build("tsm")
    for p in donor.parameters():
        torch.nn.init.normal_(p, std=0.02)
    renamed = {}
    for key, value in donor.state_dict().items():
        key = "new_fc." + key[3:] if key.startswith("fc.") else "base_model." + key.replace(".conv1.", ".conv1.net.")
        renamed["module." + key] = value
    report = load_pretrained(tsm, resolved.spec, "file:unused", state=renamed)
    assert report.clean and report.matched_fraction == 1.0, report.summary()
    clip = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tsm(clip), donor.eval()(clip), rtol=0, atol=0)
