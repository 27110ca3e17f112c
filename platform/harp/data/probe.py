"""Probe videos with PyAV: frames, fps, size, duration, or the error that makes a file unusable.

The frame count is the number of video packets (demuxed, not decoded: fast), not the container
header's claim, because a header that over-reports its frame count is what makes decord hang;
the header's number is kept as ``header_frames`` so the two can be compared. The mean keyframe
interval (``keyframe_interval``, frames per keyframe) tells the PyAV reader when seeking pays off
and tells users when ``harp data prepare`` would (long intervals seek slowly). The first frame is
decoded too, so a file that opens but does not decode is caught at index time, not in a sweep.

Every probe also records what identifies the file's content cheaply: its size, its modification
time and a fingerprint (a hash of the first and last 32 KiB). A re-index re-uses a probe only when
all three still match, so a file overwritten in place (even with the same size, even with its
old mtime restored) is probed again.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

IDENTITY_COLUMNS = ("size_bytes", "mtime_ns", "fingerprint")
PROBE_COLUMNS = ("frames", "header_frames", "keyframe_interval", "fps", "width", "height", "duration", *IDENTITY_COLUMNS, "error")
_FINGERPRINT_BYTES = 32 * 1024


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Size, mtime (ns) and a fingerprint of the head and tail of the file; raises OSError."""
    stat = os.stat(path)
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        digest.update(handle.read(_FINGERPRINT_BYTES))
        if stat.st_size > 2 * _FINGERPRINT_BYTES:
            handle.seek(-_FINGERPRINT_BYTES, os.SEEK_END)
            digest.update(handle.read(_FINGERPRINT_BYTES))
    return {"size_bytes": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns), "fingerprint": digest.hexdigest()}


def failed_probe(error: str, size_bytes: int = 0, identity: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "frames": 0,
        "header_frames": 0,
        "keyframe_interval": 0.0,
        "fps": 0.0,
        "width": 0,
        "height": 0,
        "duration": 0.0,
        "size_bytes": size_bytes,
        "mtime_ns": 0,
        "fingerprint": "",
        **(identity or {}),
        "error": error,
    }


def probe_video(path: str | os.PathLike) -> dict[str, Any]:
    """Probe one file; never raises: a problem is returned as a one-line ``error``."""
    import av

    path = str(path)
    try:
        identity = file_identity(path)
    except OSError as exc:
        return failed_probe(f"cannot read file: {exc.strerror or exc}")
    size_bytes = identity["size_bytes"]
    if size_bytes == 0:
        return failed_probe("empty file", 0, identity)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                return failed_probe("no video stream", size_bytes, identity)
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            header = int(stream.frames or 0)
            first = next(container.decode(stream), None)
            if first is None:
                return failed_probe("no decodable frame", size_bytes, identity)
            width, height = first.width, first.height
            container.seek(0)
            frames = keyframes = 0
            for packet in container.demux(stream):
                if packet.size:
                    frames += 1
                    keyframes += bool(packet.is_keyframe)
    except (av.FFmpegError, OSError, ValueError, StopIteration, RuntimeError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        return failed_probe(f"{type(exc).__name__}: {message}"[:300], size_bytes, identity)
    if frames <= 0:
        return failed_probe("no video frames", size_bytes, identity)
    if fps <= 0:
        fps = 25.0
    return {
        "frames": frames,
        "header_frames": header,
        "keyframe_interval": frames / max(keyframes, 1),
        "fps": fps,
        "width": width,
        "height": height,
        "duration": frames / fps,
        **identity,
        "error": "",
    }


def probe_many(paths: Sequence[str | os.PathLike], *, workers: int = 0, progress: bool = True, desc: str = "probe") -> list[dict[str, Any]]:
    """Probe files in parallel processes with a progress bar; results in input order."""
    from tqdm import tqdm

    paths = [str(p) for p in paths]
    workers = workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(paths)))
    bar = tqdm(total=len(paths), desc=desc, unit="video", disable=not progress or not paths)
    results: list[dict[str, Any]] = []
    if workers == 1 or len(paths) < 8:
        for p in paths:
            results.append(probe_video(p))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(probe_video, paths, chunksize=max(1, min(16, len(paths) // (workers * 4) or 1))):
                results.append(result)
                bar.update()
    bar.close()
    return results

