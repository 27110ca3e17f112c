"""Which frames of a video make a clip: one pure function per strategy of the papers, and the
``FrameSampler`` object a dataset calls.

Every sampling function has the signature ``(num_frames_in_video, rng, params) -> indices`` and
never touches a video, so its properties are tested directly. It returns int64 frame indices in
``[0, num_frames_in_video)``, in temporal order, shape ``(T,)``; ``multi_clip`` returns
``(num_clips, T)``. ``params.train`` picks the training behaviour (random offsets) or the test
behaviour (deterministic, centred); test-time multi-view sampling is ``sample_views``.

``FrameSampler`` bundles a method with its parameters, as PyTorchVideo's clip samplers do: the
dataset asks it for the frames of an item and how many frames a video needs, without knowing the
strategies.

Videos shorter than a strategy needs (``frames_needed``) are handled by ``params.short``:
``loop`` takes the frames a looped playback would give (index ``i`` of the long-enough timeline is
frame ``i mod n``) and keeps them in temporal order, so motion never jumps back to the start inside
a clip (uniform 8x32 on a 180-frame video: ``[0, 12, 32, 44, 64, 96, 128, 160]``, not ``[0, 32, ..,
160, 12, 44]``); ``repeat_last`` holds the last frame. The config's third mode, ``augment``,
lengthens the decoded frames *before* sampling (``harp.data.short_video``;
``FrameSampler.lengthen_short``), so the functions then see a long-enough video; they ``loop`` if
it is still short. ``segment_frames`` never wraps: a short segment holds its last frame.

Strategies (``FRAME_SAMPLERS``; the config's ``sampling.method`` names one):

- ``uniform``: T frames at a fixed interval (e.g. 8 at 1/32, as Kaur samples for TimeSformer);
  random start in training, centred in test.
- ``equidistant``: T equal segments over the whole video (TSN); a random frame per segment in
  training, each segment's centre in test.
- ``random``: T distinct frames, sorted; in test the segment centres (deterministic).
- ``dense``: T consecutive frames; random start in training, centred in test.
- ``multi_clip``: N clips of T consecutive frames spread evenly over the video, overlapping only
  when the video is shorter than N*T (Anh et al. 2022: 5 x 16 frames); small random shifts in
  training.
- ``segment_stride``: the video is cut into segments a clip long; a random segment (the middle
  one in test), a random start inside it, then every k-th frame, T times (Chen, Tang and Cai
  2022: every 3rd frame).
- ``segment_frames``: S = T / k equal segments over the whole video (TSN), ``k`` *adjacent*
  frames in each, segment-major ``[a_0, a_0+1, .., a_0+k-1, a_1, ..]``: MDT-Net's "5 frames per
  segment" (Xu, Cao and Yi), whose fine temporal differences are those of neighbouring frames. The
  start ``a_s`` of segment ``s`` (frames ``[floor(s n / S), floor((s+1) n / S))``) is random in
  training, centred in test; MMAction2 writes this ``clip_len=k, frame_interval=1, num_clips=S``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SHORT_INDEX_MODES = ("loop", "repeat_last")  # index mappings; the config's "augment" needs pixels (FrameSampler.lengthen_short)


@dataclass(frozen=True)
class SamplingParams:
    """What a sampler needs besides the video length and the random generator."""

    num_frames: int  # T: frames per clip
    interval: int = 2  # uniform: frame stride; segment_stride: every k-th frame
    num_clips: int = 1  # multi_clip: clips per video
    train: bool = True
    short: str = "loop"  # loop | repeat_last (augment lengthens the video before sampling)
    segment_frames: int = 1  # segment_frames: k adjacent frames per segment (T = segments x k)

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.interval < 1 or self.num_clips < 1 or self.segment_frames < 1:
            raise ValueError(f"sampling params must be positive: {self}")
        if self.short not in SHORT_INDEX_MODES:
            raise ValueError(f"short={self.short!r}; choose one of {SHORT_INDEX_MODES}")


SampleFunction = Callable[[int, np.random.Generator, SamplingParams], np.ndarray]


def frames_needed(method: str, params: SamplingParams) -> int:
    """The fewest frames a video needs for ``method`` without repeating or inventing frames."""
    if method in ("uniform", "segment_stride"):
        return (params.num_frames - 1) * params.interval + 1
    return params.num_frames  # multi_clip's clips may overlap on short videos


def fit_to_length(indices: np.ndarray, n: int, short: str) -> np.ndarray:
    """Map increasing indices of a virtual, long-enough timeline onto a video of ``n`` frames, each
    clip (last axis) still in temporal order: ``loop`` takes the looped playback's frames sorted,
    ``repeat_last`` holds the last frame."""
    indices = np.asarray(indices, dtype=np.int64)
    if n <= 0:
        raise ValueError("a video needs at least one frame")
    if short == "repeat_last":
        return np.minimum(indices, n - 1)
    if indices.size and indices.max() < n:
        return indices
    return np.sort(indices % n, axis=-1)  # loop, never running backwards inside a clip


def _start(n: int, span: int, rng: np.random.Generator, train: bool) -> int:
    if n <= span:
        return 0
    return int(rng.integers(0, n - span + 1)) if train else (n - span) // 2


def _strided(n: int, rng: np.random.Generator, p: SamplingParams, interval: int) -> np.ndarray:
    span = (p.num_frames - 1) * interval + 1
    idx = _start(n, span, rng, p.train) + np.arange(p.num_frames, dtype=np.int64) * interval
    return fit_to_length(idx, n, p.short)


def uniform(n: int, rng: np.random.Generator, p: SamplingParams) -> np.ndarray:
    """T frames ``interval`` apart; random start in training, centred in test."""
    return _strided(n, rng, p, p.interval)


def dense(n: int, rng: np.random.Generator, p: SamplingParams) -> np.ndarray:
    """T consecutive frames; random start in training, centred in test."""
    return _strided(n, rng, p, 1)


def _segments(n: int, t: int, offsets: np.ndarray) -> np.ndarray:
    """Frame ``offsets`` (in [0, 1)) of each of t equal segments over n frames."""
    edges = np.linspace(0.0, n, t + 1)
    idx = np.floor(edges[:-1] + offsets * (edges[1:] - edges[:-1])).astype(np.int64)
    return np.clip(idx, np.ceil(edges[:-1]).astype(np.int64), n - 1)


def equidistant(n: int, rng: np.random.Generator, p: SamplingParams) -> np.ndarray:
    """TSN: T equal segments over the whole video; random frame per segment (train) or centre (test)."""
    t = p.num_frames
    if n < t:
        return fit_to_length(np.arange(t), n, p.short)
    offsets = rng.random(t) if p.train else np.full(t, 0.5)
    return _segments(n, t, offsets)


def random(n: int, rng: np.random.Generator, p: SamplingParams) -> np.ndarray:
    """T distinct frames, sorted (train); segment centres in test, so evaluation is deterministic."""
    t = p.num_frames
    if n < t:
        return fit_to_length(np.arange(t), n, p.short)
    if not p.train:
        return _segments(n, t, np.full(t, 0.5))
    return np.sort(rng.choice(n, size=t, replace=False)).astype(np.int64)


def _clip_starts(n: int, span: int, count: int) -> np.ndarray:
    """``count`` start frames of ``span``-long clips spread evenly (overlapping only when n < count*span)."""
    last = max(n - span, 0)
    if count == 1:
        return np.array([last // 2], dtype=np.int64)
    if n >= count * span:  # disjoint: each clip centred in its own 1/count of the video
        width = n / count
        return np.floor(np.arange(count) * width + (width - span) / 2).astype(np.int64)
    return np.round(np.linspace(0, last, count)).astype(np.int64)


def multi_clip(n: int, rng: np.random.Generator, p: SamplingParams) -> np.ndarray:
    """(num_clips, T): N clips of T consecutive frames spread evenly over the video (Anh et al. 2022)."""
    t, count = p.num_frames, p.num_clips
    starts = _clip_starts(n, t, count)
    if p.train and n > t:
        # Jitter each clip inside its share of the video, keeping the order and the bounds.
        room = max(int(n / count) - t, 0) if n >= count * t else 0
        starts = np.clip(starts + rng.integers(-(room // 2), room // 2 + 1, size=count), 0, n - t)
    idx = starts[:, None] + np.arange(t, dtype=np.int64)[None, :]
    return fit_to_length(idx, n, p.short)


def segment_stride(n: int, rng: np.random.Generator, p: SamplingParams) -> np.ndarray:
    """Segments a clip long; a random segment and start in it (train), the middle segment (test); every k-th frame
    (Chen, Tang and Cai 2022)."""
    span = (p.num_frames - 1) * p.interval + 1
    steps = np.arange(p.num_frames, dtype=np.int64) * p.interval
    if n <= span:
        return fit_to_length(steps, n, p.short)
    count = n // span  # >= 1 segments, each at least a clip long
    seg = int(rng.integers(count)) if p.train else count // 2
    lo, hi = seg * n // count, (seg + 1) * n // count  # the segment's frames [lo, hi)
    last = min(hi - span, n - span)  # latest start keeping the clip inside the segment
    start = int(rng.integers(lo, last + 1)) if p.train else lo + (last - lo) // 2
    return start + steps


def _segment_bounds(n: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: segment ``s`` covers frames ``[floor(s n / S), floor((s + 1) n / S))``."""
    s = np.arange(segments, dtype=np.int64)
    return s * n // segments, (s + 1) * n // segments


