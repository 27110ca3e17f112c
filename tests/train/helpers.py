"""Helpers only the tests need: reading what the package writes, in the tests' own terms."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from harp.train.checkpoint import WEIGHTS
from harp.train.metrics import topk_correct


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of samples whose label is among the top-k scores, for each k."""
    n = max(1, labels.numel())
    return {k: c / n for k, c in topk_correct(logits, labels, ks).items()}


def read_weights_metadata(directory: str | Path) -> dict[str, str]:
    """The string metadata saved in a checkpoint's safetensors header (family, num_classes, epoch)."""
    with safe_open(str(Path(directory) / WEIGHTS), framework="pt") as handle:
        return dict(handle.metadata() or {})
