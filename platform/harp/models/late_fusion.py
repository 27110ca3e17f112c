"""``late_fusion``: a shared 2D CNN on every frame, features concatenated and fused (Anh et al. 2022).

    clip (B,3,T,H,W) -> ResNet per frame -> pooled (B,T,F) -> concat (B,T*F)
        -> fusion: Linear(T*F, fusion_dim) -> ReLU -> Dropout -> fc -> logits

The fusion layer sees every frame's features at once (in order), which is what makes it "late"
fusion rather than an average of per-frame scores; it fixes the number of frames the model takes.
The paper (003) uses 5 uniformly sampled frames and an ImageNet ResNet-152; harp's base preset uses
the ResNet-50 all 2D families share (``model.options.depth=152`` gives the paper's backbone; the
``imagenet`` source file is ResNet-50's, use ``file:`` with torchvision's resnet152 file then).
"""
from __future__ import annotations

import torch
from torch import nn

from harp.models.segment import TINY_BACKBONE, FrameNet, backbone_options, imagenet_resnet_spec
from harp.models.spec import BuildArgs, SizePreset

__all__ = ["LATE_FUSION", "LateFusionNet", "build"]


class LateFusionNet(FrameNet):
    def __init__(self, *, num_classes: int, frames: int, dropout: float, fusion_dim: int = 512, **kwargs) -> None:
        super().__init__(frames=frames, **kwargs)
        self.frames = frames
        self.fusion = nn.Sequential(nn.Linear(frames * self.feature_dim, fusion_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.fc = nn.Linear(fusion_dim, num_classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.shape[2] != self.frames:
            raise ValueError(f"late_fusion was built for {self.frames} frames, got a clip of {clip.shape[2]}")
        return self.fc(self.fusion(self.frame_features(clip).flatten(1)))


def build(args: BuildArgs) -> LateFusionNet:
    backbone, own = backbone_options(args, "late_fusion", {"fusion_dim": 512})
    return LateFusionNet(
        num_classes=args.num_classes, frames=args.frames, dropout=args.dropout, fusion_dim=int(own["fusion_dim"]), **backbone
    )


LATE_FUSION = imagenet_resnet_spec(
    name="late_fusion",
    description="Late Fusion: shared 2D ResNet per frame, concatenated features into a fusion layer",
    paper="anh2022",
    build=build,
    sizes={
        "tiny": SizePreset(frames=5, frame_size=32, options={**TINY_BACKBONE, "fusion_dim": 64}),
        "base": SizePreset(frames=5, frame_size=224, options={"depth": 50, "fusion_dim": 512}),
    },
    head_prefixes=("fc.", "fusion."),
)
