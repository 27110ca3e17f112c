"""Carve a split out of another (validation out of train; test out of unsplit data), stratified by
class and keeping groups together.

A group is the unit that must not straddle two splits: a UCF101 ``gGG`` (clips cut from one long
video, same actor and background), the source video of HMDB51/Kinetics clips, or the file itself.
Per class, whole groups are moved in a seeded random order until the class's share is reached,
so every class keeps about the same fraction and no group has clips on both sides. The
``random`` strategy moves single clips instead: it exists for comparison and warns that it
leaks (near-duplicate clips in train and validation inflate validation accuracy).
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from harp.errors import HarpError

log = logging.getLogger("harp.data")

LEAK_WARNING = (
    "data.val_strategy=random splits single clips: clips of one group (same source video) land in both "
    "train and validation, so validation accuracy is optimistic. Use data.val_strategy=group."
)


def carve(
    df: pd.DataFrame,
    *,
    source: str,
    target: str,
    fraction: float,
    strategy: str = "group",
    seed: int = 0,
) -> pd.DataFrame:
    """Move about ``fraction`` of each class's usable ``source`` rows to ``target``; returns a copy.

    Rows with a probe error are never moved (they are excluded from all splits). A class keeps at
    least one group in ``source``.
    """
    if strategy not in ("group", "random"):
        raise HarpError(f"data.val_strategy={strategy!r}; choose group or random")
    if not 0.0 <= fraction < 1.0:
        raise HarpError(f"split fraction {fraction} must be in [0, 1)")
    out = df.copy()
    if fraction == 0.0:
        return out
    if strategy == "random":
        warnings.warn(LEAK_WARNING, UserWarning, stacklevel=2)
        log.warning(LEAK_WARNING)
    rng = np.random.default_rng([seed, 31337])
    usable = (out["split"] == source) & (out["error"] == "") if "error" in out else out["split"] == source
    for label in sorted(out.loc[usable, "label"].unique()):
        rows = out.index[usable & (out["label"] == label)]
        units = out.loc[rows, "group"] if strategy == "group" else pd.Series(rows.astype(str), index=rows)
        unique_units = sorted(units.unique())
        if len(unique_units) < 2:
            log.warning("class %r has one %s in %s: none goes to %s", label, "group" if strategy == "group" else "clip", source, target)
            continue
        goal = fraction * len(rows)
        order = rng.permutation(len(unique_units))
        sizes = units.value_counts()
        taken, moved = [], 0
        for k in order[:-1]:  # always leave one unit behind
            if moved >= goal:
                break
            unit = unique_units[k]
            # Take the unit if it brings the count closer to the goal (or nothing is taken yet).
            if moved and abs(moved + sizes[unit] - goal) > abs(moved - goal):
                continue
            taken.append(unit)
            moved += int(sizes[unit])
        out.loc[rows[units.isin(taken).to_numpy()], "split"] = target
    return out


def leaking_groups(df: pd.DataFrame, a: str = "train", b: str = "val") -> set[tuple[str, str]]:
    """(label, group) pairs with clips in both splits ``a`` and ``b`` (empty for a clean split)."""
    def pairs(split: str) -> set[tuple[str, str]]:
        part = df[df["split"] == split]
        return set(zip(part["label"], part["group"]))

    return pairs(a) & pairs(b)
