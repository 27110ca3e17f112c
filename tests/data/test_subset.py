"""Class subsets with exact per-class counts (``data.classes``, ``data.per_class``): Kaur's HMDB_simp,
25 HMDB51 classes x 50 videos split 900 / 225 / 125, rebuilt from the official data set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harp.config.schema import DataConfig
from harp.data.manifest import class_names, ensure_manifest, load_manifest, manifest_path, read_metadata
from harp.data.splits import exact_counts, leaking_groups, select_exact
from harp.errors import HarpError


def _frame(classes: int = 3, groups: int = 12, size: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(classes):
        for g in range(groups):
            for k in range(size if size else int(rng.integers(1, 6))):
                rows.append({"path": f"c{c}/g{g}_{k}.avi", "label": f"c{c}", "group": f"g{g:02d}", "split": "train", "error": ""})
    return pd.DataFrame(rows)


def test_exact_counts_are_kauras_900_225_125():
    counts = exact_counts(50, test_fraction=0.1, val_fraction=0.2)
    assert counts == {"train": 36, "val": 9, "test": 5}
    assert {k: 25 * v for k, v in counts.items()} == {"train": 900, "val": 225, "test": 125}
    assert exact_counts(10, 0.25, 0.5) == {"train": 3, "val": 4, "test": 3}  # halves round up: 2.5 -> 3, 3.5 -> 4
    with pytest.raises(HarpError, match="no training video"):
        exact_counts(2, 0.5, 0.5)


def test_select_exact_gives_every_class_its_exact_counts_and_keeps_whole_groups_when_they_fit():
    df = _frame(classes=3, groups=12, size=3)
    out = select_exact(df, per_class=9, counts={"train": 3, "val": 3, "test": 3}, seed=0)
    table = out.groupby(["label", "split"]).size().unstack()
    assert (table == 3).all().all() and list(table.columns) == ["test", "train", "val"]
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not leaking_groups(out, a, b), "groups of 3 fit splits of 3: none is cut"
    assert len(out) == 27 and out.index.is_monotonic_increasing


def test_select_exact_cuts_a_group_only_when_no_split_can_take_it_whole():
    df = _frame(classes=2, groups=6, size=4)
    out = select_exact(df, per_class=10, counts={"train": 6, "val": 3, "test": 1}, seed=3)
    assert out.groupby("label")["split"].value_counts().unstack().loc[:, ["train", "val", "test"]].values.tolist() == [[6, 3, 1]] * 2
    # groups of 4 never fit 1 test or 3 val slots: the counts hold, and the cut groups are few
    cut = {g for g, parts in out.groupby(["label", "group"])["split"].nunique().items() if parts > 1}
    assert 0 < len(cut) <= 2 * 2


def test_select_exact_is_a_stable_function_of_each_class():
    df = _frame(classes=3, groups=10, size=0, seed=1)
    a = select_exact(df, per_class=8, counts={"train": 5, "val": 2, "test": 1}, seed=7)
    again = select_exact(df.sample(frac=1.0, random_state=0), per_class=8, counts={"train": 5, "val": 2, "test": 1}, seed=7)
    assert a.set_index("path")["split"].to_dict() == again.set_index("path")["split"].to_dict()
    fewer = select_exact(df[df["label"] != "c2"], per_class=8, counts={"train": 5, "val": 2, "test": 1}, seed=7)
    assert fewer.set_index("path")["split"].to_dict() == a[a["label"] != "c2"].set_index("path")["split"].to_dict()
    other = select_exact(df, per_class=8, counts={"train": 5, "val": 2, "test": 1}, seed=8)
    assert set(other["path"]) != set(a["path"]) or not other["split"].equals(a["split"])


def test_select_exact_refuses_a_class_with_too_few_readable_videos():
    df = _frame(classes=2, groups=3, size=3)
    df.loc[df.index[:2], "error"] = "cannot decode"
    with pytest.raises(HarpError, match=r"class 'c0' has 7 readable videos; data.per_class=9 needs 9"):
        select_exact(df, per_class=9, counts={"train": 5, "val": 2, "test": 2})


# ------------------------------------------------------------------------------- on an HMDB51 tree

HMDB_CLASSES = ("brush_hair", "cartwheel", "catch", "chew")


@pytest.fixture(scope="module")
def hmdb_root(tmp_path_factory) -> Path:
    """HMDB51 as it unpacks (hmdb51_org/<class>/*.avi + testTrainMulti_7030_splits/), 4 classes of 6
    source videos x 2 clips; split 1 marks 1 train / 2 test / 0 unused as the official files do."""
    from harp.data.synthetic import render_clip, write_mp4

    root = tmp_path_factory.mktemp("hmdb")
    clip = root / "clip.mp4"
    write_mp4(clip, render_clip("grow", np.random.default_rng(0), 16, 6), 25)
    video = clip.read_bytes()
    clip.unlink()
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir()
    for c in HMDB_CLASSES:
        lines = []
        for src in range(6):
            for k in range(2):
                name = f"Source{src}_{c}_u_nm_np1_fr_goo_{k}.avi"
                path = root / "hmdb51_org" / c / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(video)
                lines.append(f"{name} {[1, 1, 1, 2, 2, 0][src]}")
        (splits / f"{c}_test_split1.txt").write_text("\n".join(lines) + "\n")
    return root


def _cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(format="hmdb51", root=str(root), probe_workers=1, **kw)


def test_a_class_subset_of_hmdb51_with_exact_counts(hmdb_root):
    """3 of the 4 classes, 10 videos each (of the 10 the official split lists), 2 test / 2 val / 6 train
    per class, whole source videos (2 clips each) on one side."""
    cfg = _cfg(hmdb_root, classes=["chew", "brush_hair", "catch"], per_class=10, test_fraction=0.2, val_fraction=0.25)
    path = ensure_manifest(cfg, progress=False)
    assert path.name.startswith("harp_manifest_split1_sub") and path == manifest_path(cfg)
    df = load_manifest(path)
    assert class_names(df) == ["brush_hair", "catch", "chew"], "label order is the data set's, not the listing's"
    assert df.groupby("label")["label_index"].first().to_dict() == {"brush_hair": 0, "catch": 1, "chew": 2}
    counts = df.groupby(["label", "split"]).size().unstack()
    assert counts[["train", "val", "test"]].values.tolist() == [[6, 2, 2]] * 3
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not leaking_groups(df, a, b)
    assert read_metadata(path)["per_class"] == 10
    # the whole data set's manifest is another file, untouched by the subset
    full = ensure_manifest(_cfg(hmdb_root), progress=False)
    assert full != path and set(load_manifest(full)["label"]) == set(HMDB_CLASSES)
    assert ensure_manifest(cfg, progress=False) == path and load_manifest(path)["split"].equals(df["split"])


def test_classes_file_and_one_line_errors(hmdb_root, tmp_path):
    listing = tmp_path / "classes.txt"
    listing.write_text("# two of them\ncartwheel\ncatch  # the second\n")
    df = load_manifest(ensure_manifest(_cfg(hmdb_root, classes_file=str(listing)), progress=False))
    assert class_names(df) == ["cartwheel", "catch"] and (df.loc[df["error"] == "", "split"] != "excluded").all()
    with pytest.raises(HarpError, match=r"^data.classes names 1 class\(es\) hmdb51 does not have under .*\['kiss'\]; classes are: brush_hair"):
        ensure_manifest(_cfg(hmdb_root, classes=["kiss", "catch"]), progress=False)
    with pytest.raises(HarpError, match=r"class 'brush_hair' has 10 readable videos; data.per_class=11 needs 11"):
        ensure_manifest(_cfg(hmdb_root, classes=["brush_hair", "catch"], per_class=11), progress=False)
    with pytest.raises(HarpError, match="both set"):
        ensure_manifest(_cfg(hmdb_root, classes=["catch"], classes_file=str(listing)), progress=False)
