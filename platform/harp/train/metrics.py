"""Classification metrics: top-k, confusion matrix, mean class accuracy, DDP-safe averaging.

Per-epoch numbers are accumulated as sums and counts on each rank and summed across ranks
once (``all_reduce_sums``) so the reported loss and accuracy are those of the whole split,
not of rank 0's shard.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of samples whose label is among the top-k scores, for each k (k capped at #classes)."""
    num_classes = logits.shape[-1]
    kmax = min(max(ks), num_classes)
    top = logits.topk(kmax, dim=-1).indices  # (B, kmax)
    hits = top.eq(labels.view(-1, 1))
    return {k: int(hits[:, : min(k, num_classes)].any(dim=1).sum().item()) for k in ks}


def all_reduce_sums(values: Mapping[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
    """Sum each value over all DDP ranks (identity when not distributed)."""
    keys = sorted(values)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return {k: float(values[k]) for k in keys}
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(keys, tensor.tolist()))


def all_gather_strings(items: list[str]) -> list[str]:
    """Every rank's list of strings, concatenated (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(items))
    return [s for part in gathered for s in (part or [])]


def all_reduce_counts(counts: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """A count tensor (e.g. a confusion matrix) summed over all DDP ranks, on the CPU (itself when
    not distributed). ``device``: where the collective runs (NCCL needs the rank's GPU)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return counts
    tensor = counts.to(device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu()


class RunningSums:
    """Sums and counts for one epoch on one rank; ``reduce()`` gives whole-split means."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def reduce(self, device: torch.device | str = "cpu") -> dict[str, float]:
        return all_reduce_sums(self.sums, device)


def confusion_matrix(preds: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """cm[true, predicted] counts, int64 (num_classes x num_classes)."""
    preds = np.asarray(torch.as_tensor(preds).cpu(), dtype=np.int64).ravel()
    labels = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64).ravel()
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall per class; NaN for a class with no samples."""
    support = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def mean_class_accuracy(cm: np.ndarray) -> float:
    """Mean of per-class accuracies over classes that have samples (UCF101/HMDB51 convention)."""
    acc = per_class_accuracy(cm)
    acc = acc[~np.isnan(acc)]
    return float(acc.mean()) if acc.size else float("nan")
