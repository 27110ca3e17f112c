"""Data pipeline benchmark: clips/s per CPU core for each sampler, decord vs PyAV, original vs
prepared videos, against the naive way (decode the whole video, then pick frames); the loader's
resident memory over several epochs (it must stay flat); and harp's dataset item against the raw
decord read (its ceiling), a DataLoader with workers and the decode-everything way, for the same
videos and frames (``bench/loader_bench.py``, issue 12's goals: item >= 0.8x raw, >= 5x naive).

Videos are synthetic but UCF101-sized: 320x240, 25 fps, 7 s (175 frames). "original" mimics the
official UCF101 files: MPEG-4 part 2 (XviD-like) in .avi with a long keyframe interval (250);
"prepared" is the output of ``harp data prepare`` with its defaults (CFR H.264 .mp4, keyframe every
8 frames, x264's fastdecode tune) at the original 240 px short side, and at 128 px; the encode
section compares those defaults with other keyframe intervals and tunes (``bench/encode_bench.py``).
Every measurement runs in this one process with one decode thread and counts CPU time
(``time.process_time``), so clips/s is per CPU core even on a busy machine. The memory run and the loader table's DataLoader column use wall-clock time.

    .venv/bin/python bench/data.py                  # all tables (~4-5 minutes on 2 cores)
    .venv/bin/python bench/data.py --quick          # fewer videos and shorter timings
    .venv/bin/python bench/data.py --only loader    # one section (decode, memory, loader, encode)
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import encode_bench
import loader_bench
from harp.config.schema import SamplingMethod
from harp.data.decode import FrameDecoder, decode_all
from harp.data.prepare import transcode
from harp.data.probe import probe_video
from harp.data.sampling import SamplingParams, sample
from harp.data.synthetic import render_clip

SECTIONS = ("decode", "memory", "loader", "encode")
WIDTH, HEIGHT, FPS, FRAMES = 320, 240, 25, 175
# Sampler settings of the papers: 8 frames (1/8 stride for uniform, every 3rd for 000's
# segment_stride), multi_clip = 003's 5 clips (here of 8 frames: 40 frames per sample),
# segment_frames = MDT-Net's 5 adjacent frames per segment (here 2 segments: 10 frames).
PARAMS = {
    "uniform": SamplingParams(num_frames=8, interval=8),
    "equidistant": SamplingParams(num_frames=8),
    "random": SamplingParams(num_frames=8),
    "dense": SamplingParams(num_frames=8),
    "multi_clip": SamplingParams(num_frames=8, num_clips=5),
    "segment_stride": SamplingParams(num_frames=8, interval=3),
    "segment_frames": SamplingParams(num_frames=10, segment_frames=5),
}


def write_original(path: Path, frames: np.ndarray) -> None:
    """MPEG-4 part 2 in AVI, long GOP: like the official UCF101/HMDB51 files."""
    import av

    with av.open(str(path), mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = 600_000
        stream.options = {"g": "250", "threads": "1"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_videos(root: Path, count: int) -> dict[str, list[Path]]:
    """``count`` originals (two classes) and their prepared copies at 240 and 128 px."""
    sources: dict[str, list[Path]] = {"original": [], "prepared240": [], "prepared128": []}
    for i in range(count):
        name = ("move_left", "move_right")[i % 2]
        small = render_clip(name, np.random.default_rng([42, i]), 120, FRAMES)
        big = small.repeat(2, axis=1).repeat(2, axis=2)  # 240 x 240
        frames = np.ascontiguousarray(np.concatenate([big, big[:, :, : WIDTH - HEIGHT]], axis=2))  # 240 x 320
        orig = root / "original" / name / f"v_{name}_g{i:02d}_c01.avi"
        orig.parent.mkdir(parents=True, exist_ok=True)
        write_original(orig, frames)
        sources["original"].append(orig)
        for short in (240, 128):
            dst = root / f"prepared{short}" / name / f"v_{name}_g{i:02d}_c01.mp4"
            result = transcode(str(orig), str(dst), short)  # `harp data prepare`'s defaults
            assert not result["error"], result["error"]
            sources[f"prepared{short}"].append(dst)
    return sources


def rate(fn, videos: list[Path], min_seconds: float) -> float:
    """Clips per CPU-second of ``fn(path, k)``, cycling over the videos for at least min_seconds of
    this process's CPU time (all its threads): per-core throughput that other load on the machine
    does not distort the way wall-clock time would."""
    fn(videos[0], 0)  # warm-up (imports, first open)
    done, start, k = 0, time.process_time(), 0
    while True:
        fn(videos[k % len(videos)], k)
        done, k = done + 1, k + 1
        elapsed = time.process_time() - start
        if elapsed >= min_seconds and done >= len(videos):
            return done / elapsed


def _sparse_read(probes: dict, decoder: FrameDecoder, method: SamplingMethod, params: Any, path: Path, k: int) -> None:
    """One clip of ``method`` from ``path``: sample indices from the probe's frame count, decode them."""
    probe = probes[str(path)]
    n = probe["frames"]
    idx = sample(method, n, np.random.default_rng(k), params)
    decoder.read(path, idx.reshape(-1), expected_frames=n, keyframe_interval=probe["keyframe_interval"])


