"""The value rules every layer shares: what counts as a finite number, what a JSON file may hold,
and which of two scores is better.

One copy of each, at the bottom of the import layers (standard library only), so the training
loop, the searcher, export and the reports agree on what "best" means and on how a NaN is written.
"""
from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

Mode = Literal["max", "min"]


def is_finite(value: Any) -> bool:
    """True for a real number that is neither NaN nor infinite (numpy and torch scalars too)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def signed(value: Any, mode: str) -> float:
    """The score on a higher-is-better scale: ``value`` for ``max``, ``-value`` for ``min``;
    a missing or non-finite value ranks below every real one (``-inf``)."""
    if not is_finite(value):
        return -math.inf
    return float(value) if mode == "max" else -float(value)


def better(new: Any, old: Any, mode: str) -> bool:
    """Whether ``new`` beats ``old`` under ``mode``; ties keep the old one (the earlier epoch wins)."""
    return signed(new, mode) > signed(old, mode)


def best_of(values: Iterable[Any], mode: str) -> float | None:
    """The best finite value under ``mode``, or None when there is none."""
    finite = [float(v) for v in values if is_finite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def jsonable(value: Any) -> Any:
    """``value`` made of JSON types: mappings and sequences recursively, numpy/torch scalars and
    arrays as numbers and lists, paths and enums as strings, NaN and infinities as ``None``
    (JSON has no NaN; ``null`` is what readers in every language understand)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy / torch
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = ["Mode", "best_of", "better", "is_finite", "jsonable", "signed"]
