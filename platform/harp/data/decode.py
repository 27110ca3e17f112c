"""Decode only the sampled frames of a video, at reduced resolution: PyAV by default, decord behind
the same interface.

PyAV (FFmpeg's own bindings, kept up to date) is the default because harp's reader on it is the
faster one: it seeks once per keyframe gap, decodes forward, converts only the wanted frames and
reuses one swscale context per read, where decord seeks per frame and indexes every packet when it
opens a file; `bench/data.py` measures 1.2-2.8x more clips per CPU-second than decord for every
sampler on original and prepared videos, and the same pixels at native size.

decord's known hazards are handled here, for ``data.decode_backend=decord``:

- one reader per process: a ``FrameDecoder`` belongs to the process that created it (the dataset
  makes one lazily inside each DataLoader worker, never in the parent before the fork), decord
  runs with ``num_threads=1``, and each ``VideoReader`` is dropped right after use;
- a native hang when a container over-reports its frame count: decord's count is checked against
  the probed count (packets actually present) before any frame is requested, and every decode
  runs under a deadline (``timeout_s``) in a helper thread (decord's ctypes calls release the GIL).
  On a count mismatch, an error or a timeout the clip is decoded with PyAV instead; after
  ``MAX_DECORD_HANGS`` hangs the process stops using decord altogether;
- wrong frames: decord 0.6.0 returns padded or broken frames for some frame widths (e.g. 16, 24,
  48, 72 px); the output shape is checked and such clips go to PyAV, and the process remembers the
  sizes decord failed on. For .avi files with wrong frames, prefer a prepared (transcoded) copy,
  see ``harp data prepare``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from harp.errors import HarpError

log = logging.getLogger("harp.data")

MAX_DECORD_HANGS = 2
SEEK_GAP = 48  # PyAV seeks when the next wanted frame is this far ahead and the keyframe interval is unknown
PEEK_PACKETS = 16  # packets read to find the first frame's time: more than any B-frame reordering depth


class DecodeError(HarpError):
    """A video (or the requested frames of it) could not be decoded."""


def output_size(width: int, height: int, short_side: int | None) -> tuple[int, int] | None:
    """(width, height) with the short side scaled to ``short_side``, aspect kept; None -> native."""
    if not short_side or not width or not height:
        return None
    if min(width, height) == short_side:
        return None
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decord_reader(path: str, size: tuple[int, int] | None):  # -> decord.VideoReader
    import decord

    w, h = size if size else (-1, -1)
    return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1, width=w, height=h)


def _rgb_converter(size: tuple[int, int] | None) -> Callable[[object], np.ndarray]:
    """``frame -> uint8 (H, W, 3)`` RGB, scaled to (width, height) when given, for the frames of one read.

    One ``VideoReformatter`` serves them all: ``VideoFrame.to_ndarray(format=...)`` builds a fresh
    swscale context per frame, which costs 4x the conversion itself at 128 px (0.45 vs 0.11 ms)."""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    kwargs = {"format": "rgb24", **({"width": size[0], "height": size[1]} if size else {})}
    return lambda frame: reformatter.reformat(frame, **kwargs).to_ndarray()


def _decord_read(path: str, wanted: np.ndarray, size: tuple[int, int] | None, expected: int | None, gop: float | None = None) -> np.ndarray:
    reader = _decord_reader(path, size)
    try:
        count = len(reader)
        if expected and (count > expected + max(2, expected // 20) or count < expected - max(2, expected // 20)):
            raise DecodeError(f"decord counts {count} frames but the probe found {expected}")
        if int(wanted[-1]) >= count:
            raise DecodeError(f"frame {int(wanted[-1])} requested but decord sees {count} frames")
        return _checked(reader.get_batch(wanted.tolist()).asnumpy(), size)
    finally:
        del reader


def _checked(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """decord 0.6.0 returns padded rows (4 or 6 'channels') or fails for some widths (16, 24, 48, 72 px
    among them): refuse such output so the caller decodes with PyAV."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or (size and frames.shape[1:3] != (size[1], size[0])):
        raise DecodeError(f"decord returned frames of shape {frames.shape}")
    return frames


