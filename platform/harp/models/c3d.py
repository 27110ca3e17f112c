"""``c3d``: the "VGG of 3D CNNs" (Tran et al. 2015; Anh et al. 2022).

Eight 3x3x3 convolutions (stride 1, padding 1) of 64-128-256-256-512-512-512-512 channels, five max
pools (the first 1x2x2 so early temporal information survives, the others 2x2x2), then fc6 and fc7
(4096, ReLU, dropout) and the classifier fc8. A 16x112x112 clip reaches pool5 as 512x1x4x4 = 8192
features, the input of fc6.

Parameter names follow the C3D port most Sports-1M weight files use (conv1, conv2, conv3a, conv3b,
conv4a, conv4b, conv5a, conv5b, fc6, fc7, fc8), so such a file loads with ``file:PATH``.

Sizes other than 16x112 still work: a pool never takes more than the remaining extent of a
dimension (an 8-frame clip reaches pool4 with one frame left), and an adaptive average pool brings
pool5's output to the ``fc6`` grid (identity at 16x112, where it already is 1x4x4).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harp.errors import ConfigError
from harp.models.spec import KINETICS_MEAN, KINETICS_STD, BuildArgs, FamilySpec, SizePreset

__all__ = ["C3D", "C3DNet", "C3D_CHANNELS", "build"]

C3D_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
_CONV_NAMES = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
# pool i follows these convs; kernel = stride; pool5 pads H and W by 1 (7x7 -> 4x4 at 112px).
_POOLS = {"conv1": ((1, 2, 2), (0, 0, 0)), "conv2": ((2, 2, 2), (0, 0, 0)), "conv3b": ((2, 2, 2), (0, 0, 0)),
          "conv4b": ((2, 2, 2), (0, 0, 0)), "conv5b": ((2, 2, 2), (0, 1, 1))}


def _max_pool(x: torch.Tensor, kernel: tuple[int, int, int], padding: tuple[int, int, int]) -> torch.Tensor:
    """Max pool with kernel = stride, never larger than what is left of a dimension (short/small clips)."""
    sizes = x.shape[-3:]
    k = tuple(min(kk, s + 2 * p) for kk, s, p in zip(kernel, sizes, padding))
    p = tuple(min(pp, kk // 2) for pp, kk in zip(padding, k))
    if k == (1, 1, 1):
        return x
    return F.max_pool3d(x, kernel_size=k, stride=k, padding=p)


class C3DNet(nn.Module):
    """C3D with a configurable width (``channels``) and fc6/fc7 size; logits ``(B, classes)``."""

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int] = C3D_CHANNELS,
        fc_dim: int = 4096,
        fc_grid: Sequence[int] = (1, 4, 4),
        dropout: float = 0.5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(channels) != 8:
            raise ConfigError(f"c3d: channels must list 8 conv widths, got {list(channels)}")
        width = in_channels
        for name, out in zip(_CONV_NAMES, channels):
            setattr(self, name, nn.Conv3d(width, int(out), kernel_size=3, padding=1))
            width = int(out)
        self.fc_grid = tuple(int(v) for v in fc_grid)
        self.fc6 = nn.Linear(width * self.fc_grid[0] * self.fc_grid[1] * self.fc_grid[2], fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.fc8 = nn.Linear(fc_dim, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.feature_dim = fc_dim
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """pool5 output ``(B, C5, t, h, w)`` before the adaptive pool to the fc6 grid."""
        for name in _CONV_NAMES:
            x = F.relu(getattr(self, name)(x), inplace=True)
            if name in _POOLS:
                x = _max_pool(x, *_POOLS[name])
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 activations ``(B, fc_dim)`` (the classic C3D video descriptor)."""
        x = F.adaptive_avg_pool3d(self.conv_features(x), self.fc_grid)
        x = self.dropout(F.relu(self.fc6(torch.flatten(x, 1)), inplace=True))
        return self.dropout(F.relu(self.fc7(x), inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.features(x))


def build(args: BuildArgs) -> C3DNet:
    o = dict(args.options)
    unknown = set(o) - {"width", "fc_dim", "fc_grid"}
    if unknown:
        raise ConfigError(f"c3d: unknown model.options {sorted(unknown)}; valid: width, fc_dim, fc_grid")
    width = float(o.get("width", 1.0))
    if width <= 0:
        raise ConfigError(f"c3d: model.options.width must be > 0, got {width}")
    channels = tuple(max(1, round(c * width)) for c in C3D_CHANNELS)
    fc_grid = tuple(int(v) for v in o.get("fc_grid", (1, 4, 4)))
    if len(fc_grid) != 3 or min(fc_grid) < 1:
        raise ConfigError(f"c3d: model.options.fc_grid must be 3 sizes (t, h, w) >= 1, got {list(fc_grid)}")
    return C3DNet(
        num_classes=args.num_classes,
        channels=channels,
        fc_dim=int(o.get("fc_dim", 4096)),
        fc_grid=fc_grid,
        dropout=args.dropout,
    )


C3D = FamilySpec(
    name="c3d",
    description="C3D: 8 conv 3x3x3 (64-128-256-256-512-512-512-512), pool1 1x2x2, fc6/fc7 4096",
    paper="anh2022",
    build=build,
    sizes={
        # CPU: 1/8 width (8-16-32-32-64-64-64-64), fc 128, 8 frames of 32px.
        "tiny": SizePreset(frames=8, frame_size=32, options={"width": 0.125, "fc_dim": 128, "fc_grid": (1, 2, 2)}),
        # The paper: 16 frames of 112x112, fc6/fc7 4096.
        "base": SizePreset(frames=16, frame_size=112, options={"width": 1.0, "fc_dim": 4096, "fc_grid": (1, 4, 4)}),
    },
    mean=KINETICS_MEAN,
    std=KINETICS_STD,
    default_dropout=0.5,
    default_sampling="dense",  # Tran et al.: clips of 16 consecutive frames
    # Public C3D weights are Sports-1M (not a named source here): load them with file:PATH and say
    # how they want their input (model.input_norm=c3d_sports1m for the Caffe conversions, or a
    # <file>.norm.json next to the file: harp.models.input_norm).
    pretrained_sources=(),
    head_prefixes=("fc8.",),
    explain_layers=("conv5b", "conv4b", "conv3b"),
)
