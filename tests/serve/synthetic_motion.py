"""Synthetic motion clips with the moving object's mask, for checking where explanations put heat.

``harp.data.synthetic.render_clip`` is pure in its Generator; rendering the same clip twice, over a
scene and over that scene shifted by a colour of zero luma, draws the same object (the object's
colour is chosen against the scene's mean luma, which the shift leaves as it is), the same noise
and the same shake. Pixels that agree in both renders are the object's; the rest is background.
"""
from __future__ import annotations

import numpy as np

from harp.data.synthetic import make_scene, render_clip

CLASSES = ("move_left", "move_right", "move_up", "move_down")
SIZE, FRAMES = 32, 8
# A background shift with no luma (0.299 R + 0.587 G + 0.114 B = 0).
_CHROMA = np.array([40.0, -20.0, -(0.299 * 40.0 - 0.587 * 20.0) / 0.114], dtype=np.float32)


def _render(label: int, seed: int, size: int = SIZE, frames: int = FRAMES, shift: np.ndarray | None = None) -> np.ndarray:
    scene = make_scene(np.random.default_rng([seed, 1]), size)
    return render_clip(CLASSES[label], np.random.default_rng([seed, 2]), size, frames, scene=scene if shift is None else scene + shift)


def clip_and_mask(label: int, seed: int, size: int = SIZE, frames: int = FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (T, S, S, 3) clip of ``CLASSES[label]`` and bool (T, S, S): where the moving object is."""
    clip = _render(label, seed, size, frames)
    twin = _render(label, seed, size, frames, shift=_CHROMA)
    diff = np.abs(twin.astype(np.int16) - clip.astype(np.int16))
    return clip, (diff[..., 0] < 10) & (diff[..., 1] < 10)


def clips(seeds: range | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(clips (N, T, S, S, 3), labels (N,)): the clips of ``batch`` without their masks, at half
    the cost (no twin render), for training."""
    labels = np.array([s % len(CLASSES) for s in seeds], dtype=np.int64)
    return np.stack([_render(int(label), s) for label, s in zip(labels, seeds)]), labels


def batch(seeds: range | list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clips (N, T, S, S, 3), labels (N,), masks (N, T, S, S)); the label of seed s is s mod 4."""
    items = [clip_and_mask(s % len(CLASSES), s) for s in seeds]
    labels = np.array([s % len(CLASSES) for s in seeds], dtype=np.int64)
    return np.stack([c for c, _ in items]), labels, np.stack([m for _, m in items])