def _first_pts(container, stream) -> int | None:  # (av.container.InputContainer, av.video.stream.VideoStream)
    """The presentation time of a video's first frame, from the packets at the start of the file
    (call it before anything else is read): the smallest pts among them, since B-frames arrive out
    of order. ``stream.start_time`` is not it: an AVI with B-frames (the XviD files of UCF101 and
    HMDB51) numbers its frames from 1 while FFmpeg reports a start time of 0, which would shift every
    index by one."""
    stamps = [packet.pts for _, packet in zip(range(PEEK_PACKETS), container.demux(stream)) if packet.pts is not None]
    return min(stamps) if stamps else None


def _pyav_read(path: str, wanted: np.ndarray, size: tuple[int, int] | None, expected: int | None, gop: float | None = None) -> np.ndarray:
    """Decode forward, seeking only when the next wanted frame is more than a keyframe interval
    ahead (a seek restarts decoding at the keyframe before the target, so on a video with one
    keyframe every 250 frames it would re-decode what was just decoded). A frame's index is its
    presentation time counted from the first frame's."""
    import av

    gap = max(int(gop), 8) if gop else SEEK_GAP
    out: list[np.ndarray] = []
    to_rgb = _rgb_converter(size)
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        tb = float(stream.time_base) if stream.time_base else 1.0 / fps
        origin: int | None = None  # pts of the video's first frame
        pos = -1  # index of the last decoded frame
        last = None
        i = 0
        sought: set[int] = set()
        while i < len(wanted):
            target = int(wanted[i])
            if target - pos > gap or pos < 0 and target > gap:
                if target in sought:
                    break  # sought it before and the stream ended short of it
                sought.add(target)
                if origin is None:  # nothing read yet: the packets at the start of the file give it
                    origin = _first_pts(container, stream)
                    origin = origin if origin is not None else stream.start_time or 0
                container.seek(int(origin + target / fps / tb), stream=stream, backward=True, any_frame=False)
                pos = -1
            progressed = False
            for frame in container.decode(stream):
                progressed = True
                if origin is None and pos < 0 and frame.pts is not None:
                    origin = frame.pts  # the first frame decoded from the start of the file: frame 0
                idx = round((frame.pts - (origin or 0)) * tb * fps) if frame.pts is not None else pos + 1
                pos = idx
                last = frame
                if idx < int(wanted[i]):
                    continue  # a frame only decoded on the way to the next wanted one: never converted
                image = to_rgb(frame)
                while i < len(wanted) and int(wanted[i]) <= idx:  # nearest frame at or after each wanted index
                    out.append(image)
                    i += 1
                if i >= len(wanted) or int(wanted[i]) - idx > gap:
                    break
            if not progressed or (i < len(wanted) and int(wanted[i]) <= pos):
                break  # end of stream
        if i < len(wanted):
            # A stream a frame or two shorter than probed (e.g. a dropped last frame) repeats its last
            # frame; anything more is an error.
            if last is None or len(wanted) - i > max(2, len(wanted) // 4):
                raise DecodeError(f"stream ended after frame {pos}; {len(wanted) - i} of {len(wanted)} wanted frames missing")
            image = to_rgb(last)
            out.extend([image] * (len(wanted) - i))
    return np.stack(out)


READERS: dict[str, Callable[[str, np.ndarray, tuple[int, int] | None, int | None, float | None], np.ndarray]] = {
    "decord": _decord_read,
    "pyav": _pyav_read,
}


class FrameDecoder:
    """Reads frames of one video at a time, under a deadline, in the process that created it."""

    def __init__(self, backend: str = "pyav", timeout_s: float = 20.0, *, fallback: bool = True) -> None:
        if backend not in READERS:
            raise HarpError(f"data.decode_backend={backend!r}; choose one of: {', '.join(READERS)}")
        self.backend = backend
        self.timeout_s = float(timeout_s)
        self.fallback = fallback
        self.pid = os.getpid()
        self.decord_hangs = 0
        self.fallbacks = 0
        self._decord_refused: set[object] = set()  # output sizes (or paths) decord failed on here
        self._pool: ThreadPoolExecutor | None = None

    def _run(self, fn: Callable[..., np.ndarray], *args: object) -> np.ndarray:
        if self.timeout_s <= 0:
            return fn(*args)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harp-decode")
        future = self._pool.submit(fn, *args)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            # The stuck thread cannot be killed; abandon it with its pool and start a fresh one.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise

    def read(
        self,
        path: str | os.PathLike,
        indices: np.ndarray,
        *,
        size: tuple[int, int] | None = None,
        expected_frames: int | None = None,
        keyframe_interval: float | None = None,
    ) -> np.ndarray:
        """uint8 (len(indices), H, W, 3) for any indices (repeats and any order allowed).

        ``size`` is the (width, height) to decode at; ``expected_frames`` and ``keyframe_interval``
        come from the probe (manifest) and guard against over-reporting containers / pick seeks."""
        if os.getpid() != self.pid:
            raise HarpError("a FrameDecoder was shared across processes; create one per DataLoader worker")
        path = str(path)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0:
            raise DecodeError(f"no frames requested from {path}")
        wanted, inverse = np.unique(indices, return_inverse=True)
        if wanted[0] < 0 or (expected_frames and wanted[-1] >= expected_frames):
            raise DecodeError(f"frame indices {int(wanted[0])}..{int(wanted[-1])} outside a {expected_frames}-frame video: {path}")
        backend = self.backend
        key = size or path
        if backend == "decord" and (self.decord_hangs >= MAX_DECORD_HANGS or key in self._decord_refused):
            backend = "pyav"
        try:
            frames = self._run(READERS[backend], path, wanted, size, expected_frames, keyframe_interval)
        except FutureTimeout:
            if backend == "decord":
                self.decord_hangs += 1
                log.warning("decord did not finish %s within %.0f s (hang %d); decoding it with PyAV", path, self.timeout_s, self.decord_hangs)
            else:
                raise DecodeError(f"decoding took longer than {self.timeout_s:.0f} s: {path}") from None
            frames = self._fallback(path, wanted, size, expected_frames, keyframe_interval)
        except DecodeError as exc:
            if backend != "decord" or not self.fallback:
                raise
            log.info("decord: %s (%s); decoding with PyAV", exc, path)
            self._decord_refused.add(key)
            frames = self._fallback(path, wanted, size, expected_frames, keyframe_interval)
        except Exception as exc:  # noqa: BLE001 - decord/PyAV raise many types on a broken file
            if backend != "decord" or not self.fallback:
                raise DecodeError(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]} ({path})") from exc
            self._decord_refused.add(key)
            frames = self._fallback(path, wanted, size, expected_frames, keyframe_interval)
        if len(frames) != len(wanted):
            raise DecodeError(f"got {len(frames)} of {len(wanted)} frames from {path}")
        return frames[inverse]

    def _fallback(self, path: str, wanted: np.ndarray, size: tuple[int, int] | None, expected: int | None, gop: float | None) -> np.ndarray:
        self.fallbacks += 1
        try:
            return self._run(_pyav_read, path, wanted, size, expected, gop)
        except FutureTimeout:
            raise DecodeError(f"decoding took longer than {self.timeout_s:.0f} s: {path}") from None
        except DecodeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise DecodeError(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]} ({path})") from exc


def decode_all(path: str | os.PathLike, backend: str = "pyav", *, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every frame of a video (the naive way the benchmark compares against, and short videos)."""
    path = str(path)
    if backend == "decord":
        reader = _decord_reader(path, size)
        try:
            return _checked(reader.get_batch(list(range(len(reader)))).asnumpy(), size)
        finally:
            del reader
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        to_rgb = _rgb_converter(size)
        return np.stack([to_rgb(frame) for frame in container.decode(stream)])
