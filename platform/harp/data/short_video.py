"""Lengthen a video that is shorter than a sampler needs, *before* sampling (Kaur, "Action
Recognition Using Vision Transformers").

Kaur pads short HMDB51 clips with, in this order and only until enough frames exist:
interpolated in-between frames (the average of two neighbours), then the reversed sequence
appended, then copies at brightness factors 0.6, 0.8, 1.2 and 1.4. Augmenting first and
sampling after gave better top-1 than the reverse (more diverse frames to sample from).

``augmented_length`` computes the resulting length without touching pixels, so the dataset can
plan; ``augment_short`` builds the frames (the dataset calls it when its ``FrameSampler`` says
``lengthen_short``). ``loop`` and ``repeat_last`` need no pixels at all: they are index mappings
(``harp.data.sampling.fit_to_length``).
"""
from __future__ import annotations

import numpy as np

BRIGHTNESS_FACTORS = (0.6, 0.8, 1.2, 1.4)


def _steps(n: int, needed: int) -> list[tuple[str, float]]:
    """The augmentation steps Kaur applies to reach ``needed`` frames from ``n``."""
    steps: list[tuple[str, float]] = []
    length = n
    if length < needed and n >= 2:
        steps.append(("interpolate", 0.0))
        length = 2 * length - 1
    if length < needed:
        steps.append(("reverse", 0.0))
        length *= 2
    base = length
    for factor in BRIGHTNESS_FACTORS:
        if length >= needed:
            break
        steps.append(("brightness", factor))
        length += base
    return steps


def augmented_length(n: int, needed: int) -> int:
    """Frames after ``augment_short`` (may still be < needed for tiny videos: samplers then loop)."""
    length = base = n
    for step, _ in _steps(n, needed):
        if step == "interpolate":
            length = base = 2 * length - 1
        elif step == "reverse":
            length = base = 2 * length
        else:  # each brightness copy repeats the sequence as it was before the first copy
            length += base
    return length


def augment_short(frames: np.ndarray, needed: int) -> np.ndarray:
    """uint8 (n, H, W, C) -> uint8 (m, H, W, C), m = augmented_length(n, needed)."""
    if len(frames) == 0:
        raise ValueError("cannot augment a video without frames")
    out = frames
    brightened = []
    for step, factor in _steps(len(frames), needed):
        if step == "interpolate":
            mid = ((out[:-1].astype(np.uint16) + out[1:]) // 2).astype(np.uint8)
            inter = np.empty((2 * len(out) - 1, *out.shape[1:]), dtype=np.uint8)
            inter[0::2], inter[1::2] = out, mid
            out = inter
        elif step == "reverse":
            out = np.concatenate([out, out[::-1]])
        else:
            brightened.append(np.clip(out.astype(np.float32) * factor, 0, 255).astype(np.uint8))
    return np.concatenate([out, *brightened]) if brightened else out
