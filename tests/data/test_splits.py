"""Group-keeping, class-stratified split carving (no videos needed)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harp.data.splits import carve, leaking_groups


def _frame(classes=4, groups=25, clips=(3, 7), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(classes):
        for g in range(groups):
            for k in range(int(rng.integers(*clips))):
                rows.append({"path": f"c{c}/g{g}_{k}", "label": f"c{c}", "group": f"g{g:02d}", "split": "train", "error": ""})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(5))
def test_group_carve_keeps_groups_and_is_near_the_fraction(seed):
    df = carve(_frame(seed=seed), source="train", target="val", fraction=0.2, seed=seed)
    assert not leaking_groups(df)
    # Each group is a coin toss of p=0.2: over 100 groups the share of groups is near 0.2 ...
    groups = df.drop_duplicates(["label", "group"])
    assert 0.1 <= (groups["split"] == "val").mean() <= 0.3
    # ... and every class has groups on both sides.
    sides = df.groupby("label")["split"].agg(set)
    assert all(parts == {"train", "val"} for parts in sides), sides


def test_a_videos_split_depends_on_its_own_group_alone():
    """Re-indexing after removing and adding videos (even whole classes) moves no other video."""
    before = carve(_frame(seed=7), source="train", target="val", fraction=0.2, seed=1)
    grown = _frame(seed=7)
    grown = grown[~grown["group"].isin(["g03", "g11"])]  # two groups of every class removed
    extra = _frame(classes=6, groups=30, seed=8)
    extra = extra[(extra["label"] == "c5") | (extra["group"] >= "g25")]  # a new class, new groups in the old ones
    after = carve(pd.concat([grown, extra], ignore_index=True), source="train", target="val", fraction=0.2, seed=1)
    merged = before.merge(after, on="path", suffixes=("_before", "_after"))
    assert len(merged) > 300
    moved = merged[merged["split_before"] != merged["split_after"]]
    assert moved.empty, moved.head()
    assert (after.loc[after["label"] == "c5", "split"] == "val").any(), "the new class got validation groups too"


def test_small_classes_keep_a_group_on_each_side():
    tiny = _frame(classes=8, groups=2, clips=(2, 3))
    for seed in range(10):
        df = carve(tiny, source="train", target="val", fraction=0.15, seed=seed)
        sides = df.groupby("label")["split"].agg(set)
        assert all(parts == {"train", "val"} for parts in sides), (seed, sides)


def test_carve_is_deterministic_and_skips_bad_rows():
    df = _frame()
    df.loc[:9, "error"] = "broken"
    a = carve(df, source="train", target="val", fraction=0.2, seed=3)
    b = carve(df, source="train", target="val", fraction=0.2, seed=3)
    assert a.equals(b)
    assert (a.loc[:9, "split"] == "train").all(), "rows with a probe error are never moved"


def test_random_strategy_warns_that_it_leaks():
    with pytest.warns(UserWarning, match="leak|optimistic"):
        df = carve(_frame(), source="train", target="val", fraction=0.2, strategy="random", seed=0)
    assert leaking_groups(df), "clip-level split puts groups on both sides"
