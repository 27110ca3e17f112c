"""A map-style torch Dataset of video clips, composed from small pieces as PyTorchVideo's are:
the videos (``VideoTable``), which frames make an item (``FrameSampler``), the spatial transform
(``ClipTransform``) and the decoder settings (``DecodeSettings``). The dataset decodes only the
sampled frames at reduced resolution, applies the transform and survives bad files.

Each item is a dict (collated into the batch dict the training loop reads):

- ``video``: uint8 ``(T, H, W, C)``, or ``(V, T, H, W, C)`` with V = clips x crops > 1 at test time;
- ``label``: int (after a label-swapping horizontal flip, the swapped label);
- ``index``: the row of the video table (the split's manifest rows) the clip came from;
- ``skipped``: how many files failed to decode before this sample succeeded (0 normally);
- ``failed``: those files' paths joined with ``;`` (``""`` normally).

Randomness: an item is addressed by an ``ItemKey(seed, epoch, index)`` (the training loop's
``EpochSampler``) or a plain index (epoch 0 of seed 0); every random choice made for it comes from
one numpy Generator derived from the key and ``seed`` (``harp.data.determinism.item_rng``), never
from torch's global RNG. The same key gives the same clip in any process, with any number of
loader workers.

A file that fails is logged on the ``harp.data`` logger, remembered by the worker (so it is not
retried every epoch), and replaced by another random video of the split (drawn from the item's
Generator); ``harp.data.loader.check_skip_budget`` turns the per-epoch counts into a loud failure
past ``data.max_bad_fraction``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from harp.data.decode import DecodeError, FrameDecoder, output_size
from harp.data.determinism import ItemKey, as_key, item_rng
from harp.data.sampling import FrameSampler
from harp.data.short_video import augment_short
from harp.data.transforms import ClipTransform
from harp.data.video_table import VideoTable
from harp.errors import HarpError

log = logging.getLogger("harp.data")


@dataclass(frozen=True)
class DecodeSettings:
    """Which decoder reads the videos and how long one read may take before PyAV takes over."""

    backend: str = "pyav"
    timeout_s: float = 20.0

    def open(self) -> FrameDecoder:
        return FrameDecoder(self.backend, float(self.timeout_s))


class VideoClipDataset(Dataset):
    """Clips of the videos in ``videos`` (see the module docstring for the items and their seeding).

    ``flip_swap`` maps a label to the label of its mirror image (applied when the transform
    flipped the clip); ``seed`` (``data.seed``) enters every item's Generator; ``max_retries`` is
    how many replacement videos an item tries after a file fails to decode.
    """

    def __init__(
        self,
        videos: VideoTable,
        sampler: FrameSampler,
        transform: ClipTransform,
        *,
        decode: DecodeSettings | None = None,
        flip_swap: Mapping[int, int] | None = None,
        seed: int = 0,
        max_retries: int = 10,
    ) -> None:
        if not len(videos):
            raise HarpError("a VideoClipDataset needs at least one video")
        if sampler.train != transform.train:
            raise HarpError(f"a training sampler needs a training transform (sampler train={sampler.train}, transform train={transform.train})")
        self.videos = videos
        self.sampler = sampler
        self.transform = transform
        self.decode_short = transform.decode_short_side  # decode straight at the size the transform starts from
        self.decode = decode or DecodeSettings()
        self.flip_swap = dict(flip_swap or {})
        self.seed, self.max_retries = int(seed), int(max_retries)
        self.class_names = list(videos.class_names)
        self._decoder: FrameDecoder | None = None
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.videos) * self.sampler.clips_per_video

    @property
    def num_videos(self) -> int:
        return len(self.videos)

    def path(self, video: int) -> Path:
        return self.videos.path(video)

    def decoder(self) -> FrameDecoder:
        """This process's decoder, created on first use inside each DataLoader worker (a decoder
        must never cross a fork), with an empty set of known-bad videos."""
        if self._decoder is None or self._decoder.pid != os.getpid():
            self._decoder = self.decode.open()
            self._bad = set()
        return self._decoder

    def load_clips(self, video: int, rng: np.random.Generator, clip: int = 0) -> np.ndarray:
        """Decoded uint8 (V, T, H, W, C) clips of one video (before spatial transforms)."""
        n = int(self.videos.frames[video])
        if n <= 0:
            raise DecodeError(f"{self.path(video)} has no frames")
        size = output_size(int(self.videos.widths[video]), int(self.videos.heights[video]), self.decode_short)
        decoder = self.decoder()
        hints: dict[str, Any] = {"size": size, "expected_frames": n, "keyframe_interval": self.videos.keyframe_interval(video)}
        needed = self.sampler.frames_needed
        if self.sampler.lengthen_short and n < needed:
            # Kaur: lengthen the whole (short) video first, then sample from the longer sequence.
            pool = augment_short(decoder.read(self.path(video), np.arange(n), **hints), needed)
            return pool[self.sampler.clips(len(pool), rng, clip)]
        idx = self.sampler.clips(n, rng, clip)
        frames = decoder.read(self.path(video), idx.reshape(-1), **hints)
        return frames.reshape(*idx.shape, *frames.shape[1:])

    def __getitem__(self, item: int | ItemKey) -> dict[str, Any]:
        key = as_key(item)
        if not 0 <= key.index < len(self):
            raise IndexError(item)
        video, clip = divmod(key.index, self.sampler.clips_per_video)
        rng = item_rng(key, self.seed)
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
            video, clip = int(rng.integers(self.num_videos)), int(rng.integers(self.sampler.clips_per_video))
        else:
            raise HarpError(f"{len(failed)} videos in a row failed to decode; first ones: {', '.join(failed[:5])}")
        views: list[torch.Tensor] = []
        flipped = False
        for c in clips:
            out, flipped = self.transform(torch.from_numpy(np.ascontiguousarray(c)), rng)
            views.extend(out)
        label = int(self.videos.labels[video])
        if flipped:
            label = self.flip_swap.get(label, label)
        tensor = views[0] if len(views) == 1 else torch.stack(views)
        return {"video": tensor, "label": label, "index": video, "skipped": len(failed), "failed": ";".join(failed)}


__all__ = ["DecodeSettings", "VideoClipDataset"]
