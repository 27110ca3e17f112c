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
def test_group_carve_keeps_groups_and_stratifies(seed):
    df = carve(_frame(seed=seed), source="train", target="val", fraction=0.2, seed=seed)
    assert not leaking_groups(df)
    share = df.groupby("label")["split"].apply(lambda s: (s == "val").mean())
    assert share.between(0.12, 0.28).all(), share


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
