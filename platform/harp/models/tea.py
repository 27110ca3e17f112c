"""``tea``: Temporal Excitation and Aggregation (Li et al. 2020), a 2D baseline of the MDT-Net paper (Xu, Cao and Yi).

TSN's ResNet with two inserts in every residual block:

* Motion excitation (ME), after ``conv1``: squeeze the C channels to C/r (1x1 conv + BN), take the
  feature-level difference between each frame's neighbour after a channel-wise 3x3 conv and the frame
  itself, ``d_t = conv(f_{t+1}) - f_t`` (``d_{T-1} = 0``), pool it spatially, expand back to C (1x1 conv +
  BN) and excite: ``x + x * sigmoid(a)`` (the residual form of the paper keeps the static features).
* Multiple temporal aggregation (MTA), replacing ``conv2``: the channels are split into 4 fragments;
  the first passes through; fragment i>1 adds the previous fragment's output, then runs a channel-wise
  temporal conv (kernel 3) and a 3x3 spatial conv, so later fragments see a larger spatio-temporal
  field. Parameters: ``conv2.temporal.{0,1,2}`` and ``conv2.spatial.{0,1,2}``; in a strided block the
  first fragment is average-pooled and fragments are not chained (Res2Net's "stage" blocks).

The ``imagenet`` source converts torchvision's ``conv2.weight`` (C x C x 3 x 3) into the three spatial
convs by taking its diagonal blocks (fragment to itself); the temporal convs start as the identity, so
at an ImageNet start every frame goes through a Res2Net-style hierarchical ``conv2`` made of
torchvision's weights, and frames first interact through ME.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from harp.errors import ConfigError
from harp.models.segment import SegmentConsensusNet, Segments, TINY_BACKBONE, backbone_options, convert_tsm_repo_keys, imagenet_resnet_spec
from harp.models.spec import BuildArgs, SizePreset

__all__ = ["TEA", "MotionExcitation", "MultipleTemporalAggregation", "TEANet", "build", "convert_state_dict"]


class MotionExcitation(nn.Module):
    """TEA's ME module on ``(B*T, C, H, W)`` features."""

    def __init__(self, channels: int, segments: Segments, reduction: int = 16) -> None:
        super().__init__()
        self.segments = segments
        reduced = max(channels // reduction, 4)
        self.squeeze = nn.Conv2d(channels, reduced, 1, bias=False)
        self.squeeze_bn = nn.BatchNorm2d(reduced)
        self.transform = nn.Conv2d(reduced, reduced, 3, padding=1, groups=reduced, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(channels)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        f = self.squeeze_bn(self.squeeze(x))
        diff = self.segments.next_difference(f, self.transform(f))
        return torch.sigmoid(self.expand_bn(self.expand(self.pool(diff))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x * self.attention(x)


class MultipleTemporalAggregation(nn.Module):
    """TEA's MTA module, a drop-in for a block's 3x3 ``conv2`` (same in/out channels and stride)."""

    def __init__(self, conv2: nn.Conv2d, segments: Segments, fragments: int = 4) -> None:
        super().__init__()
        channels = conv2.in_channels
        if channels % fragments or conv2.out_channels != channels:
            raise ConfigError(f"tea: MTA needs a square conv2 whose {channels} channels split into {fragments} fragments")
        self.segments = segments
        self.fragments = fragments
        self.stride = conv2.stride[0]
        width = channels // fragments
        self.temporal = nn.ModuleList(
            nn.Conv1d(width, width, 3, padding=1, groups=width, bias=False) for _ in range(fragments - 1)
        )
        self.spatial = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride=self.stride, padding=1, bias=False) for _ in range(fragments - 1)
        )
        self.pool = nn.AvgPool2d(3, stride=self.stride, padding=1) if self.stride != 1 else nn.Identity()

    def reset_parameters_after_backbone(self) -> None:
        """Temporal convs start as the identity (centre tap 1): MTA starts as a per-frame hierarchical conv."""
        for conv in self.temporal:
            nn.init.zeros_(conv.weight)
            with torch.no_grad():
                conv.weight[:, 0, 1] = 1.0

    def _temporal(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        t = self.segments.frames
        seq = x.view(n // t, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(-1, c, t)  # (B*H*W, C, T)
        seq = conv(seq)
        return seq.view(n // t, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(n, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(x, self.fragments, dim=1)
        outputs = [self.pool(parts[0])]
        previous = None
        for i in range(1, self.fragments):
            part = parts[i] if previous is None or self.stride != 1 else parts[i] + previous
            previous = self.spatial[i - 1](self._temporal(self.temporal[i - 1], part))
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class TEANet(SegmentConsensusNet):
    """TSN + ME after ``conv1`` and MTA in place of ``conv2`` in every residual block."""

    def __init__(self, *, frames: int, reduction: int = 16, **kwargs) -> None:
        segments = Segments(frames)
        super().__init__(
            frames=frames,
            segments=segments,
            conv1_hook=lambda channels, name: MotionExcitation(channels, segments, reduction),
            conv2_hook=lambda conv2, name: MultipleTemporalAggregation(conv2, segments),
            **kwargs,
        )


def build(args: BuildArgs) -> TEANet:
    backbone, own = backbone_options(args, "tea", {"reduction": 16})
    return TEANet(
        num_classes=args.num_classes, dropout=args.dropout, frames=args.frames, reduction=int(own["reduction"]), **backbone
    )


_CONV2 = re.compile(r"^(layer\d+\.\d+)\.conv2\.weight$")


def convert_state_dict(state: dict[str, torch.Tensor], source: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision ``layerX.Y.conv2.weight`` -> MTA's ``conv2.spatial.k.weight`` (diagonal blocks).

    Keys already in TEA's layout (a TEA checkpoint) pass through unchanged.
    """
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in convert_tsm_repo_keys(state, source, model).items():
        match = _CONV2.match(key)
        target = f"{match.group(1)}.conv2.spatial.0.weight" if match else None
        if match is None or target not in own or value.dim() != 4 or value.shape[0] != value.shape[1]:
            out[key] = value
            continue
        width = own[target].shape[0]
        fragments = value.shape[0] // width
        for k in range(1, fragments):
            block = value[k * width : (k + 1) * width, k * width : (k + 1) * width]
            out[f"{match.group(1)}.conv2.spatial.{k - 1}.weight"] = block.clone()
    return out


TEA = imagenet_resnet_spec(
    name="tea",
    description="Temporal Excitation and Aggregation: ResNet-50 TSN with motion excitation and multiple temporal aggregation",
    paper="xu-mdt",
    build=build,
    sizes={
        "tiny": SizePreset(frames=8, frame_size=32, options=TINY_BACKBONE),
        "base": SizePreset(frames=8, frame_size=224, options={"depth": 50}),
    },
    convert_state_dict=convert_state_dict,
)
