"""``r3d`` and ``r2plus1d``: ResNet-18-style video networks (Tran et al. 2018, "A Closer Look at
Spatiotemporal Convolutions for Action Recognition").

R3D-18 uses full 3x3x3 convolutions; R(2+1)D-18 factorises each into a 1x3x3 spatial conv, BN, ReLU
and a 3x1x1 temporal conv through ``M`` intermediate channels, with

    M = floor(t * d^2 * N_in * N_out / (d^2 * N_in + t * N_out))        (t = 3, d = 3)

so that the (2+1)D block has (to within one intermediate channel) the parameters of the 3D one
(``r2plus1d_mid_channels``).

Module and parameter names are those of torchvision's ``r3d_18`` / ``r2plus1d_18`` (``stem.0``,
``stem.1``, ``layer1.0.conv1.0``, ``layer1.0.conv1.1``, ``downsample.0/1``, ``fc``), so their published
Kinetics-400 weight files load unchanged (the ``kinetics400`` source). To stay weight-compatible we
also keep torchvision's one quirk: a block's second (2+1)D conv uses the intermediate width computed
for its *first* conv (from ``N_in``, ``N_out``), which differs from the rule only in the first block of
layers 2-4 (where ``N_in != N_out``).

Dropout (not in torchvision, parameter-free) sits before ``fc``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import nn

from harp.errors import ConfigError
from harp.models.spec import TORCHVISION_VIDEO_MEAN, TORCHVISION_VIDEO_STD, BuildArgs, FamilySpec, SizePreset

__all__ = [
    "R3D",
    "R2PLUS1D",
    "VideoResNet",
    "BasicBlock",
    "Conv3DSimple",
    "Conv2Plus1D",
    "r2plus1d_mid_channels",
    "build_r3d",
    "build_r2plus1d",
    "TORCHVISION_VIDEO_MEAN",
    "TORCHVISION_VIDEO_STD",
]



def r2plus1d_mid_channels(in_planes: int, out_planes: int, t: int = 3, d: int = 3) -> int:
    """Intermediate channels of a (2+1)D conv matching a t x d x d 3D conv's parameter count."""
    return (t * d * d * in_planes * out_planes) // (d * d * in_planes + t * out_planes)


class Conv3DSimple(nn.Conv3d):
    """A full 3x3x3 convolution (spatial stride only in ``stride``, temporal stride too)."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1, padding: int = 1) -> None:
        super().__init__(in_planes, out_planes, kernel_size=(3, 3, 3), stride=stride, padding=padding, bias=False)

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        return (stride, stride, stride)


class Conv2Plus1D(nn.Sequential):
    """1x3x3 spatial conv -> BN -> ReLU -> 3x1x1 temporal conv, through ``midplanes`` channels."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, padding: int = 1) -> None:
        super().__init__(
            nn.Conv3d(in_planes, midplanes, kernel_size=(1, 3, 3), stride=(1, stride, stride), padding=(0, padding, padding), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, kernel_size=(3, 1, 1), stride=(stride, 1, 1), padding=(padding, 0, 0), bias=False),
        )

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        return (stride, stride, stride)


