"""``i3d`` and ``i3d_nonlocal``: ResNet-50 inflated to 3D, optionally with non-local blocks
(Anh et al. 2022; Carreira & Zisserman 2017 for inflation, Wang et al. 2018 for non-local).

The I3D-ResNet-50 of the non-local paper (its Table 1):

    conv1  5x7x7, 64, stride 1,2,2          pool1 1x3x3 max, stride 1,2,2
    layer1 3 bottlenecks [3x1x1 | 1x3x3 | 1x1x1]     pool2 3x1x1 max, stride 2,1,1
    layer2 4 bottlenecks, the first 1x1 conv inflated to 3x1x1 in every other block (0, 2)
    layer3 6 bottlenecks, inflated in blocks 0, 2, 4
    layer4 3 bottlenecks, inflated in block 1
    global average pool, dropout, fc

Names are torchvision's resnet50 names (``conv1``, ``bn1``, ``layerN.M.conv1..3``, ``bnK``,
``downsample.0/1``, ``fc``) with 5D kernels, so the ``imagenet`` source is torchvision's
ResNet-50 file inflated by ``harp.models.inflate.convert_state_dict``.

``i3d_nonlocal`` adds five embedded-Gaussian non-local blocks (``layerN.M.non_local``) after blocks 1, 3
of layer2 and 1, 3, 5 of layer3 (every other residual block of res3/res4): ``theta``, ``phi``, ``g``
1x1x1 convs to C/2 channels (``phi``/``g`` on a 1x2x2 max-pooled map), ``y = softmax(theta^T phi /
sqrt(C/2)) g`` (scaled dot-product attention, as the reference implementation's ``use_scale``), then
``W`` (1x1x1 conv back to C) and a BatchNorm whose weight starts at zero, so each block is the
identity at initialisation and the network starts as the (inflated) I3D.
"""
from __future__ import annotations

from dataclasses import replace

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harp.errors import ConfigError
from harp.models.inflate import convert_state_dict
from harp.models.resnet2d import TORCHVISION_IMAGENET, scaled
from harp.models.spec import IMAGENET_MEAN, IMAGENET_STD, BuildArgs, FamilySpec, SizePreset

__all__ = ["I3D", "I3D_NONLOCAL", "I3DResNet", "Bottleneck3d", "NonLocalBlock", "build_i3d", "build_i3d_nonlocal"]

# Which bottleneck's conv1 is inflated to 3x1x1 (the non-local paper's I3D-ResNet-50).
INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
# Where the five non-local blocks go (after these bottlenecks).
NONLOCAL = ((0, 0, 0), (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 0))


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block: ``z = BN(W y) + x`` with the BN weight zero-initialised."""

    def __init__(self, channels: int, inter_channels: int | None = None, subsample: bool = True) -> None:
        super().__init__()
        inter = inter_channels or max(1, channels // 2)
        self.inter_channels = inter
        self.theta = nn.Conv3d(channels, inter, kernel_size=1)
        self.phi = nn.Conv3d(channels, inter, kernel_size=1)
        self.g = nn.Conv3d(channels, inter, kernel_size=1)
        self.subsample = subsample
        self.W = nn.Conv3d(inter, channels, kernel_size=1)
        self.bn = nn.BatchNorm3d(channels)
        self.reset_parameters_after_backbone()

    def reset_parameters_after_backbone(self) -> None:
        """Small 1x1x1 convs (std 0.01, as the reference) and the last norm at zero: the block is the
        identity until it learns otherwise (the backbone's generic init must not undo this)."""
        for conv in (self.theta, self.phi, self.g, self.W):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """``y`` ``(B, C/2, T, H, W)``: every position's softmax-weighted sum of ``g`` over all positions."""
        b, _, t, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)  # (B, THW, C')
        sub = x
        if self.subsample and (h > 1 or w > 1):  # 1x2x2 max pool of the keys/values (1 px maps stay as they are)
            kernel = (1, min(2, h), min(2, w))
            sub = F.max_pool3d(x, kernel_size=kernel, stride=kernel)
        k = self.phi(sub).flatten(2).transpose(1, 2)  # (B, T H'W', C')
        v = self.g(sub).flatten(2).transpose(1, 2)
        y = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        return y.transpose(1, 2).reshape(b, self.inter_channels, t, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.W(self.attend(x))) + x


