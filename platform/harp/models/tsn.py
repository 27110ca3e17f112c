"""``tsn``: Temporal Segment Networks (Wang et al. 2016), the 2D baseline of the MDT-Net paper (Xu, Cao and Yi).

The clip's T frames are one frame per segment; a shared ResNet (torchvision parameter names, ImageNet
weights load as is) scores every frame, and the segment consensus averages the T predictions:

    clip (B,3,T,H,W) -> fold (B*T,3,H,W) -> ResNet features -> avgpool -> dropout -> fc -> (B,T,K) -> mean_T

TSN has no temporal modelling inside the network: it is the reference TSM, TEA and MDT improve on,
and with a single frame it cannot tell a motion from its reverse.
"""
from __future__ import annotations

from harp.models.segment import TINY_BACKBONE, SegmentConsensusNet, backbone_options, convert_tsm_repo_keys, imagenet_resnet_spec
from harp.models.spec import BuildArgs, SizePreset

__all__ = ["TSN", "TSNNet", "build"]


class TSNNet(SegmentConsensusNet):
    """TSN with average consensus: a :class:`SegmentConsensusNet` with no temporal inserts."""


def build(args: BuildArgs) -> TSNNet:
    backbone, _ = backbone_options(args, "tsn")
    return TSNNet(num_classes=args.num_classes, dropout=args.dropout, frames=args.frames, **backbone)


# The tiny preset every 2D family shares: a ResNet-18 at a quarter width with one block per stage,
# 8 frames of 32x32 (batch 8 forward+backward in well under 0.3 s on 2 CPU cores).
TSN = imagenet_resnet_spec(
    name="tsn",
    description="Temporal Segment Network: shared 2D ResNet-50 per segment frame, average consensus",
    paper="xu-mdt",
    build=build,
    sizes={
        "tiny": SizePreset(frames=8, frame_size=32, options=TINY_BACKBONE),
        # 004 compares TSN/TSM/TEA/MDT with 8 (or 16) segments of 224x224 on an ImageNet ResNet-50.
        "base": SizePreset(frames=8, frame_size=224, options={"depth": 50}),
    },
    convert_state_dict=convert_tsm_repo_keys,  # torchvision files, and the TSM reference code's checkpoints
)
