"""Before/after of harp's frame reader in one run: clips per CPU-second of ``FrameDecoder.read`` from
this checkout against the same class loaded from an earlier revision
(``git show REV:platform/harp/data/decode.py``), both interleaved one pass over the videos at a time
(a change in the machine's load hits both alike), on ``bench/data.py``'s UCF101-sized videos
(original long-GOP .avi and ``harp data prepare`` copies at 240 and 128 px), decoded at the training
size (short side 128) with one thread, for the papers' common samplers. Every clip the two return is
also compared: a reader change that alters pixels shows as a mismatch count.

    .venv/bin/python bench/decode_ab.py --before e617f59                   # PyAV, this checkout vs e617f59
    .venv/bin/python bench/decode_ab.py --before HEAD --backend decord     # decord, no change expected
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np

from data import make_videos
from encode_bench import DECODE_SHORT, SAMPLERS, read_sampled
from harp.data import decode as current
from harp.data.probe import probe_video
from loader_bench import interleaved

REPO = Path(__file__).resolve().parents[1]
MODULE = "platform/harp/data/decode.py"


def load_revision(rev: str, folder: Path) -> ModuleType:
    """``harp.data.decode`` as it was at ``rev``, imported under another name."""
    source = subprocess.run(["git", "show", f"{rev}:{MODULE}"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    path = folder / "decode_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("decode_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(paths: list[Path], probes: list[dict], method, params, before: ModuleType, backend: str, min_seconds: float) -> dict:
    """Both readers on one (source, sampler): clips per CPU-second, and how many clips differ."""
    readers = {"before": before.FrameDecoder(backend, timeout_s=0, fallback=False),
               "after": current.FrameDecoder(backend, timeout_s=0, fallback=False)}  # fmt: skip
    clips: dict[str, dict[tuple[int, int], np.ndarray]] = {"before": {}, "after": {}}

    def way(which: str, epoch: int, video: int) -> None:
        frames = read_sampled(readers[which], probes[video], paths[video], method, params, epoch, video)
        if epoch < 3:  # keep a few clips of each to compare
            clips[which][epoch, video] = frames

    speed = interleaved({w: functools.partial(way, w) for w in readers}, len(paths), min_seconds)
    shared = clips["before"].keys() & clips["after"].keys()
    differ = sum(not np.array_equal(clips["before"][k], clips["after"][k]) for k in shared)
    return {**speed, "compared": len(shared), "differ": differ}


def compare(sources: dict[str, list[Path]], before: ModuleType, backend: str, min_seconds: float) -> list[dict]:
    rows = []
    for source, paths in sources.items():
        probes = [probe_video(p) for p in paths]
        for name, (method, params) in SAMPLERS.items():
            cell = _cell(paths, probes, method, params, before, backend, min_seconds)
            rows.append({"source": source, "sampler": name, **cell})
            print(f"  {source:12s} {name:14s} before {cell['before']:6.1f}  after {cell['after']:6.1f}", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision whose decode.py is the 'before'")
    parser.add_argument("--backend", default="pyav", choices=tuple(current.READERS))
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=1.5, help="minimum CPU seconds per reader and cell")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="harp-bench-decode-ab-"))
    try:
        before = load_revision(args.before, root)
        sources = make_videos(root / "videos", args.videos)
        rows = compare(sources, before, args.backend, args.seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.backend} reader, clips per CPU-second at short side {DECODE_SHORT}: {args.before} (before) vs this checkout (after)")
    print()
    print("| source | sampler | before | after | after / before | clips compared | clips that differ |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['source']} | {r['sampler']} | {r['before']:.1f} | {r['after']:.1f} | {r['after'] / r['before']:.2f}x | {r['compared']} | {r['differ']} |")
    ratios = [r["after"] / r["before"] for r in rows]
    print(f"\nmedian after / before over {len(rows)} cells: {np.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
