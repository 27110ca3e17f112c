"""The 2D ResNet is torchvision's network: same parameter names, same counts, same shapes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harp.models.resnet2d import build_resnet2d

# torchvision.models.resnetNN(): sum(p.numel() for p in model.parameters()) and len(state_dict())
TORCHVISION = {18: (11_689_512, 122), 34: (21_797_672, 218), 50: (25_557_032, 320)}


@pytest.mark.parametrize("depth", sorted(TORCHVISION))
def test_parameter_count_and_keys_match_torchvision(depth):
    model = build_resnet2d(depth)
    params, keys = TORCHVISION[depth]
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == keys


def test_torchvision_key_names():
    keys = set(build_resnet2d(50).state_dict())
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv3.weight", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.bias", "layer4.2.bn3.weight", "fc.weight", "fc.bias"):
        assert key in keys
    basic = set(build_resnet2d(18).state_dict())
    assert "layer2.0.downsample.0.weight" in basic and "layer1.0.downsample.0.weight" not in basic
    assert not any("conv3" in k for k in basic)


def test_features_shape_and_width():
    model = build_resnet2d(18, width=0.25, num_classes=0).eval()
    assert model.feature_dim == 128 and model.fc is None
    assert model.features(torch.randn(2, 3, 64, 64)).shape == (2, 128, 2, 2)
    assert build_resnet2d(50, width=0.25).feature_dim == 512


def test_hooks_insert_modules_where_documented():
    seen = {}

    def residual_hook(channels, name):
        seen.setdefault("residual", []).append((name, channels))
        return nn.Identity()

    def conv1_hook(channels, name):
        seen.setdefault("conv1", []).append((name, channels))
        return None

    def conv2_hook(conv, name):
        seen.setdefault("conv2", []).append((name, conv.in_channels, conv.stride))
        return conv

    build_resnet2d(50, residual_hook=residual_hook, conv1_hook=conv1_hook, conv2_hook=conv2_hook)
    assert seen["residual"][0] == ("layer1.0", 64) and seen["residual"][3] == ("layer2.0", 256)
    assert seen["conv1"][3] == ("layer2.0", 128)
    assert seen["conv2"][3] == ("layer2.0", 128, (2, 2))
    assert len(seen["conv2"]) == 16
