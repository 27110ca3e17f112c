"""What every model family declares: how to build it and what its inputs and weights look like.

The data pipeline reads frames, frame size and mean/std from here (so a sweep that changes the
family changes the clips), and the pretrained loader reads which sources the family accepts.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)

# Sources every family accepts besides its named ones: no weights, a local file, a HF repo/dir.
GENERIC_SOURCES = ("none", "file:PATH", "hf:REPO_OR_DIR")


@dataclass(frozen=True)
class SizePreset:
    """A size a family can be built at: frames and frame size it expects, plus family knobs."""

    frames: int
    frame_size: int
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildArgs:
    """Everything a family's builder gets: already resolved, never None."""

    num_classes: int
    size: str
    frames: int
    frame_size: int
    dropout: float
    options: Mapping[str, Any]


StateDictConverter = Callable[[dict[str, torch.Tensor], str, nn.Module], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class FamilySpec:
    """One model family: its builder and the facts the rest of harp needs about it."""

    name: str
    description: str
    paper: str  # key of the paper the family comes from (harp.papers.PAPERS)
    build: Callable[[BuildArgs], nn.Module]
    sizes: Mapping[str, SizePreset]  # at least "tiny" (CPU, seconds) and "base" (paper size)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    default_dropout: float = 0.5
    # Named pretraining sources this family accepts besides GENERIC_SOURCES (imagenet, kinetics400, ...).
    pretrained_sources: tuple[str, ...] = ()
    # Named source -> Hugging Face repo id, for sources that live on the hub.
    hub_checkpoints: Mapping[str, str] = field(default_factory=dict)
    # Parameter-name prefixes of the classification head: replaced when the class count changes.
    head_prefixes: tuple[str, ...] = ("fc.",)
    # Optional rewrite of a loaded state dict before matching (e.g. 2D -> 3D inflation for imagenet).
    convert_state_dict: StateDictConverter | None = None

    def accepts(self, source: str) -> bool:
        return source == "none" or source.startswith(("file:", "hf:")) or source in self.pretrained_sources

    def all_sources(self) -> tuple[str, ...]:
        return ("none", *self.pretrained_sources, "file:PATH", "hf:REPO_OR_DIR")
