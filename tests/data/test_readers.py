"""Each reader on small trees in the official formats, generated here; corrupt files; unsafe paths."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harp.config.schema import DataConfig
from harp.data.manifest import build_manifest, class_names, ensure_manifest, load_manifest, summarize
from harp.data.splits import leaking_groups
from harp.errors import HarpError


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory) -> bytes:
    from harp.data.synthetic import render_clip, write_mp4

    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    write_mp4(path, render_clip("grow", np.random.default_rng(0), 16, 6), 25)
    return path.read_bytes()


def _put(root: Path, rel: str, data: bytes) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)


def _cfg(root: Path, fmt: str, **kw) -> DataConfig:
    return DataConfig(format=fmt, root=str(root), probe_workers=1, **kw)


def _ucf_tree(root: Path, video: bytes, videos_under: str = "", test_videos: bool = True) -> None:
    """UCF101 as its archives unpack: ucfTrainTestlist/ under the root, the class folders under
    ``root/videos_under`` (``UCF-101`` for UCF101.rar unpacked next to the lists)."""
    classes = ["ApplyEyeMakeup", "Archery", "Basketball"]
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    train, test = [], []
    for i, c in enumerate(classes, 1):
        for g in range(1, 9):
            for clip in (1, 2):
                rel = f"{c}/v_{c}_g{g:02d}_c{clip:02d}.avi"
                if g > 2 or test_videos:
                    _put(root / videos_under if videos_under else root, rel, video)
                (test if g <= 2 else train).append((rel, i))
    (lists / "trainlist01.txt").write_text("".join(f"{r} {i}\n" for r, i in train))
    (lists / "testlist01.txt").write_text("".join(f"{r}\n" for r, _ in test))


def test_ucf101_reader_keeps_groups_out_of_val(tmp_path, tiny_video):
    _ucf_tree(tmp_path, tiny_video)
    df = load_manifest(build_manifest(_cfg(tmp_path, "ucf101", val_fraction=0.25), progress=False))
    assert class_names(df) == ["ApplyEyeMakeup", "Archery", "Basketball"]
    assert df.loc[df["label"] == "Archery", "label_index"].eq(1).all()
    counts = df["split"].value_counts()
    assert counts["test"] == 12 and counts["train"] + counts["val"] == 36 and counts["val"] >= 6
    assert not leaking_groups(df), "no UCF101 group in both train and val"
    assert set(df.loc[df["split"] == "test", "group"]) == {"g01", "g02"}
    # Stratified: every class has validation clips.
    assert df[df["split"] == "val"]["label"].nunique() == 3
    row = df.iloc[0]
    assert row["frames"] == 6 and row["fps"] == 25 and row["width"] == 16 and row["error"] == ""
    assert Path(tmp_path / "harp_manifest_split1.parquet").is_file()


def test_ucf101_rejects_paths_outside_the_root(tmp_path, tiny_video):
    _ucf_tree(tmp_path, tiny_video)
    lists = tmp_path / "ucfTrainTestlist"
    for bad in ("../outside/v_x_g01_c01.avi 1", "/etc/v_x_g01_c01.avi 1"):
        (lists / "trainlist01.txt").write_text(bad + "\n")
        with pytest.raises(HarpError, match="trainlist01.txt:1.*(leaves the data root|absolute)"):
            build_manifest(_cfg(tmp_path, "ucf101"), progress=False)


def test_hmdb51_reader_uses_1_train_2_test_0_unused(tmp_path, tiny_video):
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for c in ("brush_hair", "cartwheel"):
        lines = []
        for src in range(4):
            for k in range(2):
                name = f"{c}_video{src}_u_nm_np1_fr_goo_{k}.avi"
                _put(tmp_path, f"{c}/{name}", tiny_video)
                lines.append(f"{name} {[1, 1, 2, 0][src]}")
        (splits / f"{c}_test_split1.txt").write_text("\n".join(lines) + "\n")
    df = load_manifest(build_manifest(_cfg(tmp_path, "hmdb51", val_fraction=0.3), progress=False))
    assert class_names(df) == ["brush_hair", "cartwheel"]
    assert len(df) == 12, "split value 0 (unused) is left out"
    assert (df["split"] == "test").sum() == 4
    assert set(df["group"]) == {f"{c}_video{src}" for c in ("brush_hair", "cartwheel") for src in range(3)}, "the source video groups its clips"
    assert not leaking_groups(df)


def test_kinetics_csv_nested_and_flat(tmp_path, tiny_video):
    rows = []
    for split in ("train", "val"):
        for label in ("abseiling", "air drumming"):
            for k in range(3):
                yid = f"{label[:3]}{split}{k}xxxxx"
                name = f"{yid}_{k * 10:06d}_{k * 10 + 10:06d}.mp4"
                rel = f"{split}/{label}/{name}" if label == "abseiling" else name
                _put(tmp_path, rel, tiny_video)
                rows.append(f"{label},{yid},{k * 10},{k * 10 + 10},{split}")
    (tmp_path / "annotations.csv").write_text("label,youtube_id,time_start,time_end,split\n" + "\n".join(rows) + "\n")
    df = load_manifest(build_manifest(_cfg(tmp_path, "kinetics"), progress=False))
    assert (df["error"] == "").all(), df[df["error"] != ""]
    assert df["split"].value_counts().to_dict() == {"train": 6, "val": 6}
    assert class_names(df) == ["abseiling", "air drumming"]


def test_folder_reader_carves_test_and_val_by_group(tmp_path, tiny_video):
    for c in ("a", "b"):
        for g in range(1, 11):
            for clip in (1, 2):
                _put(tmp_path, f"{c}/{c}_g{g:02d}_c{clip:02d}.mp4", tiny_video)
    df = load_manifest(build_manifest(_cfg(tmp_path, "folder", val_fraction=0.2, test_fraction=0.2), progress=False))
    counts = df["split"].value_counts()
    assert counts.sum() == 40 and counts["test"] >= 4 and counts["val"] >= 4 and counts["train"] >= 16
    assert all(df.groupby("label")["split"].agg(set) == {"train", "val", "test"}), "every class on every side"
    assert not leaking_groups(df, "train", "test") and not leaking_groups(df, "train", "val")


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_generic_manifest(tmp_path, tiny_video, kind):
    import pandas as pd

    rows = []
    for c in ("x", "y"):
        for k in range(4):
            _put(tmp_path, f"vids/{c}{k}.mp4", tiny_video)
            rows.append({"path": f"vids/{c}{k}.mp4", "label": c, "split": "test" if k == 0 else "train"})
    table = pd.DataFrame(rows)
    if kind == "csv":
        table.to_csv(tmp_path / "manifest.csv", index=False)
    else:
        table.to_parquet(tmp_path / "manifest.parquet")
    df = load_manifest(build_manifest(_cfg(tmp_path, "manifest", val_fraction=0.3), progress=False))
    assert df["split"].value_counts().to_dict() == {"train": 4, "test": 2, "val": 2}


def test_corrupt_and_missing_videos_are_listed_not_fatal(tmp_path, tiny_video):
    for c in ("a", "b"):
        for k in range(4):
            _put(tmp_path, f"{c}/{c}_{k}.mp4", tiny_video)
    (tmp_path / "a" / "a_0.mp4").write_bytes(b"not a video" * 50)
    (tmp_path / "b" / "b_0.mp4").write_bytes(tiny_video[: len(tiny_video) // 3])  # truncated
    (tmp_path / "b" / "b_1.mp4").write_bytes(b"")
    df = load_manifest(build_manifest(_cfg(tmp_path, "folder"), progress=False))
    bad = df[df["error"] != ""]
    assert set(bad["path"]) == {"a/a_0.mp4", "b/b_0.mp4", "b/b_1.mp4"}
    assert (bad["split"] == "excluded").all()
    line = summarize(df)
    assert "3 unreadable" in line and "a/a_0.mp4" in line


def test_ensure_manifest_reuses_and_recarves(tmp_path, tiny_video):
    for c in ("a", "b"):
        for k in range(6):
            _put(tmp_path, f"{c}/{c}_g{k:02d}_c01.mp4", tiny_video)
    cfg = _cfg(tmp_path, "folder", val_fraction=0.2)
    path = ensure_manifest(cfg, progress=False)
    stamp = path.stat().st_mtime_ns
    assert ensure_manifest(cfg, progress=False) == path and path.stat().st_mtime_ns == stamp
    cfg.val_fraction = 0.4
    ensure_manifest(cfg, progress=False)
    assert path.stat().st_mtime_ns != stamp, "other split settings -> re-carved"
    assert load_manifest(path).attrs["val_fraction"] == 0.4


def test_ensure_manifest_synthesises_when_empty(tmp_path):
    from harp.config.schema import SynthConfig

    synth = SynthConfig(num_classes=2, clips_per_class=3, min_size=32, max_size=32, min_frames=8, max_frames=10)
    cfg = DataConfig(root=str(tmp_path / "demo"), probe_workers=1, synth=synth)
    df = load_manifest(ensure_manifest(cfg, progress=False))
    assert class_names(df) == ["move_left", "move_right"] and len(df) == 6
    assert len(list((tmp_path / "demo").glob("*/*.mp4"))) == 6


def test_reindexing_after_removing_and_adding_videos_moves_no_other_video(tmp_path, tiny_video):
    """harp-made splits are a function of each video's group: a grown or pruned data set keeps the
    split of every video that stayed (the test set above all)."""
    for c in ("a", "b", "c"):
        for g in range(12):
            for clip in (1, 2):
                _put(tmp_path, f"{c}/{c}_g{g:02d}_c{clip:02d}.mp4", tiny_video)
    cfg = _cfg(tmp_path, "folder", val_fraction=0.2, test_fraction=0.2)
    before = load_manifest(build_manifest(cfg, progress=False)).set_index("path")["split"]
    for rel in ("a/a_g00_c01.mp4", "a/a_g00_c02.mp4", "b/b_g05_c02.mp4"):
        (tmp_path / rel).unlink()
    for g in range(12, 16):
        _put(tmp_path, f"c/c_g{g:02d}_c01.mp4", tiny_video)
        _put(tmp_path, f"d/d_g{g:02d}_c01.mp4", tiny_video)
    after = load_manifest(build_manifest(cfg, progress=False)).set_index("path")["split"]
    kept = before.index.intersection(after.index)
    assert len(kept) == len(before) - 3
    changed = (before[kept] != after[kept])
    assert not changed.any(), before[kept][changed].to_dict()


def test_official_splits_stay_official_when_videos_come_and_go(tmp_path, tiny_video):
    _ucf_tree(tmp_path, tiny_video)
    cfg = _cfg(tmp_path, "ucf101")
    before = load_manifest(build_manifest(cfg, progress=False)).set_index("path")
    gone = "Archery/v_Archery_g05_c01.avi"  # a train video removed from the list and the disk
    trainlist = tmp_path / "ucfTrainTestlist" / "trainlist01.txt"
    trainlist.write_text("".join(line + "\n" for line in trainlist.read_text().splitlines() if not line.startswith(gone)))
    (tmp_path / gone).unlink()
    after = load_manifest(build_manifest(cfg, progress=False)).set_index("path")
    kept = before.index.drop(gone)
    assert gone not in after.index and len(after) == len(before) - 1
    assert (before.loc[kept, "official_split"] == after.loc[kept, "official_split"]).all()
    assert (before.loc[kept, "split"] == after.loc[kept, "split"]).all()
    test_rows = after[after["official_split"] == "test"]
    assert (test_rows["split"] == "test").all(), "the official test list is the test split, untouched by carving"


def test_the_probe_cache_notices_a_file_rewritten_in_place(tmp_path, tiny_video):
    import os

    for c in ("a", "b"):
        for k in range(3):
            _put(tmp_path, f"{c}/{c}_{k}.mp4", tiny_video)
    cfg = _cfg(tmp_path, "folder")
    assert (load_manifest(build_manifest(cfg, progress=False))["error"] == "").all()
    victim = tmp_path / "a" / "a_1.mp4"
    stat = victim.stat()
    victim.write_bytes(np.random.default_rng(0).integers(0, 256, stat.st_size, dtype=np.uint8).tobytes())
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime: only the bytes differ
    df = load_manifest(build_manifest(cfg, progress=False)).set_index("path")
    assert df.loc["a/a_1.mp4", "error"] != "" and df.loc["a/a_1.mp4", "split"] == "excluded"
    assert (df.drop(index="a/a_1.mp4")["error"] == "").all()


# ----------------------------------------------------------------------------- data sets as their archives unpack

def test_ucf101_root_holding_ucf101_and_the_lists_side_by_side(tmp_path, tiny_video):
    """UCF101.rar -> UCF-101/<Class>/*.avi and the split zip -> ucfTrainTestlist/, both under data.root."""
    _ucf_tree(tmp_path, tiny_video, videos_under="UCF-101")
    df = load_manifest(build_manifest(_cfg(tmp_path, "ucf101", val_fraction=0.25), progress=False))
    assert (df["error"] == "").all(), df.loc[df["error"] != "", ["path", "error"]].head()
    assert df["path"].str.startswith("UCF-101/").all()
    assert df["split"].value_counts()["test"] == 12 and not leaking_groups(df)


def test_ucf101_root_inside_ucf101_with_the_lists_next_to_it_still_works(tmp_path, tiny_video):
    _ucf_tree(tmp_path, tiny_video, videos_under="UCF-101")
    df = load_manifest(build_manifest(_cfg(tmp_path / "UCF-101", "ucf101"), progress=False))
    assert (df["error"] == "").all() and df["path"].str.startswith("ApplyEyeMakeup/").any()


def _hmdb_tree(root: Path, video: bytes, videos_under: str) -> None:
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for c in ("brush_hair", "cartwheel"):
        lines = []
        for src in range(4):
            for k in range(2):
                name = f"Source{src}_{c}_u_nm_np1_fr_goo_{k}.avi"
                _put(root / videos_under if videos_under else root, f"{c}/{name}", video)
                lines.append(f"{name} {[1, 1, 2, 0][src]}")
        (splits / f"{c}_test_split1.txt").write_text("\n".join(lines) + "\n")


def test_hmdb51_root_holding_hmdb51_org_and_the_splits(tmp_path, tiny_video):
    """hmdb51_org.rar -> hmdb51_org/<class>/*.avi (after unpacking its per-class archives) next to testTrainMulti_7030_splits/."""
    _hmdb_tree(tmp_path, tiny_video, "hmdb51_org")
    df = load_manifest(build_manifest(_cfg(tmp_path, "hmdb51", val_fraction=0.3), progress=False))
    assert (df["error"] == "").all() and len(df) == 12
    assert df["path"].str.startswith("hmdb51_org/brush_hair/").sum() == 6
    assert (df["split"] == "test").sum() == 4


def test_a_root_with_no_readable_video_fails_in_one_line_saying_where_it_looked(tmp_path, tiny_video, capsys):
    from harp.cli import main as harp

    _ucf_tree(tmp_path, tiny_video, videos_under="videos")  # the class folders where no reader looks
    with pytest.raises(HarpError) as info:
        build_manifest(_cfg(tmp_path, "ucf101"), progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"found 0 readable videos under {tmp_path}")
    assert "UCF-101/<Class>/*.avi" in message and "trainlist01.txt" in message
    assert "set data.root to the folder that holds UCF-101/ and ucfTrainTestlist/" in message
    assert harp(["data", "index", "--quiet", "data=ucf101", f"data.root={tmp_path}", "data.probe_workers=1"]) != 0
    err = capsys.readouterr().err.strip()
    assert "found 0 readable videos" in err and len(err.splitlines()) == 1


def test_an_index_whose_test_split_is_empty_fails(tmp_path, tiny_video):
    _ucf_tree(tmp_path, tiny_video, test_videos=False)  # the test-list videos are missing
    with pytest.raises(HarpError, match=r"ucf101 index under .* has an empty test split .*all 12 videos the annotations list for test are unreadable"):
        build_manifest(_cfg(tmp_path, "ucf101"), progress=False)


# ----------------------------------------------------------------------------- HMDB51's group: the source video

HMDB_NAMES = {  # real HMDB51 names: one source's clips may differ in their tags (viewpoint, camera motion)
    "April_09_brush_hair_u_nm_np1_ba_goo_0.avi": "April_09",
    "April_09_brush_hair_u_nm_np1_ba_goo_1.avi": "April_09",
    "April_09_brush_hair_u_nm_np1_fr_goo_2.avi": "April_09",
    "Brushing_Hair_Again_brush_hair_h_cm_np2_le_goo_0.avi": "Brushing_Hair_Again",
    "Brushing_Hair_Again_brush_hair_h_nm_np2_le_goo_1.avi": "Brushing_Hair_Again",
    "Aussie_Brunette_Brushing_Hair_II_brush_hair_u_nm_np1_ri_med_3.avi": "Aussie_Brunette_Brushing_Hair_II",
}


def test_hmdb51_group_is_the_source_video(tmp_path, tiny_video):
    from harp.data.readers import READERS

    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for c, names in (("brush_hair", HMDB_NAMES), ("cartwheel", {"(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi": "(Rad)Schlag_die_Bank!"})):
        (splits / f"{c}_test_split1.txt").write_text("".join(f"{n} 1\n" for n in names))
    rows, _ = READERS["hmdb51"](tmp_path, "", 1)
    expected = {**HMDB_NAMES, "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi": "(Rad)Schlag_die_Bank!"}
    assert {r["path"].split("/")[-1]: r["group"] for r in rows} == expected


def test_manifest_without_a_group_column_groups_hmdb_names_by_source(tmp_path, tiny_video):
    import pandas as pd

    rows = [{"path": f"clips/{name}", "label": "brush_hair"} for name in HMDB_NAMES]
    rows += [{"path": f"clips/v{k}_g{k:02d}_c01.avi", "label": "other"} for k in range(1, 5)]
    for row in rows:
        _put(tmp_path, row["path"], tiny_video)
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    df = load_manifest(build_manifest(_cfg(tmp_path, "manifest", val_fraction=0.4, test_fraction=0.3), progress=False))
    groups = dict(zip(df["path"].str.split("/").str[-1], df["group"]))
    assert {n: groups[n] for n in HMDB_NAMES} == HMDB_NAMES
    assert df.groupby("group")["split"].nunique().max() == 1, "one source video, one split"
