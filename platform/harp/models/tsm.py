"""``tsm``: Temporal Shift Module (Lin et al. 2019), one of the 2D baselines of the MDT-Net paper (Xu, Cao and Yi).

TSN's network with a zero-parameter temporal shift on the residual branch of every residual block
("residual shift", TSM's ``blockres`` placement): before ``conv1`` of each block, of the block input's
C channels

* channels ``[0, C/8)`` take their value from the NEXT frame (shifted one step backward in time),
* channels ``[C/8, C/4)`` take their value from the PREVIOUS frame (shifted one step forward in time),
* the other 3/4 stay in place,

and the frames that have no neighbour on that side get zeros. The identity path is not shifted, so the
block keeps the frame's own spatial features. ``fold_div`` (default 8) sets the 1/8 fraction.
"""
from __future__ import annotations

import torch
from torch import nn

from harp.errors import ConfigError
from harp.models.segment import TINY_BACKBONE, SegmentConsensusNet, Segments, backbone_options, convert_tsm_repo_keys, imagenet_resnet_spec
from harp.models.spec import BuildArgs, SizePreset

__all__ = ["TSM", "TemporalShift", "TSMNet", "build", "temporal_shift"]


def temporal_shift(x: torch.Tensor, frames: int, fold_div: int = 8) -> torch.Tensor:
    """Shift ``C // fold_div`` channels one frame backward and as many one frame forward, zero-filled.

    ``x`` is ``(B*T, C, ...)`` with the frame index fastest; returns the same shape.
    """
    shape = x.shape
    x = x.reshape(-1, frames, *shape[1:])
    fold = x.shape[2] // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]  # frame t <- frame t+1
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]  # frame t <- frame t-1
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.reshape(shape)


class TemporalShift(nn.Module):
    """:func:`temporal_shift` as a module for the residual branch; no parameters."""

    def __init__(self, segments: Segments, fold_div: int = 8) -> None:
        super().__init__()
        self.segments = segments
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_shift(x, self.segments.frames, self.fold_div)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}"


class TSMNet(SegmentConsensusNet):
    """TSN + a residual temporal shift in every block."""

    def __init__(self, *, frames: int, fold_div: int = 8, **kwargs) -> None:
        segments = Segments(frames)
        super().__init__(
            frames=frames,
            segments=segments,
            residual_hook=lambda channels, name: TemporalShift(segments, fold_div),
            **kwargs,
        )


def build(args: BuildArgs) -> TSMNet:
    backbone, own = backbone_options(args, "tsm", {"fold_div": 8})
    fold_div = int(own["fold_div"])
    if fold_div < 2:
        raise ConfigError(f"tsm: model.options.fold_div must be >= 2 (1/fold_div of the channels shift each way), got {fold_div}")
    return TSMNet(num_classes=args.num_classes, dropout=args.dropout, frames=args.frames, fold_div=fold_div, **backbone)


TSM = imagenet_resnet_spec(
    name="tsm",
    description="Temporal Shift Module: ResNet-50 TSN with a residual shift of 1/8 channels each way in time",
    paper="xu-mdt",
    build=build,
    sizes={
        "tiny": SizePreset(frames=8, frame_size=32, options=TINY_BACKBONE),
        "base": SizePreset(frames=8, frame_size=224, options={"depth": 50}),
    },
    pretrained_sources=("imagenet", "synthetic-src"),  # synthetic-src: built locally (harp pretrain)
    convert_state_dict=convert_tsm_repo_keys,  # torchvision files, and the TSM reference code's checkpoints
)
