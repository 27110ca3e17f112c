"""The loader section of ``bench/data.py``: how close harp's dataset item comes to the raw decord
read it is built on, and how far above the decode-everything way it stays, for the same videos,
the same sampled frames (the item's own keyed Generator draws them) and the same decode size.

Four ways to get a training clip, side by side:

- raw: ``decord.VideoReader`` (one thread, at the item's decode size) + ``get_batch`` of the
  sampled indices, nothing else: the ceiling harp's item can at best reach;
- item: ``VideoClipDataset.__getitem__`` (decode with its guards, then the training transform),
  built by ``harp.data.loader.build_dataset`` as training builds it;
- loader: a ``DataLoader`` from ``harp.data.loader.build_loader`` over the same item keys, with
  worker processes (8-clip batches);
- decode-everything: every frame decoded at the same size with the item's backend, then the
  sampled ones picked (no transform, so the comparison flatters it).

harp's item reads with PyAV by default (``harp.data.decode``): where harp's reader is faster than
decord's, item / raw exceeds 1.

raw, item and decode-everything run in this process, interleaved one pass over the videos at a time
(a change in the machine's load hits all three alike) with one torch thread (as in a loader
worker), and count CPU time (``time.process_time``): clips per CPU-second is per core. The loader
row is wall-clock clips/s divided by the workers (the cores it can use), which other load on the
machine lowers; next to it, clips per CPU-second of the workers and the main process together.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from harp.data.dataset import VideoClipDataset
from harp.data.decode import decode_all, output_size
from harp.data.determinism import ItemKey, item_rng

CLK_TCK = os.sysconf("SC_CLK_TCK")
GOAL_RAW, GOAL_NAIVE = 0.8, 5.0  # issue 12: item >= 0.8x the raw read, >= 5x decode-everything


def train_dataset(folder: Path, backend: str | None = None) -> VideoClipDataset:
    """The training dataset of the videos under ``folder`` (uniform 8 frames every 4th, 112 px),
    made the way ``harp train`` makes it (with ``backend`` in place of the default decode backend
    when given); indexes the folder on first use."""
    from harp.config import load_config
    from harp.data.loader import build_dataset

    cfg = load_config(["data=folder", f"data.root={folder}", "data.val_fraction=0", "data.test_fraction=0.01",
                       "data.probe_workers=1", "sampling.method=uniform", "sampling.interval=4",
                       *([f"data.decode_backend={backend}"] if backend else [])])  # fmt: skip
    return build_dataset(cfg, "train", True, frames=8, frame_size=112)


def children(pid: int) -> list[int]:
    """Process ids of ``pid``'s child processes (its DataLoader workers)."""
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far; 0 once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 of stat


def interleaved(ways: dict[str, Callable[[int, int], object]], n: int, min_seconds: float) -> dict[str, float]:
    """Clips per CPU-second of each ``fn(epoch, video)``: passes over the n videos, one way after
    the other, until every way has run min_seconds of CPU time (and at least two passes)."""
    spent = dict.fromkeys(ways, 0.0)
    done = dict.fromkeys(ways, 0)
    for fn in ways.values():
        fn(0, 0)  # warm-up: imports, first open, the decoder's thread
    epoch = 1
    while any(spent[w] < min_seconds or done[w] < 2 * n for w in ways):
        for way, fn in ways.items():
            if spent[way] >= min_seconds and done[way] >= 2 * n:
                continue
            start = time.process_time()
            for video in range(n):
                fn(epoch, video)
            spent[way] += time.process_time() - start
            done[way] += n
        epoch += 1
    return {w: done[w] / spent[w] for w in ways}


def bench_in_process(dataset: VideoClipDataset, min_seconds: float, other: VideoClipDataset | None = None) -> dict[str, float]:
    """raw, item and decode-everything clips per CPU-second over the dataset's videos (one clip
    each), and ``other_item``: the same items from ``other``, the dataset with the other backend."""
    import decord

    assert dataset.sampler.clips_per_video == 1, "one clip per video: dataset index == video"
    n = len(dataset)
    paths = [str(dataset.path(v)) for v in range(n)]
    sizes = [output_size(int(dataset.videos.widths[v]), int(dataset.videos.heights[v]), dataset.decode_short) or (-1, -1) for v in range(n)]
    frames = [int(f) for f in dataset.videos.frames]
    indices: dict[tuple[int, int], list[int]] = {}

    def sampled(epoch: int, video: int) -> list[int]:
        """The frames the item draws for key (0, epoch, video): its Generator's first draws."""
        if (epoch, video) not in indices:
            rng = item_rng(ItemKey(0, epoch, video), dataset.seed)
            indices[epoch, video] = dataset.sampler.clips(frames[video], rng, 0).reshape(-1).tolist()
        return indices[epoch, video]

    for epoch in range(64):  # drawn before timing: the raw row does nothing but decode
        for video in range(n):
            sampled(epoch, video)

    def raw(epoch: int, video: int) -> None:
        w, h = sizes[video]
        reader = decord.VideoReader(paths[video], ctx=decord.cpu(0), num_threads=1, width=w, height=h)
        reader.get_batch(sampled(epoch, video)).asnumpy()
        del reader

    def item(epoch: int, video: int) -> None:
        dataset[ItemKey(0, epoch, video)]

    def naive(epoch: int, video: int) -> None:
        size = None if sizes[video] == (-1, -1) else sizes[video]
        decode_all(paths[video], backend, size=size)[sampled(epoch, video)]

    backend = dataset.decode.backend
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a loader worker; idle OpenMP threads would also count as CPU time
    try:
        ways = {"raw": raw, "item": item, "naive": naive}
        if other is not None:
            ways["other_item"] = lambda epoch, video: other[ItemKey(0, epoch, video)]
        return interleaved(ways, n, min_seconds)
    finally:
        torch.set_num_threads(threads)


