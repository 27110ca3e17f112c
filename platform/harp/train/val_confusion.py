"""The validation confusion matrix a checkpoint carries (``<dir>/val_confusion.json``).

The loop counts it while it validates (the same forward passes that give ``val_top1``, summed over
every rank), so whoever wants a trial's confusion (the W&B callback logs the best checkpoint's
when a trial ends) reads a small file instead of loading the model and re-running the val split
in the sweep's driver: 4 s per trial on a small set at TimeSformer-base on 2 cores, some 20 minutes
for UCF101's val split on a CPU driver, all while the driver's event loop waits.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

VAL_CONFUSION = "val_confusion.json"

Confusion = tuple[list[str], list[list[int]]]  # (class names, matrix[true][predicted])


def write_val_confusion(directory: str | Path, class_names: Sequence[str], matrix: Any) -> Path:
    """``matrix``: counts[true][predicted], anything with ``tolist()`` (a tensor, an array)."""
    path = Path(directory) / VAL_CONFUSION
    path.write_text(json.dumps({"classes": list(class_names), "matrix": [[int(v) for v in row] for row in matrix.tolist()]}) + "\n")
    return path


def parse_val_confusion(text: str) -> Confusion | None:
    """(class names, matrix) from the file's text; None when it is not a square matrix over the names."""
    try:
        data = json.loads(text)
        names = [str(n) for n in data["classes"]]
        matrix = [[int(v) for v in row] for row in data["matrix"]]
    except (ValueError, KeyError, TypeError):
        return None
    if len(matrix) != len(names) or any(len(row) != len(names) for row in matrix):
        return None
    return names, matrix


__all__ = ["VAL_CONFUSION", "Confusion", "parse_val_confusion", "write_val_confusion"]