def _segment_count(p: SamplingParams) -> int:
    if p.num_frames % p.segment_frames:
        raise ValueError(
            f"segment_frames sampling needs num_frames={p.num_frames} to be a multiple of segment_frames={p.segment_frames}"
        )
    return p.num_frames // p.segment_frames


def _adjacent(starts: np.ndarray, k: int, n: int) -> np.ndarray:
    """``[..., a_s, a_s+1, .., a_s+k-1, ...]`` per row of starts, clamped at the last frame (never wrapping)."""
    idx = starts[..., :, None] + np.arange(k, dtype=np.int64)
    return np.minimum(idx, n - 1).reshape(*starts.shape[:-1], -1)


def segment_frames(n: int, rng: np.random.Generator, p: SamplingParams) -> np.ndarray:
    """S segments x k adjacent frames, segment-major (MDT-Net); start random in ``[lo, max(lo, hi - k)]``
    (train) or ``max(lo, (lo + hi - k) // 2)`` (test)."""
    if n <= 0:
        raise ValueError("a video needs at least one frame")
    k = p.segment_frames
    lo, hi = _segment_bounds(n, _segment_count(p))
    last = np.maximum(lo, hi - k)
    starts = rng.integers(lo, last + 1) if p.train else np.maximum(lo, (lo + hi - k) // 2)
    return _adjacent(np.asarray(starts, dtype=np.int64), k, n)


def _segment_frame_views(n: int, views: int, p: SamplingParams) -> np.ndarray:
    """(views, S*k): each view's starts at evenly spaced offsets inside the segments' room; one view
    is the test sample (the centred start)."""
    if n <= 0:
        raise ValueError("a video needs at least one frame")
    k = p.segment_frames
    lo, hi = _segment_bounds(n, _segment_count(p))
    room = np.maximum(hi - k - lo, 0)
    v = np.arange(views, dtype=np.int64)[:, None]
    starts = lo[None, :] + ((2 * v + 1) * room[None, :]) // (2 * views)
    return _adjacent(starts, k, n)


FRAME_SAMPLERS: dict[str, SampleFunction] = {
    "uniform": uniform,
    "equidistant": equidistant,
    "random": random,
    "dense": dense,
    "multi_clip": multi_clip,
    "segment_stride": segment_stride,
    "segment_frames": segment_frames,
}


def sample(method: str, n: int, rng: np.random.Generator, params: SamplingParams) -> np.ndarray:
    """One training/test sample: (T,) indices, or (num_clips, T) for multi_clip."""
    return FRAME_SAMPLERS[method](n, rng, params)


def sample_views(method: str, n: int, num_clips: int, rng: np.random.Generator, params: SamplingParams) -> np.ndarray:
    """Test-time multi-view sampling: (num_clips, T) indices, deterministic, covering the video.

    Strided strategies (uniform, dense, segment_stride) and multi_clip place ``num_clips`` windows
    evenly over the video (the ``8x32xN`` protocol); segment strategies (equidistant, random,
    segment_frames) take ``num_clips`` evenly spaced offsets inside every segment.
    """
    if num_clips < 1:
        raise ValueError("num_clips must be >= 1")
    p = params
    t = p.num_frames
    if method == "segment_frames":
        return _segment_frame_views(n, num_clips, p)
    if method in ("equidistant", "random"):
        if n < t:
            return np.stack([fit_to_length(np.arange(t), n, p.short)] * num_clips)
        offsets = (np.arange(num_clips) + 0.5) / num_clips
        return np.stack([_segments(n, t, np.full(t, o)) for o in offsets])
    interval = 1 if method in ("dense", "multi_clip") else p.interval
    span = (t - 1) * interval + 1
    if num_clips == 1:
        starts = np.array([max(n - span, 0) // 2], dtype=np.int64)
    else:
        starts = np.round(np.linspace(0, max(n - span, 0), num_clips)).astype(np.int64)
    idx = starts[:, None] + np.arange(t, dtype=np.int64)[None, :] * interval
    return fit_to_length(idx, n, p.short)


@dataclass(frozen=True)
class FrameSampler:
    """The frames one dataset item decodes: a strategy of ``FRAME_SAMPLERS`` with its parameters.

    A dataset needs three answers from it, and nothing about the strategies: which frames of an
    ``n``-frame video make the item (``clips``), how many training samples a video yields
    (``clips_per_video``), and how long a video must be before it counts as short
    (``frames_needed``). ``params.train`` chooses random (training) or centred (test) frames; at
    test time an item is ``test_clips`` evenly spread clips of the video. ``lengthen_short`` (the
    config's ``data.short_video=augment``) tells the dataset to lengthen a short video's decoded
    frames before asking for indices (``harp.data.short_video``).
    """

    method: str
    params: SamplingParams
    test_clips: int = 1
    lengthen_short: bool = False

    def __post_init__(self) -> None:
        if self.method not in FRAME_SAMPLERS:
            raise ValueError(f"no frame sampler {self.method!r}; choose one of {', '.join(FRAME_SAMPLERS)}")
        if self.test_clips < 1:
            raise ValueError("test_clips must be >= 1")
        if self.method == "segment_frames":
            _segment_count(self.params)  # T must split into segments of k frames

    @classmethod
    def build(
        cls,
        method: str,
        *,
        num_frames: int,
        interval: int = 2,
        num_clips: int = 1,
        train: bool = True,
        short_video: str = "loop",
        test_clips: int = 1,
        segment_frames: int = 1,
    ) -> FrameSampler:
        """From the config's words (``sampling.*``, ``data.short_video``): ``augment`` lengthens
        short videos first and loops past what it could not lengthen."""
        augment = short_video == "augment"
        params = SamplingParams(num_frames, interval, num_clips, train, "loop" if augment else short_video, segment_frames)
        return cls(method, params, test_clips=test_clips if not train else 1, lengthen_short=augment)

    @property
    def train(self) -> bool:
        return self.params.train

    @property
    def frames_needed(self) -> int:
        return frames_needed(self.method, self.params)

    @property
    def clips_per_video(self) -> int:
        """Training samples per video: ``multi_clip`` trains on each of a video's clips as a sample of
        its own (Anh et al. 2022), so an epoch has ``num_clips`` times as many samples."""
        return self.params.num_clips if (self.train and self.method == "multi_clip") else 1

    def indices(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """One sample of a video of ``num_frames`` frames: (T,), or (num_clips, T) for multi_clip."""
        return sample(self.method, num_frames, rng, self.params)

    def views(self, num_frames: int, num_clips: int, rng: np.random.Generator) -> np.ndarray:
        """Test time: (num_clips, T), deterministic, covering the video."""
        return sample_views(self.method, num_frames, num_clips, rng, self.params)

    def clips(self, num_frames: int, rng: np.random.Generator, clip: int = 0) -> np.ndarray:
        """(V, T) indices one item decodes: training, its one clip (``clip`` picks a multi_clip
        sample's clip; V=1); test, ``test_clips`` views."""
        if not self.train:
            return self.views(num_frames, self.test_clips, rng)
        idx = self.indices(num_frames, rng)
        return idx[clip][None] if idx.ndim == 2 else idx[None]

    def notation(self) -> str:
        """MMAction2-style clip_len x interval x clips (e.g. ``uniform:8x32x1``, ``segment_frames:5x1x16``), for logs."""
        if self.method == "segment_frames":
            return f"{self.method}:{self.params.segment_frames}x1x{_segment_count(self.params)}"
        interval = self.params.interval if self.method in ("uniform", "segment_stride") else 1
        clips = self.params.num_clips if self.method == "multi_clip" else 1
        return f"{self.method}:{self.params.num_frames}x{interval}x{clips}"
