"""`harp data ...` commands, and the resumable prepare step."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harp.cli import main as harp
from harp.data.manifest import load_manifest


def test_help_lists_actions(capsys):
    with pytest.raises(SystemExit) as exit_:
        harp(["data", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for action in ("synth", "index", "prepare", "inspect", "demo"):
        assert action in out
    with pytest.raises(SystemExit):
        harp(["data", "prepare", "--help"])
    assert "--short-side" in capsys.readouterr().out


def test_index_and_inspect(synthetic_root, tmp_path, capsys):
    root = tmp_path / "d"
    shutil.copytree(synthetic_root, root, ignore=shutil.ignore_patterns("harp_manifest*"))
    assert harp(["data", "index", "--quiet", f"data.root={root}", "data.probe_workers=1"]) == 0
    assert "24 videos, 4 classes" in capsys.readouterr().out
    assert harp(["data", "inspect", "--quiet", f"data.root={root}"]) == 0
    out = capsys.readouterr().out
    assert "move_left" in out and "frames: min" in out


def test_bad_override_is_one_line_error(capsys):
    assert harp(["data", "index", "data.format=nope"]) == 2
    assert "data.format" in capsys.readouterr().err


def test_prepare_transcodes_resumably(synthetic_root, tmp_path, capsys):
    root = tmp_path / "src"
    shutil.copytree(synthetic_root, root, ignore=shutil.ignore_patterns("harp_manifest*", "move_up", "move_down"))
    for split in ("train", "test"):
        listed = (root / "splits" / f"{split}.txt").read_text().split()
        (root / "splits" / f"{split}.txt").write_text("\n".join(p for p in listed if p.startswith(("move_left", "move_right"))))
    (root / "classes.txt").write_text("move_left\nmove_right\n")
    out = tmp_path / "prepared"
    args = ["data", "prepare", "--quiet", "--output", str(out), "--short-side", "32", "--gop", "4", "--workers", "2", f"data.root={root}"]
    assert harp(args) == 0
    src = load_manifest(root / "harp_manifest.parquet")
    prepared = load_manifest(out / "harp_manifest.parquet")
    assert len(prepared) == len(src) == 12
    assert (prepared["error"] == "").all() and (prepared["height"] == 32).all()
    assert prepared["frames"].tolist() == src["frames"].tolist() and prepared["split"].tolist() == src["split"].tolist()
    assert prepared.attrs["prepared_from"] == str(root.resolve())
    assert prepared.attrs["prepared"]["tune"] == "fastdecode"
    assert {x264_settings(p)["cabac"] for p in out.glob("*/*.mp4")} == {"0"}  # fastdecode by default
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*.mp4")}
    assert harp(args) == 0  # resumable: nothing is transcoded again
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*/*.mp4")}


def x264_settings(path: Path) -> dict[str, str]:
    """The encoder settings x264 writes into its stream (an SEI message: "cabac=0 ref=1 deblock=0:0:0 ...")."""
    found = re.search(rb"x264 - core .*? options: ([^\x00]+)", path.read_bytes())
    assert found, f"no x264 settings in {path}"
    return dict(item.split("=", 1) for item in found.group(1).decode().split() if "=" in item)


@pytest.mark.parametrize(("tune", "cabac", "deblock"), [("fastdecode", "0", "0"), ("none", "1", "1")])
def test_prepare_tune_reaches_the_encoder(synthetic_root, tmp_path, tune, cabac, deblock):
    from harp.data.prepare import transcode

    src = next(synthetic_root.glob("move_left/*.mp4"))
    probe = transcode(str(src), str(tmp_path / "out.mp4"), 32, None, 8, 23, tune)
    assert probe["error"] == ""
    settings = x264_settings(tmp_path / "out.mp4")
    assert settings["cabac"] == cabac and settings["deblock"].startswith(deblock) and settings["keyint"] == "8"


def test_prepare_refuses_an_unknown_tune(synthetic_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        harp(["data", "prepare", "--quiet", "--output", str(tmp_path / "p"), "--tune", "film", f"data.root={synthetic_root}"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # argparse: usage, then the one error line
    assert "--tune" in last and "'film'" in last and "fastdecode" in last
