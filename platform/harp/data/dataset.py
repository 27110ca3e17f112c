"""A map-style torch Dataset of video clips: sample indices, decode only those frames at reduced
resolution, apply clip-consistent transforms, survive bad files.

Each item is a dict (collated into the batch dict the training loop reads):

- ``video``: uint8 ``(T, H, W, C)``, or ``(V, T, H, W, C)`` with V = clips x crops > 1 at test time;
- ``label``: int (after a label-swapping horizontal flip, the swapped label);
- ``index``: the manifest row (within this split) the clip came from;
- ``skipped``: how many files failed to decode before this sample succeeded (0 normally);
- ``failed``: those files' paths joined with ``;`` (``""`` normally).

A file that fails is logged on the ``harp.data`` logger, remembered by the worker (so it is not
retried every epoch), and replaced by another random video of the split; ``loader.check_skip_budget``
turns the per-epoch counts into a loud failure past ``data.max_bad_fraction``.

Training with ``multi_clip`` follows 003: every video yields ``num_clips`` instances (one per clip),
so an epoch has ``num_clips`` times as many samples.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from harp.data.decode import DecodeError, FrameDecoder, output_size
from harp.data.sampling import SamplingParams, frames_needed, sample, sample_views
from harp.data.short_video import augment_short
from harp.data.transforms import ClipTransform
from harp.errors import HarpError

log = logging.getLogger("harp.data")


class VideoClipDataset(Dataset):
    """Clips of the videos listed in a manifest split (see the module docstring for the items)."""

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        num_frames_per_video: Sequence[int],
        widths: Sequence[int],
        heights: Sequence[int],
        *,
        keyframe_intervals: Sequence[float] | None = None,
        root: str | os.PathLike,
        frames: int,
        frame_size: int,
        train: bool,
        method: str = "uniform",
        interval: int = 2,
        num_clips: int = 1,
        num_views_clips: int = 1,
        num_crops: int = 1,
        short_video: str = "loop",
        backend: str = "decord",
        timeout_s: float = 20.0,
        resize_short: int | None = None,
        crop_scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        flip: bool = True,
        flip_swap: Mapping[int, int] | None = None,
        color_jitter: float = 0.0,
        seed: int = 0,
        max_retries: int = 10,
        class_names: Sequence[str] = (),
    ) -> None:
        if not len(paths):
            raise HarpError("a VideoClipDataset needs at least one video")
        if num_crops not in (1, 3):
            raise HarpError(f"num_crops={num_crops}: use 1 (centre) or 3 (three crops)")
        # Fixed-width numpy arrays, not Python lists: DataLoader workers touching list items would
        # copy-on-write the parent's pages and grow resident memory epoch after epoch.
        self.paths = np.array([str(p) for p in paths], dtype=np.bytes_)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_frames = np.asarray(num_frames_per_video, dtype=np.int64)
        self.widths = np.asarray(widths, dtype=np.int64)
        self.heights = np.asarray(heights, dtype=np.int64)
        self.keyframe_intervals = np.asarray(keyframe_intervals if keyframe_intervals is not None else np.zeros(len(paths)), dtype=np.float64)
        self.root = Path(root)
        self.frames, self.frame_size, self.train = int(frames), int(frame_size), bool(train)
        self.method = method
        self.short_video = short_video
        self.params = SamplingParams(
            num_frames=self.frames,
            interval=interval,
            num_clips=num_clips,
            train=self.train,
            short="loop" if short_video == "augment" else short_video,
        )
        self.needed = frames_needed(method, self.params)
        self.num_views_clips = 1 if train else int(num_views_clips)
        self.expand = num_clips if (train and method == "multi_clip") else 1
        self.resize_short = int(resize_short or round(frame_size * 8 / 7))
        # Three crops resize the short side to the crop size; decode straight at the size used.
        self.decode_short = self.frame_size if (not train and num_crops == 3) else self.resize_short
        self.transform = ClipTransform(
            frame_size=self.frame_size,
            train=self.train,
            resize_short=self.resize_short,
            scales=tuple(crop_scales),
            flip=flip,
            jitter=color_jitter,
            num_crops=num_crops,
        )
        self.flip_swap = dict(flip_swap or {})
        self.backend, self.timeout_s = backend, float(timeout_s)
        self.seed, self.max_retries = int(seed), int(max_retries)
        self.class_names = list(class_names)
        self._decoder: FrameDecoder | None = None
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths) * self.expand

    @property
    def num_videos(self) -> int:
        return len(self.paths)

    def path(self, video: int) -> Path:
        return self.root / self.paths[video].decode()

    def decoder(self) -> FrameDecoder:
        """This process's decoder, created on first use inside each DataLoader worker."""
        if self._decoder is None or self._decoder.pid != os.getpid():
            self._decoder = FrameDecoder(self.backend, self.timeout_s)
            self._bad = set()
        return self._decoder

    def _rng(self, item: int) -> np.random.Generator:
        if self.train:
            # Drawn from torch's RNG: seeded per worker and epoch by the DataLoader, so
            # augmentation differs every epoch yet reproduces under torch.manual_seed.
            return np.random.default_rng([self.seed, int(torch.randint(0, 2**62, ()).item()), item])
        return np.random.default_rng([self.seed, item])

    def _indices(self, n: int, rng: np.random.Generator, clip: int) -> np.ndarray:
        """(V, T) frame indices into a video of n frames."""
        if self.train:
            idx = sample(self.method, n, rng, self.params)
            return idx[clip][None] if idx.ndim == 2 else idx[None]
        return sample_views(self.method, n, self.num_views_clips, rng, self.params)

    def load_clips(self, video: int, rng: np.random.Generator, clip: int = 0) -> np.ndarray:
        """Decoded uint8 (V, T, H, W, C) clips of one video (before spatial transforms)."""
        n = int(self.num_frames[video])
        if n <= 0:
            raise DecodeError(f"{self.path(video)} has no frames")
        size = output_size(int(self.widths[video]), int(self.heights[video]), self.decode_short)
        decoder = self.decoder()
        hints = {"size": size, "expected_frames": n, "keyframe_interval": float(self.keyframe_intervals[video]) or None}
        if self.short_video == "augment" and n < self.needed:
            # 001: lengthen the whole (short) video first, then sample from the longer sequence.
            pool = augment_short(decoder.read(self.path(video), np.arange(n), **hints), self.needed)
            return pool[self._indices(len(pool), rng, clip)]
        idx = self._indices(n, rng, clip)
        frames = decoder.read(self.path(video), idx.reshape(-1), **hints)
        return frames.reshape(*idx.shape, *frames.shape[1:])

    def __getitem__(self, item: int) -> dict[str, Any]:
        if not 0 <= item < len(self):
            raise IndexError(item)
        video, clip = divmod(item, self.expand)
        rng = self._rng(item)
        self.decoder()  # in a fresh worker: a new decoder and an empty set of known-bad videos
        failed: list[str] = []
        for _ in range(self.max_retries + 1):
            if video not in self._bad:
                try:
                    clips = self.load_clips(video, rng, clip)
                    break
                except DecodeError as exc:
                    log.warning("skipping a video that failed to decode: %s (%s)", self.path(video), exc)
                    self._bad.add(video)
            failed.append(str(self.path(video)))
            video, clip = int(rng.integers(self.num_videos)), int(rng.integers(self.expand))
        else:
            raise HarpError(f"{len(failed)} videos in a row failed to decode; first ones: {', '.join(failed[:5])}")
        views: list[torch.Tensor] = []
        flipped = False
        for c in clips:
            out, flipped = self.transform(torch.from_numpy(np.ascontiguousarray(c)), rng)
            views.extend(out)
        label = int(self.labels[video])
        if flipped:
            label = self.flip_swap.get(label, label)
        tensor = views[0] if len(views) == 1 else torch.stack(views)
        return {"video": tensor, "label": label, "index": video, "skipped": len(failed), "failed": ";".join(failed)}
