"""``cnn3d_attention``: one 3D convolution + sigmoid attention gate + 3D average pooling + dense layers.

From Shrestha et al. 2021 ("3D Convolutional with Attention for Action
Recognition"): a 3D conv of 64 channels followed by ReLU extracts spatio-temporal features; an
attention layer (a sigmoid gate computed from those features) is multiplied in element-wise; a 3D
average pooling follows; then dense layers with ReLU and dropout 0.25 predict the class of a 16-frame
112x112 clip. Trained from scratch (Adam 1e-4) in the paper, so the family has no downloadable
pretraining source; ``synthetic-src`` (built here by ``harp pretrain``, ``harp.train.pretrain``) and
``file:``/``hf:`` work.

The paper gives no kernel or pooling sizes: the conv is 3x3x3 (stride 1, padding 1), the gate is a
1x1x1 conv + sigmoid over the 64 feature channels (so each channel/position gets its own weight in
(0, 1)), the pooling is an average to a fixed ``pool_output`` grid (so the dense layers do not depend
on the clip size), and the dense layers are ``hidden`` wide.

    clip (B,3,T,H,W) -> conv3x3x3(64) -> ReLU = f -> f * sigmoid(conv1x1x1(f)) -> avgpool3d(pool_output)
        -> flatten -> [Linear -> ReLU -> Dropout(0.25)] x len(hidden) -> fc -> logits (B, classes)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harp.errors import ConfigError
from harp.models.spec import KINETICS_MEAN, KINETICS_STD, BuildArgs, FamilySpec, SizePreset

__all__ = ["CNN3DAttention", "CNN3D_ATTENTION", "build"]


class CNN3DAttention(nn.Module):
    """The 3D-CNN + attention-gate network; works for any clip length and frame size."""

    def __init__(
        self,
        num_classes: int,
        channels: int = 64,
        kernel: int = 3,
        pool_output: Sequence[int] = (2, 4, 4),
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.25,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, channels, kernel, padding=kernel // 2)
        self.relu = nn.ReLU(inplace=True)
        # The attention layer: a per-position, per-channel gate in (0, 1) computed from the features.
        self.attention = nn.Conv3d(channels, channels, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool3d(tuple(pool_output))
        layers: list[nn.Module] = []
        width = channels * int(torch.tensor(list(pool_output)).prod())
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.dense = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)
        self.feature_dim = width

    def gate(self, features: torch.Tensor) -> torch.Tensor:
        """The attention map multiplied into the features: ``sigmoid(conv1x1x1(features))``."""
        return torch.sigmoid(self.attention(features))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Gated, pooled 3D-conv features ``(B, channels, *pool_output)`` before the dense layers."""
        f = self.relu(self.conv(x))
        return self.pool(f * self.gate(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dense(torch.flatten(self.features(x), 1)))


def build(args: BuildArgs) -> CNN3DAttention:
    o = dict(args.options)
    unknown = set(o) - {"channels", "kernel", "pool_output", "hidden"}
    if unknown:
        raise ConfigError(
            f"cnn3d_attention: unknown model.options {sorted(unknown)}; valid: channels, kernel, pool_output, hidden"
        )
    return CNN3DAttention(
        num_classes=args.num_classes,
        channels=int(o.get("channels", 64)),
        kernel=int(o.get("kernel", 3)),
        pool_output=tuple(int(v) for v in o.get("pool_output", (2, 4, 4))),
        hidden=tuple(int(v) for v in o.get("hidden", (512, 256))),
        dropout=args.dropout,
    )


CNN3D_ATTENTION = FamilySpec(
    name="cnn3d_attention",
    description="3D conv (64) + ReLU, sigmoid attention gate multiplied in, 3D avg pooling, dense layers (dropout 0.25)",
    paper="shrestha2021",
    build=build,
    sizes={
        # CPU: one conv of 16 channels on 8x32x32 clips; a forward+backward of batch 8 takes milliseconds.
        "tiny": SizePreset(frames=8, frame_size=32, options={"channels": 16, "pool_output": (2, 2, 2), "hidden": (64,)}),
        # The paper: 64 channels, 16 frames of 112x112 (random crops of 128x171 frames).
        "base": SizePreset(frames=16, frame_size=112, options={"channels": 64, "pool_output": (2, 4, 4), "hidden": (512, 256)}),
    },
    mean=KINETICS_MEAN,
    std=KINETICS_STD,
    default_dropout=0.25,
    pretrained_sources=("synthetic-src",),  # trained from scratch in the paper; synthetic-src is built locally
    head_prefixes=("fc.",),
    explain_layers=("conv",),
)