def bench_decode(sources: dict[str, list[Path]], min_seconds: float) -> list[dict]:
    rows = []
    probes = {str(p): probe_video(p) for paths in sources.values() for p in paths}
    for source, videos in sources.items():
        for backend in ("decord", "pyav"):
            decoder = FrameDecoder(backend, timeout_s=30, fallback=False)
            naive = rate(lambda p, k, backend=backend: decode_all(p, backend)[:8], videos, min_seconds)
            for method in SamplingMethod:
                clips = rate(functools.partial(_sparse_read, probes, decoder, method, PARAMS[method]), videos, min_seconds)
                rows.append({"sampler": method, "source": source, "backend": backend, "clips_s": clips, "naive_s": naive, "fallbacks": decoder.fallbacks})
                print(f"  {source:12s} {backend:6s} {method:15s} {clips:7.1f} clips/s (naive {naive:5.1f})", file=sys.stderr, flush=True)
    return rows


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def bench_memory(root: Path, epochs: int, workers: int) -> list[tuple[int, float, float, float]]:
    """(epoch, main RSS MB, workers' RSS MB, clips/s) over several epochs of the real loader."""
    import torch

    from harp.data.loader import build_loader

    dataset = loader_bench.train_dataset(root / "prepared240")
    # Many passes over the few videos per "epoch", so each epoch decodes a few hundred clips.
    repeat = max(1, 240 // len(dataset))
    indices = list(range(len(dataset))) * repeat
    subset = torch.utils.data.Subset(dataset, indices)
    loader = build_loader(subset, 8, shuffle=True, num_workers=workers)
    rows = []
    for epoch in range(1, epochs + 1):
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["label"])
        dt = time.perf_counter() - start
        kids = loader_bench.children(os.getpid())
        rows.append((epoch, _rss_mb(os.getpid()), sum(_rss_mb(k) for k in kids), n / dt))
        print(f"  epoch {epoch}: main {rows[-1][1]:.0f} MB, workers {rows[-1][2]:.0f} MB, {rows[-1][3]:.0f} clips/s", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 videos, 0.4 s per cell, 3 epochs")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per measurement")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="loader workers for the memory run and the loader table")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run (default: all)")
    parser.add_argument("--keep", help="keep the generated videos in this folder")
    args = parser.parse_args()
    if args.quick:
        args.videos, args.seconds, args.epochs = 4, 0.4, 3
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="harp-bench-data-"))
    try:
        t0 = time.perf_counter()
        sources = make_videos(root, args.videos)
        sizes = {k: np.mean([p.stat().st_size for p in v]) / 1e3 for k, v in sources.items()}
        print(f"made {args.videos} videos of {WIDTH}x{HEIGHT}, {FPS} fps, {FRAMES} frames in {time.perf_counter() - t0:.0f} s "
              f"(mean size: " + ", ".join(f"{k} {v:.0f} KB" for k, v in sizes.items()) + ")")  # fmt: skip
        if "decode" in args.only:
            rows = bench_decode(sources, args.seconds)
            print()
            print("clips per CPU-second (one process, one decode thread); naive = decode the whole video, then pick 8 frames")
            print()
            header = "| sampler | source | decord | PyAV | decord naive | PyAV naive | decord / naive | PyAV / naive |"
            print(header)
            print("|---|---|---:|---:|---:|---:|---:|---:|")
            for source in sources:
                for method in SamplingMethod:
                    d = next(r for r in rows if r["source"] == source and r["backend"] == "decord" and r["sampler"] == method)
                    p = next(r for r in rows if r["source"] == source and r["backend"] == "pyav" and r["sampler"] == method)
                    print(f"| {method} | {source} | {d['clips_s']:.1f} | {p['clips_s']:.1f} | {d['naive_s']:.1f} | {p['naive_s']:.1f} "
                          f"| {d['clips_s'] / d['naive_s']:.1f}x | {p['clips_s'] / p['naive_s']:.1f}x |")  # fmt: skip
            print()
        if "memory" in args.only:
            mem = bench_memory(root, args.epochs, args.workers)
            print(f"loader resident memory over {args.epochs} epochs ({args.workers} workers, uniform 8x4, 112 px, prepared240):")
            print()
            print("| epoch | main RSS MB | workers RSS MB | clips/s |")
            print("|---:|---:|---:|---:|")
            for epoch, main_mb, workers_mb, speed in mem:
                print(f"| {epoch} | {main_mb:.0f} | {workers_mb:.0f} | {speed:.0f} |")
            warm = min(2, len(mem) - 1)  # allocators and caches fill during the first epochs
            growth = (mem[-1][1] + mem[-1][2]) - (mem[warm][1] + mem[warm][2])
            print(f"\ntotal RSS change from epoch {warm + 1} to epoch {len(mem)}: {growth:+.0f} MB")
        if "loader" in args.only:
            folders = {name: root / name for name in sources}
            loader_bench.print_table(loader_bench.run(folders, args.workers, args.seconds), args.workers)
            print()
        if "encode" in args.only:
            encode_bench.print_table(encode_bench.run(sources["original"], root / "encodings", args.seconds))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
