"""A confusion matrix drawn on matplotlib axes: one drawing for the exported ``confusion.png``
(``harp.evaluate``) and the report page's figure (``harp.report.figures``).

Its own module, below every layer that draws one, with numpy as its only dependency at import:
the report page must not import torch and the data stack just to draw a matrix.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def draw_confusion(ax: Any, cm: np.ndarray, names: Sequence[str], font: int) -> None:
    """Draw ``cm`` on matplotlib axes ``ax``: row-normalised colours (so small classes show),
    the counts written in matrices of up to 30 classes, and a colour bar. Shared by the exported
    confusion.png and the report page's figure."""
    k = len(names)
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), labels=names, rotation=90, fontsize=font)
    ax.set_yticks(range(k), labels=names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


__all__ = ["draw_confusion"]
