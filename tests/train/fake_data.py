"""A deterministic in-memory stand-in for the data pipeline, for fast unit tests of the loop.

Clips follow the loader contract (uint8 (T, H, W, C), int label, per-sample ``skipped`` and
``failed``); the class is how a square's brightness changes over time, so a 3D model separates
them in a few steps. Like the real dataset, a training item is addressed by an ``ItemKey`` and its
random flip comes from the key's generator (``harp.data.determinism``). The end-to-end tests use
the real pipeline.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from harp.data.determinism import ItemKey, as_key, item_rng
from harp.train import loop, run

CLASSES = ["still", "blink", "fade_in", "fade_out"]


def render(label: int, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """A square on noise whose brightness over time gives the class (easy for any 3D model)."""
    clip = rng.integers(0, 10, size=(frames, size, size, 3), dtype=np.uint8)
    side = size // 3
    y, x = (int(v) for v in rng.integers(0, size - side, size=2))
    for t in range(frames):
        ramp = (t + 1) / frames
        level = {0: 1.0, 1: float(t % 2), 2: ramp, 3: 1.0 - ramp + 1 / frames}[label]
        clip[t, y : y + side, x : x + side] = int(230 * level)
    return clip


class FakeClips(Dataset):
    def __init__(self, n: int, frames: int, size: int, seed: int, train: bool, bad: frozenset[int] = frozenset()) -> None:
        self.n, self.frames, self.size, self.seed, self.train, self.bad = n, frames, size, seed, train, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, item: int | ItemKey) -> dict:
        key = as_key(item)
        index = key.index
        label = index % len(CLASSES)
        rng = np.random.default_rng([self.seed, index])
        clip = render(label, rng, self.frames, self.size)
        if self.train and item_rng(key, self.seed).random() < 0.5:  # keyed, like the real augmentation: exact resume must replay it
            clip = clip[:, :, ::-1].copy()
        failed = f"videos/broken_{index}.mp4" if index in self.bad else ""
        return {"video": torch.from_numpy(clip), "label": label, "skipped": int(index in self.bad), "failed": failed}


def install(monkeypatch) -> dict:
    """Route the loop's data set-up to FakeClips (the real DataLoader and samplers stay); returns a
    dict to tweak sizes / bad indices (the ``fake_data`` fixture of conftest.py)."""
    settings = {"train": 32, "val": 16, "bad": frozenset()}

    def resolve_run(cfg):
        from harp.models import resolve

        resolved = resolve(run.model_config(cfg), len(CLASSES))
        sizes = {"train": settings["train"], "val": settings["val"]}
        return run.RunData(class_names=list(CLASSES), model=resolved, frames=resolved.frames, frame_size=resolved.frame_size, split_sizes=sizes)

    def open_datasets(cfg, run):
        val = FakeClips(settings["val"], run.frames, run.frame_size, cfg.data.seed + 1, False) if settings["val"] else None
        return FakeClips(settings["train"], run.frames, run.frame_size, cfg.data.seed, True, settings["bad"]), val

    monkeypatch.setattr(loop, "resolve_run", resolve_run)
    monkeypatch.setattr(loop, "open_datasets", open_datasets)
    return settings
