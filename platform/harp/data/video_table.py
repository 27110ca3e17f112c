"""The videos of one split, as the dataset reads them: path, label, probed frame count, size and
keyframe interval per video, plus the class names.

Stored as fixed-width numpy columns, not Python lists: DataLoader workers touching list items
would copy-on-write the parent's pages and grow resident memory epoch after epoch.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class VideoTable:
    """One row per video; ``path(i)`` is the file of row ``i`` under ``root``."""

    root: Path
    paths: np.ndarray  # bytes_, relative to root
    labels: np.ndarray  # int64 class index
    frames: np.ndarray  # int64 frame count found by the probe
    widths: np.ndarray  # int64
    heights: np.ndarray  # int64
    keyframe_intervals: np.ndarray  # float64 frames between keyframes; 0 = unknown
    class_names: tuple[str, ...] = ()

    @classmethod
    def from_columns(
        cls,
        root: str | os.PathLike[str],
        paths: Sequence[str],
        labels: Sequence[int],
        frames: Sequence[int],
        widths: Sequence[int],
        heights: Sequence[int],
        keyframe_intervals: Sequence[float] | None = None,
        class_names: Sequence[str] = (),
    ) -> VideoTable:
        return cls(
            root=Path(root),
            paths=np.array([str(p) for p in paths], dtype=np.bytes_),
            labels=np.asarray(labels, dtype=np.int64),
            frames=np.asarray(frames, dtype=np.int64),
            widths=np.asarray(widths, dtype=np.int64),
            heights=np.asarray(heights, dtype=np.int64),
            keyframe_intervals=np.asarray(keyframe_intervals if keyframe_intervals is not None else np.zeros(len(paths)), dtype=np.float64),
            class_names=tuple(class_names),
        )

    @classmethod
    def from_manifest(cls, rows: pd.DataFrame, root: str | os.PathLike[str], class_names: Sequence[str]) -> VideoTable:
        """The rows of a manifest (``harp.data.manifest``) that one split keeps."""
        return cls.from_columns(
            root,
            rows["path"].tolist(),
            rows["label_index"].tolist(),
            rows["frames"].tolist(),
            rows["width"].tolist(),
            rows["height"].tolist(),
            rows["keyframe_interval"].tolist(),
            class_names,
        )

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, video: int) -> Path:
        return self.root / self.paths[video].decode()

    def keyframe_interval(self, video: int) -> float | None:
        """The decoder's seek hint; None when the probe did not find one."""
        return float(self.keyframe_intervals[video]) or None


__all__ = ["VideoTable"]
