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

A class subset with exact counts (``data.per_class``, Kaur's 25 x 50 HMDB51 videos split 36 / 9 / 5
per class) is ``select_exact``: the same draws order the groups, and exact counts come first.
"""
from __future__ import annotations

import hashlib
import logging
import math
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


def exact_counts(per_class: int, test_fraction: float, val_fraction: float) -> dict[str, int]:
    """Videos per split of each class for ``data.per_class``: test = round(n x test_fraction), val =
    round((n - test) x val_fraction), train the rest (Kaur: 50 -> 5 / 9 / 36, i.e. 125 / 225 / 900 on
    25 classes). Rounds halves up, never to even."""
    if per_class < 1:
        raise HarpError(f"data.per_class={per_class} must be >= 1 (0 keeps every video and the official split)")
    for name, fraction in (("data.test_fraction", test_fraction), ("data.val_fraction", val_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise HarpError(f"{name}={fraction} must be in [0, 1)")
    test = math.floor(per_class * test_fraction + 0.5)
    val = math.floor((per_class - test) * val_fraction + 0.5)
    if per_class - test - val < 1:
        raise HarpError(f"data.per_class={per_class} leaves no training video after {test} test and {val} val; lower the fractions")
    return {"train": per_class - test - val, "val": val, "test": test}


def select_exact(df: pd.DataFrame, *, per_class: int, counts: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """Keep ``per_class`` usable videos of every class and split them with exactly ``counts``
    (train / val / test) each; returns the kept rows (unusable ones stay, marked by their error).

    Which videos, and where they go, is a stable function of each group's draw (``unit_draw``, as
    ``carve``): groups in draw order, whole groups first, so a class of HMDB51 keeps source videos
    together. A split takes a group only when the whole group fits; when none fits, the group is
    cut across the splits that still have room (counted and logged: exact counts and whole groups
    cannot always both hold). The official split is set aside, as Kaur's 900 / 225 / 125 subset is
    carved from the 25 classes' videos without it.
    """
    if sum(counts.values()) != per_class:
        raise HarpError(f"split counts {counts} do not add up to data.per_class={per_class}")
    out = df.copy()
    usable = out["error"] == "" if "error" in out else pd.Series(True, index=out.index)
    keep: list[int] = []
    straddling = 0
    for label in sorted(out.loc[usable, "label"].unique(), key=str):
        rows = out[usable & (out["label"] == label)]
        if len(rows) < per_class:
            raise HarpError(
                f"class {label!r} has {len(rows)} readable videos; data.per_class={per_class} needs {per_class} "
                f"(lower data.per_class or drop the class from data.classes)"
            )
        draw = {g: unit_draw(seed, str(label), str(g)) for g in rows["group"].unique()}
        order = rows.assign(_g=rows["group"].map(draw), _v=[unit_draw(seed, str(label), str(p)) for p in rows["path"]])
        chosen = order.sort_values(["_g", "_v"]).head(per_class)  # whole groups first; the last one may be cut
        room = dict(counts)
        for _, members in chosen.groupby("_g", sort=True):
            index = list(members.sort_values("_v").index)
            fits = next((s for s in ("test", "val", "train") if room[s] >= len(index)), None)
            if fits is not None:
                out.loc[index, "split"] = fits
                room[fits] -= len(index)
                continue
            straddling += 1
            for split in ("test", "val", "train"):
                take, index = index[: room[split]], index[room[split]:]
                out.loc[take, "split"] = split
                room[split] -= len(take)
        keep.extend(chosen.index)
    if straddling:
        log.warning("%d source-video groups had to be cut across splits to keep the exact per-class counts %s", straddling, counts)
    kept = out.loc[sorted(keep) + list(out.index[~usable & out["label"].isin(out.loc[usable, "label"])])]
    return kept.sort_index()