ConvBuilder = Callable[..., nn.Module]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, conv_builder: ConvBuilder, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        midplanes = r2plus1d_mid_channels(inplanes, planes)  # torchvision: shared by conv1 and conv2
        self.conv1 = nn.Sequential(conv_builder(inplanes, planes, midplanes, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv_builder(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + residual)


def _basic_stem(width: int) -> nn.Sequential:
    """R3D stem: 3x7x7 conv, spatial stride 2."""
    return nn.Sequential(
        nn.Conv3d(3, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def _r2plus1d_stem(width: int) -> nn.Sequential:
    """R(2+1)D stem: 1x7x7 spatial conv to 45 (x width/64) channels, then 3x1x1 temporal conv."""
    mid = max(1, (45 * width) // 64)
    return nn.Sequential(
        nn.Conv3d(3, mid, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


class VideoResNet(nn.Module):
    """torchvision's VideoResNet layout (stem, layer1..4, avgpool, fc); ``width`` = layer1's channels
    (64 in torchvision; the family option ``width`` is a multiplier of it, like the other families')."""

    def __init__(
        self,
        conv_makers: Sequence[ConvBuilder],
        stem: Callable[[int], nn.Module],
        layers: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 400,
        width: int = 64,
        dropout: float = 0.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = width
        self.stem = stem(width)
        self.layer1 = self._make_layer(conv_makers[0], width, layers[0], stride=1)
        self.layer2 = self._make_layer(conv_makers[1], width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(conv_makers[2], width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(conv_makers[3], width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.dropout = nn.Dropout(dropout)
        self.feature_dim = width * 8 * BasicBlock.expansion
        self.fc = nn.Linear(self.feature_dim, num_classes)
        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.conv2[1].weight)

    def _make_layer(self, conv_builder: ConvBuilder, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            ds_stride = conv_builder.get_downsample_stride(stride)
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * BasicBlock.expansion, kernel_size=1, stride=ds_stride, bias=False),
                nn.BatchNorm3d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, conv_builder, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes, conv_builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """layer4 output ``(B, 8*width, T/8, H/16, W/16)`` before pooling."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.fc(self.dropout(x))


def _options(args: BuildArgs, family: str) -> dict:
    o = dict(args.options)
    unknown = set(o) - {"width", "layers", "zero_init_residual"}
    if unknown:
        raise ConfigError(f"{family}: unknown model.options {sorted(unknown)}; valid: width, layers, zero_init_residual")
    layers = tuple(int(v) for v in o.get("layers", (2, 2, 2, 2)))
    if len(layers) != 4 or min(layers) < 1:
        raise ConfigError(f"{family}: model.options.layers must be 4 block counts >= 1, got {list(layers)}")
    width = float(o.get("width", 1.0))
    if width <= 0:
        raise ConfigError(f"{family}: model.options.width must be > 0 (a multiplier of the 64-channel stem), got {width}")
    return {
        "width": max(1, round(64 * width)),
        "layers": layers,
        "zero_init_residual": bool(o.get("zero_init_residual", False)),
        "num_classes": args.num_classes,
        "dropout": args.dropout,
    }


def build_r3d(args: BuildArgs) -> VideoResNet:
    return VideoResNet(conv_makers=[Conv3DSimple] * 4, stem=_basic_stem, **_options(args, "r3d"))


def build_r2plus1d(args: BuildArgs) -> VideoResNet:
    return VideoResNet(conv_makers=[Conv2Plus1D] * 4, stem=_r2plus1d_stem, **_options(args, "r2plus1d"))


_SIZES = {
    # CPU: 1/8 width (8-16-32-64), 8 frames of 32px.
    "tiny": SizePreset(frames=8, frame_size=32, options={"width": 0.125}),
    # ResNet-18 video networks at the paper's / torchvision's 16x112.
    "base": SizePreset(frames=16, frame_size=112, options={"width": 1.0}),
}

R3D = FamilySpec(
    name="r3d",
    description="R3D-18: ResNet-18 with 3x3x3 convs (torchvision r3d_18 names; K400 weights load)",
    paper="anh2022",
    build=build_r3d,
    sizes=_SIZES,
    mean=TORCHVISION_VIDEO_MEAN,
    std=TORCHVISION_VIDEO_STD,
    default_dropout=0.5,
    pretrained_sources=("kinetics400",),
    hub_checkpoints={"kinetics400": "https://download.pytorch.org/models/r3d_18-b3b3357e.pth"},
    head_prefixes=("fc.",),
    explain_layers=("layer4", "layer3", "layer2"),
)

# Same inputs and sizes as R3D; only the network (and its Kinetics-400 file) differs.
R2PLUS1D = replace(
    R3D,
    name="r2plus1d",
    description="R(2+1)D-18: 3x3x3 convs factorised into 1x3x3 + 3x1x1 (torchvision r2plus1d_18 names; K400 weights load)",
    build=build_r2plus1d,
    hub_checkpoints={"kinetics400": "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth"},
)
