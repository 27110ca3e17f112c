"""``lrcn``: Long-term Recurrent Convolutional Network (Donahue et al.; Anh et al. 2022).

    clip (B,3,T,H,W) -> ResNet per frame -> pooled (B,T,F) -> LSTM(F -> hidden) -> (B,T,hidden)
        -> dropout -> fc per time step -> average over time -> logits

The CNN encodes each frame, the LSTM runs over the frame sequence, and, as in LRCN's activity
recognition, the per-step predictions are averaged over the clip. The paper (003) uses 5 frames and an
ImageNet ResNet-152; the base preset uses the shared ResNet-50 (``model.options.depth=152`` for the
paper's backbone, loaded with ``file:`` and torchvision's resnet152 file).
"""
from __future__ import annotations

import torch
from torch import nn

from harp.models.segment import TINY_BACKBONE, FrameNet, backbone_options, imagenet_resnet_spec
from harp.models.spec import BuildArgs, SizePreset

__all__ = ["LRCN", "LRCNNet", "build"]


class LRCNNet(FrameNet):
    def __init__(self, *, num_classes: int, dropout: float, hidden: int = 256, lstm_layers: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lstm = nn.LSTM(self.feature_dim, hidden, num_layers=lstm_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def step_logits(self, clip: torch.Tensor) -> torch.Tensor:
        """``(B, T, classes)``: the prediction after each frame."""
        sequence, _ = self.lstm(self.frame_features(clip))
        return self.fc(self.dropout(sequence))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.step_logits(clip).mean(dim=1)


def build(args: BuildArgs) -> LRCNNet:
    backbone, own = backbone_options(args, "lrcn", {"hidden": 256, "lstm_layers": 1})
    return LRCNNet(
        num_classes=args.num_classes,
        frames=args.frames,
        dropout=args.dropout,
        hidden=int(own["hidden"]),
        lstm_layers=int(own["lstm_layers"]),
        **backbone,
    )


LRCN = imagenet_resnet_spec(
    name="lrcn",
    description="LRCN: shared 2D ResNet per frame into an LSTM, per-step predictions averaged",
    paper="anh2022",
    build=build,
    sizes={
        "tiny": SizePreset(frames=5, frame_size=32, options={**TINY_BACKBONE, "hidden": 32}),
        "base": SizePreset(frames=5, frame_size=224, options={"depth": 50, "hidden": 256}),
    },
)