class Bottleneck3d(nn.Module):
    """torchvision's ResNet v1.5 bottleneck with 5D kernels: conv1 1x1x1 or 3x1x1 (inflated), conv2
    1x3x3 carrying the spatial stride, conv3 1x1x1; an optional non-local block after the sum."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 inflate: bool = True, non_local: bool = False) -> None:
        super().__init__()
        kt = 3 if inflate else 1
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=(kt, 1, 1), padding=(kt // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=(1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.non_local = NonLocalBlock(planes * self.expansion) if non_local else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.relu(self.bn3(self.conv3(out)) + identity)
        return out if self.non_local is None else self.non_local(out)


class I3DResNet(nn.Module):
    """Inflated ResNet-50 (torchvision names, 5D kernels); ``width`` scales every channel count."""

    def __init__(
        self,
        num_classes: int,
        layers: Sequence[int] = (3, 4, 6, 3),
        width: float = 1.0,
        dropout: float = 0.5,
        non_local: bool = False,
        conv1_time: int = 5,
        pool2: bool = True,
    ) -> None:
        super().__init__()
        self.inplanes = scaled(64, width)
        self.conv1 = nn.Conv3d(3, self.inplanes, kernel_size=(conv1_time, 7, 7), stride=(1, 2, 2),
                               padding=(conv1_time // 2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.pool2 = nn.MaxPool3d(kernel_size=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)) if pool2 else nn.Identity()
        for index, (base, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            inflate = [INFLATE[index][i % len(INFLATE[index])] for i in range(blocks)]
            nl = [NONLOCAL[index][i % len(NONLOCAL[index])] and non_local for i in range(blocks)]
            stage = self._make_layer(scaled(base, width), blocks, 1 if index == 0 else 2, inflate, nl)
            setattr(self, f"layer{index + 1}", stage)
        self.feature_dim = self.inplanes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.feature_dim, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # non-local blocks: their own init (last norm zero) after the generic one
            if isinstance(m, NonLocalBlock):
                m.reset_parameters_after_backbone()

    def _make_layer(self, planes: int, blocks: int, stride: int, inflate: list, non_local: list) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck3d.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * Bottleneck3d.expansion, kernel_size=1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(planes * Bottleneck3d.expansion),
            )
        modules = [Bottleneck3d(self.inplanes, planes, stride, downsample, bool(inflate[0]), bool(non_local[0]))]
        self.inplanes = planes * Bottleneck3d.expansion
        modules += [Bottleneck3d(self.inplanes, planes, 1, None, bool(inflate[i]), bool(non_local[i])) for i in range(1, blocks)]
        return nn.Sequential(*modules)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` -> layer4 maps ``(B, feature_dim, T/2, H/32, W/32)`` before pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool2(self.layer1(x))
        return self.layer4(self.layer3(self.layer2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(self.features(x)), 1)))


def _build(args: BuildArgs, non_local: bool, family: str) -> I3DResNet:
    o = dict(args.options)
    valid = {"width", "layers", "conv1_time", "pool2"}
    unknown = set(o) - valid
    if unknown:
        raise ConfigError(f"{family}: unknown model.options {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
    layers = tuple(int(v) for v in o.get("layers", (3, 4, 6, 3)))
    if len(layers) != 4 or min(layers) < 1:
        raise ConfigError(f"{family}: model.options.layers must be 4 block counts >= 1, got {list(layers)}")
    width = float(o.get("width", 1.0))
    if width <= 0:
        raise ConfigError(f"{family}: model.options.width must be > 0, got {width}")
    return I3DResNet(
        num_classes=args.num_classes,
        layers=layers,
        width=width,
        dropout=args.dropout,
        non_local=non_local,
        conv1_time=int(o.get("conv1_time", 5)),
        pool2=bool(o.get("pool2", True)),
    )


def build_i3d(args: BuildArgs) -> I3DResNet:
    return _build(args, non_local=False, family="i3d")


def build_i3d_nonlocal(args: BuildArgs) -> I3DResNet:
    return _build(args, non_local=True, family="i3d_nonlocal")


_SIZES = {
    # CPU: the full 50-layer structure at 1/8 width (8-16-32-64 bottleneck widths), 8 frames of 32px.
    "tiny": SizePreset(frames=8, frame_size=32, options={"width": 0.125}),
    # ResNet-50 inflated, 16-frame clips (003) at ImageNet resolution.
    "base": SizePreset(frames=16, frame_size=224, options={"width": 1.0}),
}

I3D = FamilySpec(
    name="i3d",
    description="I3D: ResNet-50 inflated to 3D (conv1 5x7x7, 3x1x1 in every other block); imagenet = inflated 2D weights",
    paper="anh2022",
    build=build_i3d,
    sizes=_SIZES,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    default_dropout=0.5,
    pretrained_sources=("imagenet",),
    hub_checkpoints={"imagenet": TORCHVISION_IMAGENET[50]},
    head_prefixes=("fc.",),
    convert_state_dict=convert_state_dict,
)

# Same inputs, sizes and weights source as I3D; only the network differs.
I3D_NONLOCAL = replace(
    I3D,
    name="i3d_nonlocal",
    description="I3D ResNet-50 + 5 embedded-Gaussian non-local blocks (res3/res4, last BN zero-init)",
    build=build_i3d_nonlocal,
)
