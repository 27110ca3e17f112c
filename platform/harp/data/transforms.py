"""Clip-consistent spatial transforms on uint8 clips, and the on-device conversion to model input.

Every random choice (crop box, scale, flip, jitter factors) is drawn once per clip and applied to
all its frames, so motion inside a clip is never distorted. Clips stay uint8 ``(T, H, W, C)`` on
the host; ``to_model_input`` turns a batch into normalised float ``(N, C, T, H, W)`` on whatever
device it lives on.

Horizontal flips turn "moves left" into "moves right": the dataset decides per data set whether
a flip is safe, never allowed, or swaps labels (``data.flip``), and relabels flipped clips.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from harp.errors import HarpError


def resize_short_side(clip: torch.Tensor, short_side: int) -> torch.Tensor:
    """uint8 (T, H, W, C) -> uint8 with min(H, W) == short_side (aspect kept; bilinear, antialiased)."""
    h, w = clip.shape[1:3]
    if min(h, w) == short_side:
        return clip
    scale = short_side / min(h, w)
    return resize(clip, (max(1, round(h * scale)), max(1, round(w * scale))))


def resize(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, H, W, C) -> uint8 (T, size[0], size[1], C), bilinear with antialiasing.

    Resized as uint8 in channels-last layout (a THWC clip seen as NCHW is that already), which is
    torch's vectorised uint8 antialias kernel on CPU: 10-17x faster than going through float32
    (measured at 240x320 -> 112/128 px, one thread) and within one grey level of it (mean 0.13).
    It was most of a training item's cost over the raw decode (``bench/data.py --only loader``)."""
    if tuple(clip.shape[1:3]) == tuple(size):
        return clip
    x = clip.contiguous().permute(0, 3, 1, 2)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.permute(0, 2, 3, 1).contiguous()


def crop(clip: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    return clip[:, top : top + height, left : left + width, :]


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    h, w = clip.shape[1:3]
    th, tw = min(size, h), min(size, w)
    return resize(crop(clip, (h - th) // 2, (w - tw) // 2, th, tw), (size, size))


def three_crops(clip: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Test-time 3 crops: the short side resized to ``size``, then start / centre / end of the long side."""
    clip = resize_short_side(clip, size)
    h, w = clip.shape[1:3]
    if w >= h:
        boxes = [(0, left) for left in (0, (w - size) // 2, w - size)]
    else:
        boxes = [(top, 0) for top in (0, (h - size) // 2, h - size)]
    return [crop(clip, top, left, size, size) for top, left in boxes]


def hflip(clip: torch.Tensor) -> torch.Tensor:
    return clip.flip(2)


def color_jitter(clip: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """The same brightness/contrast/saturation factors on every frame of the clip."""
    x = clip.float()
    x = x * brightness
    mean = x.mean()
    x = (x - mean) * contrast + mean
    grey = (x * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
    x = (x - grey) * saturation + grey
    return x.round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class ClipTransform:
    """Training or test-time transform of one decoded clip (uint8 (T, H, W, C) torch tensor).

    Training: multi-scale crop (TSN: crop sides drawn from ``scales`` x short side, aspect within
    one step), resized to ``frame_size``; horizontal flip with probability 0.5 when ``flip``;
    colour jitter of strength ``jitter``. Test: ``resize_short`` short side then centre crop, or
    three crops along the long side (``num_crops=3``). ``resize_short`` defaults to
    ``frame_size * 8 / 7`` (128 for 112), the usual ratio of resize to crop.
    """

    frame_size: int
    train: bool
    resize_short: int | None = None
    scales: Sequence[float] = field(default_factory=lambda: (1.0, 0.875, 0.75, 0.66))
    flip: bool = True
    jitter: float = 0.0
    num_crops: int = 1

    def __post_init__(self) -> None:
        if self.num_crops not in (1, 3):
            raise HarpError(f"num_crops={self.num_crops}: use 1 (centre) or 3 (three crops)")
        self.resize_short = int(self.resize_short or round(self.frame_size * 8 / 7))

    @property
    def decode_short_side(self) -> int:
        """The short side worth decoding at: the first resize this transform would do (three test
        crops resize the short side to the crop size), so the decoder does it instead."""
        return self.frame_size if (not self.train and self.num_crops == 3) else self._short

    @property
    def _short(self) -> int:
        return int(self.resize_short or 0)  # set in __post_init__

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> tuple[list[torch.Tensor], bool]:
        """Returns the views (1, or num_crops at test time) and whether the clip was flipped."""
        if not self.train:
            if self.num_crops == 3:
                return three_crops(clip, self.frame_size), False
            return [center_crop(resize_short_side(clip, self._short), self.frame_size)], False
        clip = resize_short_side(clip, self._short)
        h, w = clip.shape[1:3]
        base = min(h, w)
        sizes = [max(1, int(base * s)) for s in self.scales]
        pairs = [(a, b) for i, a in enumerate(sizes) for j, b in enumerate(sizes) if abs(i - j) <= 1]
        ch, cw = pairs[int(rng.integers(len(pairs)))]
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out = resize(crop(clip, top, left, ch, cw), (self.frame_size, self.frame_size))
        flipped = bool(self.flip and rng.random() < 0.5)
        if flipped:
            out = hflip(out)
        if self.jitter > 0:
            b, c, s = rng.uniform(1 - self.jitter, 1 + self.jitter, size=3)
            out = color_jitter(out, float(b), float(c), float(s))
        return [out.contiguous()], flipped


def to_model_input(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (..., T, H, W, C) -> float (N, C, T, H, W), N = product of the leading dims; normalised
    with the model family's mean/std (in [0, 1] units). Runs on the tensor's device."""
    if clip.dim() < 4:
        raise ValueError(f"expected (..., T, H, W, C), got shape {tuple(clip.shape)}")
    t, h, w, c = clip.shape[-4:]
    x = clip.reshape(-1, t, h, w, c).permute(0, 4, 1, 2, 3).to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, c, 1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, c, 1, 1, 1)
    return x.sub_(m).div_(s)
