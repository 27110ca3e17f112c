"""Named pretraining sources that harp builds on this machine instead of downloading.

``synthetic-src`` is one: a family trained on a related-but-different task made with the embedded
synthetic generator (``harp.train.pretrain`` says which task and how it is trained; ``harp
pretrain`` and ``harp sweep`` build it). It is used like any named source (``model.pretrained=
synthetic-src``), and it sits in the same weights cache as the downloaded ones::

    $TORCH_HOME/hub/checkpoints/harp-synthetic-src/<family>-<architecture>.safetensors

one file per family and architecture. ``<architecture>`` is a digest of the names and shapes of the
model's tensors without its classification head (``architecture_key``), so a ``tiny`` and a
``base`` model, or two widths, never load each other's weights, while the class count and the
options that hold no weights (TSM's ``fold_div``, the clip length) share one file, the way one
ImageNet file serves any head and clip.

A missing file fails at once with how to build it, as a missing download says how to fetch it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

# Source name -> what it is, in a few words (the recipe lives with the builder, harp.train.pretrain).
BUILT_SOURCES: dict[str, str] = {
    "synthetic-src": "the synthetic generator's rotate_cw/rotate_ccw/blink/still classes, on scenes of another seed",
}

_KEY_LENGTH = 12


def is_built_source(source: str) -> bool:
    return source in BUILT_SOURCES


def architecture_key(model: nn.Module, head_prefixes: tuple[str, ...]) -> str:
    """A short digest of the model's tensor names and shapes outside its head: two models with the
    same key can load each other's weights (all but the head)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if not name.startswith(head_prefixes):
            digest.update(f"{name}:{'x'.join(map(str, tensor.shape))};".encode())
    return digest.hexdigest()[:_KEY_LENGTH]


def built_source_dir(source: str, checkpoint_dir: Path) -> Path:
    """The folder of a built source in the torch weights cache (``checkpoint_dir``)."""
    return checkpoint_dir / f"harp-{source}"


def built_source_file(source: str, family: str, key: str, checkpoint_dir: Path) -> Path:
    """Where a family's weights of one architecture (``architecture_key``) of a built source live."""
    return built_source_dir(source, checkpoint_dir) / f"{family}-{key}.safetensors"


def build_hint(source: str, family: str) -> str:
    """How to make a built source that is missing (the counterpart of the fetch hint)."""
    return (
        f"build it with `harp pretrain {source} --family {family}` and this run's model.size and model.options "
        f"(`harp sweep` builds the ones its space samples before its trials start), or copy that folder from a machine that has it"
    )


__all__ = ["BUILT_SOURCES", "architecture_key", "build_hint", "built_source_dir", "built_source_file", "is_built_source"]
