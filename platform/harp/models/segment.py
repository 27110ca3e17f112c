"""What the 2D-backbone video families share: a torchvision-named ResNet run on every frame of a clip.

``FrameNet`` *is* a :class:`~harp.models.resnet2d.ResNet2d` (same top-level parameter names, so an
ImageNet weight file from torchvision loads into any of tsn/tsm/tea/mdt/late_fusion/lrcn) that takes
harp's clip contract ``(B, C, T, H, W)`` and folds time into the batch, ``(B*T, C, H, W)``, in the
order temporal modules expect (frame index fastest: row ``b*T + t``).

Temporal inserts (TSM's shift, TEA's and MDT's excitations) need ``T`` to unfold that batch again.
They hold a :class:`Segments` object shared with the network, which the network sets at every forward
from the clip it gets: the same model runs on clips of any length.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from harp.errors import ConfigError
from harp.models.resnet2d import DEPTHS, TORCHVISION_IMAGENET, BasicBlock, Bottleneck, ResNet2d
from harp.models.spec import IMAGENET_MEAN, IMAGENET_STD, BuildArgs, FamilySpec

__all__ = [
    "Segments",
    "FrameNet",
    "SegmentConsensusNet",
    "backbone_options",
    "imagenet_checkpoints",
    "imagenet_of_depth",
    "imagenet_resnet_spec",
    "TINY_BACKBONE",
    "convert_tsm_repo_keys",
]


class Segments:
    """The number of frames per clip in the folded ``(B*T, ...)`` batch; set by the network at forward."""

    def __init__(self, frames: int) -> None:
        self.frames = frames

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """``(B*T, ...)`` -> ``(B, T, ...)``."""
        return x.view(-1, self.frames, *x.shape[1:])

    def next_difference(self, current: torch.Tensor, following: torch.Tensor) -> torch.Tensor:
        """``following[t+1] - current[t]`` per clip, zeros for the last frame; all ``(B*T, ...)``.

        ``following`` is ``current`` itself or a transform of it (TEA's ME, MDT's coarse difference).
        """
        cur, nxt = self.unfold(current), self.unfold(following)
        diff = torch.zeros_like(cur)
        diff[:, :-1] = nxt[:, 1:] - cur[:, :-1]
        return diff.flatten(0, 1)

    def __repr__(self) -> str:  # shown in module reprs
        return f"Segments(frames={self.frames})"


class FrameNet(ResNet2d):
    """A ResNet applied per frame: ``frame_features`` maps a clip to ``(B, T, feature_dim)``."""

    def __init__(
        self,
        *,
        frames: int,
        depth: int = 50,
        width: float = 1.0,
        layers: tuple[int, int, int, int] | None = None,
        segments: Segments | None = None,
        **hooks: Any,
    ) -> None:
        kind, default_layers = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        super().__init__(block, tuple(layers or default_layers), width=width, num_classes=0, **hooks)
        self.depth = depth
        self.segments = segments or Segments(frames)

    @staticmethod
    def fold(clip: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B*T, C, H, W)``, frame index fastest."""
        b, c, t, h, w = clip.shape
        return clip.transpose(1, 2).reshape(b * t, c, h, w)

    def frame_maps(self, clip: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B*T, feature_dim, h, w)`` (the segments know ``T`` from here on)."""
        if clip.dim() != 5:
            raise ValueError(f"expected a clip (B, C, T, H, W), got shape {tuple(clip.shape)}")
        self.segments.frames = clip.shape[2]
        return self.features(self.fold(clip))

    def frame_features(self, clip: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, T, feature_dim)`` globally pooled per-frame features."""
        return self.segments.unfold(torch.flatten(self.avgpool(self.frame_maps(clip)), 1))