def bench_loader(dataset: VideoClipDataset, workers: int, min_seconds: float, clips: int = 240) -> tuple[float, float]:
    """(wall clips/s divided by the workers, clips per CPU-second of workers + main process) of
    harp's DataLoader over ``clips`` item keys (the dataset's videos, several epochs' keys)."""
    from harp.data.loader import build_loader

    n = len(dataset)
    keys = [ItemKey(0, e, v) for e in range(max(1, clips // n)) for v in range(n)]
    order = np.random.default_rng(0).permutation(len(keys))
    sampler = [keys[i] for i in order]  # any sized iterable is a sampler; the training loop's EpochSampler yields keys too
    before = set(children(os.getpid()))
    loader = build_loader(dataset, 8, shuffle=False, sampler=sampler, num_workers=workers)  # type: ignore[arg-type]
    for _ in loader:  # warm-up epoch: start the (persistent) workers, open the decoders
        pass
    pids = set(children(os.getpid())) - before
    done, wall, cpu = 0, 0.0, 0.0
    while wall < 2 * min_seconds or done == 0:
        w0, c0, k0 = time.perf_counter(), time.process_time(), sum(cpu_seconds(p) for p in pids)
        for batch in loader:
            done += len(batch["label"])
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0 + sum(cpu_seconds(p) for p in pids) - k0
    del loader  # shuts the persistent workers down
    return done / wall / max(1, workers), done / cpu


def run(sources: dict[str, Path], workers: int, min_seconds: float) -> list[dict]:
    """One row per source folder: every way's clips/s per core, and the ratios of issue 12."""
    rows = []
    for source, folder in sources.items():
        dataset = train_dataset(folder)
        other_backend = "decord" if dataset.decode.backend == "pyav" else "pyav"
        speed = bench_in_process(dataset, min_seconds, train_dataset(folder, other_backend))
        loader_wall, loader_cpu = bench_loader(dataset, workers, min_seconds)
        size = output_size(int(dataset.videos.widths[0]), int(dataset.videos.heights[0]), dataset.decode_short)
        decoder = dataset._decoder
        rows.append({"source": source, "videos": len(dataset), "size": "native" if size is None else f"{size[0]}x{size[1]}",
                     "backend": dataset.decode.backend, "other_backend": other_backend, **speed,
                     "loader_wall": loader_wall, "loader_cpu": loader_cpu, "fallbacks": decoder.fallbacks if decoder else 0})  # fmt: skip
        r = rows[-1]
        print(f"  {source:12s} raw {r['raw']:6.1f}  item {r['item']:6.1f}  loader {loader_wall:6.1f} (CPU {loader_cpu:6.1f})  "
              f"decode-everything {r['naive']:5.1f} clips/s per core", file=sys.stderr, flush=True)  # fmt: skip
    return rows


def print_table(rows: list[dict], workers: int) -> None:
    """The loader table; its last column compares each source's item with decoding every frame of the
    *original* files, which is what harp's prepared copy saves a user who starts from the official ones."""
    cores = os.cpu_count() or 1
    original = next((r for r in rows if r["source"] == "original"), None)
    print(f"loader: clips/s per core, training items (uniform 8 frames every 4th, 112 px train transform), one clip per video; "
          f"load average {os.getloadavg()[0]:.1f} on {cores} cores")  # fmt: skip
    print(f"raw, item, decode-everything: clips per CPU-second in one process; DataLoader: wall clips/s / {workers} workers, "
          "and clips per CPU-second of workers + main process")  # fmt: skip
    print()
    print("| source | videos | decode size | raw decord read | harp item (backend) | item, other backend | item / other "
          "| DataLoader wall / core | DataLoader per CPU-s "
          "| decode-everything | item / raw (>= 0.8) | item / decode-everything (>= 5) | item / decode-everything of the originals "
          "| PyAV fallbacks |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        to_raw, to_naive = r["item"] / r["raw"], r["item"] / r["naive"]
        to_original = f"{r['item'] / original['naive']:.1f}x" if original else "-"
        print(f"| {r['source']} | {r['videos']} | {r['size']} | {r['raw']:.1f} | {r['item']:.1f} ({r['backend']}) "
              f"| {r['other_item']:.1f} ({r['other_backend']}) | {r['item'] / r['other_item']:.2f}x "
              f"| {r['loader_wall']:.1f} | {r['loader_cpu']:.1f} "
              f"| {r['naive']:.1f} | {to_raw:.2f}x {'met' if to_raw >= GOAL_RAW else 'MISSED'} "
              f"| {to_naive:.2f}x {'met' if to_naive >= GOAL_NAIVE else 'MISSED'} | {to_original} | {r['fallbacks']} |")  # fmt: skip
