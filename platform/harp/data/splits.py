"""Carve a split out of another (validation out of train; test out of unsplit data), keeping
groups together, with a split that is a stable function of each group alone.

A group is the unit that must not straddle two splits: a UCF101 ``gGG`` (clips cut from one long
video, same actor and background), the source video of HMDB51/Kinetics clips, or the file itself.
Each group gets a number in [0, 1) from a hash of (seed, class, group); it moves to the target
split when that number is below the fraction. So a video's split depends on its own group and
nothing else: adding or removing other videos, or whole classes, never moves it (re-indexing a
grown data set keeps its test set). In expectation every class keeps ``fraction`` of its groups;
on small classes the share varies as a coin toss does.

Two guards keep small classes usable, and are the only places where a group's neighbours matter:
a class with two or more groups never sends all of them to the target (the group with the
highest number stays), and never none of them when ``fraction > 0`` (the group with the lowest
number goes). The ``random`` strategy hashes single clips instead: it exists for comparison and
warns that it leaks (near-duplicate clips in train and validation inflate validation accuracy).
"""
from __future__ import annotations

import hashlib
import logging
import warnings

import pandas as pd

from harp.errors import HarpError

log = logging.getLogger("harp.data")

LEAK_WARNING = (
    "data.val_strategy=random splits single clips: clips of one group (same source video) land in both "
    "train and validation, so validation accuracy is optimistic. Use data.val_strategy=group."
)


def unit_draw(seed: int, label: str, unit: str) -> float:
    """A stable number in [0, 1) for one group (or clip) of one class: the same on every machine,
    Python version and run (blake2b, not Python's salted ``hash``)."""
    digest = hashlib.blake2b(f"{seed}\0{label}\0{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def carve(
    df: pd.DataFrame,
    *,
    source: str,
    target: str,
    fraction: float,
    strategy: str = "group",
    seed: int = 0,
) -> pd.DataFrame:
    """Move the usable ``source`` rows whose group draws below ``fraction`` to ``target``; returns a copy.

    Rows with a probe error are never moved (they are excluded from all splits).
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
    usable = (out["split"] == source) & (out["error"] == "") if "error" in out else out["split"] == source
    for label in sorted(out.loc[usable, "label"].unique()):
        rows = out.index[usable & (out["label"] == label)]
        units = out.loc[rows, "group"] if strategy == "group" else out.loc[rows, "path"]
        draws = {unit: unit_draw(seed, str(label), str(unit)) for unit in units.unique()}
        taken = {unit for unit, u in draws.items() if u < fraction}
        if len(draws) >= 2:
            ranked = sorted(draws, key=draws.__getitem__)
            if not taken:
                taken = {ranked[0]}
                log.debug("class %r: no group drew below %g; the lowest-drawn one goes to %s", label, fraction, target)
            elif len(taken) == len(draws):
                taken.discard(ranked[-1])
        else:
            log.warning("class %r has one %s in %s: none goes to %s", label, "group" if strategy == "group" else "clip", source, target)
            taken = set()
        out.loc[rows[units.isin(taken).to_numpy()], "split"] = target
    return out


def leaking_groups(df: pd.DataFrame, a: str = "train", b: str = "val") -> set[tuple[str, str]]:
    """(label, group) pairs with clips in both splits ``a`` and ``b`` (empty for a clean split)."""
    def pairs(split: str) -> set[tuple[str, str]]:
        part = df[df["split"] == split]
        return set(zip(part["label"], part["group"]))

    return pairs(a) & pairs(b)