class SegmentConsensusNet(FrameNet):
    """TSN's head: per-segment logits from each frame, averaged over the segments (the consensus).

    TSM, TEA and MDT are this network with temporal modules inserted into the residual blocks.
    """

    def __init__(self, *, num_classes: int, dropout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, std=0.001)
        nn.init.zeros_(self.fc.bias)

    def segment_logits(self, clip: torch.Tensor) -> torch.Tensor:
        """``(B, T, classes)``: one prediction per segment, before the consensus."""
        return self.fc(self.dropout(self.frame_features(clip)))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.segment_logits(clip).mean(dim=1)


BACKBONE_OPTIONS = ("depth", "width", "layers")


def backbone_options(args: BuildArgs, family: str, extra: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
    """Split ``args.options`` into backbone kwargs (depth, width, layers) and the family's own knobs.

    ``extra`` maps each family-specific option to its default. Unknown options fail in one line.
    """
    options = dict(args.options)
    extra = extra or {}
    valid = (*BACKBONE_OPTIONS, *extra)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"{family}: unknown model.options {unknown}; valid: {', '.join(valid)}")
    depth = int(options.get("depth", 50))
    if depth not in DEPTHS:
        raise ConfigError(f"{family}: model.options.depth={depth} is not a ResNet depth; choose one of: {', '.join(map(str, DEPTHS))}")
    width = float(options.get("width", 1.0))
    if width <= 0:
        raise ConfigError(f"{family}: model.options.width must be positive, got {width}")
    layers = options.get("layers")
    if layers is not None:
        layers = tuple(int(v) for v in layers)
        if len(layers) != 4 or min(layers) < 1:
            raise ConfigError(f"{family}: model.options.layers must be 4 positive block counts, got {list(layers)}")
    backbone = {"depth": depth, "width": width, "layers": layers}
    own = {key: options.get(key, default) for key, default in extra.items()}
    return backbone, own


def imagenet_checkpoints(depth: int = 50) -> dict[str, str]:
    """The ``imagenet`` source: torchvision's ImageNet ResNet file for the family's base depth."""
    return {"imagenet": TORCHVISION_IMAGENET[depth]}


# The 2D families on an ImageNet ResNet share inputs, head and weights source: only say what differs.
TINY_BACKBONE = {"depth": 18, "width": 0.25, "layers": (1, 1, 1, 1)}


def imagenet_of_depth(source: str, model: nn.Module) -> str | None:
    """``FamilySpec.checkpoint_for``: the ``imagenet`` source of a built backbone is torchvision's
    ImageNet ResNet of its depth (ResNet-152 for Anh et al.'s Late Fusion and LRCN), not always the 50."""
    depth = getattr(model, "depth", None)
    return TORCHVISION_IMAGENET.get(depth) if source == "imagenet" and isinstance(depth, int) else None


def imagenet_resnet_spec(**fields: Any) -> FamilySpec:
    """A FamilySpec for a family on the torchvision-named ResNet-50 (ImageNet mean/std and weights;
    TSN's segment sampling unless the family says otherwise)."""
    defaults: dict[str, Any] = {
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "default_dropout": 0.5,
        "pretrained_sources": ("imagenet",),
        "hub_checkpoints": imagenet_checkpoints(50),
        "checkpoint_for": imagenet_of_depth,
        "default_sampling": "equidistant",
        "head_prefixes": ("fc.",),
        "explain_layers": ("layer4", "layer3", "layer2"),
    }
    return FamilySpec(**{**defaults, **fields})


def convert_tsm_repo_keys(state: dict[str, torch.Tensor], source: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """Key names of the TSN/TSM reference code (mit-han-lab/temporal-shift-module) -> torchvision's.

    Its checkpoints (e.g. ``TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment8_e50.pth``, loaded
    with ``file:``) name the backbone ``base_model.`` (after DDP's ``module.``), wrap each shifted
    ``conv1`` as ``conv1.net`` and call the classifier ``new_fc``. torchvision-named files pass unchanged.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        if key.startswith("base_model."):
            key = key[len("base_model.") :]
        elif key.startswith("new_fc."):
            key = "fc." + key[len("new_fc.") :]
        out[key.replace(".conv1.net.", ".conv1.")] = value
    return out
