"""What every model family declares: how to build it and what its inputs and weights look like.

The data pipeline reads frames, frame size, the default frame sampling and the input normalisation
from here (so a sweep that changes the family changes the clips), and the pretrained loader reads
which sources the family accepts.

Input normalisation belongs to the weights, not only to the family: a Sports-1M C3D converted from
Caffe wants BGR pixels in 0-255 minus the data set's mean, the same network from scratch or on
Kinetics weights wants something else. ``InputNorm`` says what one set of weights wants;
``FamilySpec.mean``/``std`` are the family's own, ``FamilySpec.source_norms`` the named sources that
differ, ``INPUT_NORMS`` the named conventions a ``file:`` source (or ``model.input_norm``) may
declare; ``harp.models.input_norm.resolve_input_norm`` picks the one a run uses.
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
TORCHVISION_VIDEO_MEAN = (0.43216, 0.394666, 0.37645)  # torchvision's Kinetics-400 video models
TORCHVISION_VIDEO_STD = (0.22803, 0.22145, 0.216989)

CHANNEL_ORDERS = ("rgb", "bgr")


@dataclass(frozen=True)
class InputNorm:
    """How a set of weights wants its pixels: ``(x / 255 - mean) / std`` per channel, as
    ``harp.data.transforms.to_model_input`` computes it, with mean and std in [0, 1] units and in
    RGB order. A network trained on 0-255 values minus a mean is ``mean = m / 255, std = 1 / 255``.

    ``channels="bgr"``: the weights' first layer reads BGR (Caffe and OpenCV pipelines). harp keeps
    feeding RGB and reverses that layer's input channels when it loads the weights
    (``harp.models.pretrained.load_pretrained``), which is the same function of the pixels.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channels: str = "rgb"
    name: str = ""  # where it came from, for logs: a name of INPUT_NORMS, a file, a family

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"an input normalisation needs 3 means and 3 positive stds, got {self.mean} / {self.std}")
        if self.channels not in CHANNEL_ORDERS:
            raise ValueError(f"channels={self.channels!r}; choose one of {', '.join(CHANNEL_ORDERS)}")


# Named conventions (model.input_norm=NAME, or {"name": NAME} in a weights file's input_norm.json).
INPUT_NORMS: dict[str, InputNorm] = {
    "imagenet": InputNorm(IMAGENET_MEAN, IMAGENET_STD, name="imagenet"),
    "kinetics": InputNorm(KINETICS_MEAN, KINETICS_STD, name="kinetics"),  # PySlowFast, PyTorchVideo, TimeSformer
    "torchvision_video": InputNorm(TORCHVISION_VIDEO_MEAN, TORCHVISION_VIDEO_STD, name="torchvision_video"),
    "inception": InputNorm((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), name="inception"),  # pixels to [-1, 1] (Scenic ViViT)
    # Tran et al.'s C3D on Sports-1M (Caffe): BGR frames in 0-255 minus the training set's mean; the
    # per-channel means of its mean cube are B 90, G 98, R 102 (as the PyTorch ports subtract them).
    "c3d_sports1m": InputNorm((102 / 255, 98 / 255, 90 / 255), (1 / 255, 1 / 255, 1 / 255), channels="bgr", name="c3d_sports1m"),
}

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
CheckpointChooser = Callable[[str, nn.Module], "str | None"]


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
    # The frame sampler (``sampling.method``) the family's paper feeds it, used when the config names
    # none: TSN-style segments for the 2D-backbone families, consecutive frames for C3D, MDT-Net's
    # adjacent frames per segment (``segment_frames``).
    default_sampling: str = "uniform"
    # Named sources whose weights want another input normalisation than the family's mean/std.
    source_norms: Mapping[str, InputNorm] = field(default_factory=dict)
    # The checkpoint of a named source for a built model, when it depends on the model's options
    # (the ImageNet ResNet of the backbone's depth); None -> hub_checkpoints[source].
    checkpoint_for: CheckpointChooser | None = None
    # What `harp explain` looks at: Grad-CAM's candidate target layers (module names), deepest first;
    # the deepest whose feature map is still spatially useful is used (a tiny model's last stage may
    # be 1x1). Empty for the transformer families, which are explained by attention rollout.
    explain_layers: tuple[str, ...] = ()

    def accepts(self, source: str) -> bool:
        return source == "none" or source.startswith(("file:", "hf:")) or source in self.pretrained_sources

    def all_sources(self) -> tuple[str, ...]:
        return ("none", *self.pretrained_sources, "file:PATH", "hf:REPO_OR_DIR")

    def source_norm(self, source: str) -> InputNorm:
        """The input a named source's weights (or the family's own initialisation) want."""
        return self.source_norms.get(source) or InputNorm(self.mean, self.std, name=f"{self.name} family")
