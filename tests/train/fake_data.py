"""A deterministic in-memory stand-in for the data pipeline, for fast unit tests of the loop.

Clips follow the loader contract (uint8 (T, H, W, C), int label, per-sample ``skipped`` and
``failed``); the class is how a square's brightness changes over time, so a 3D model separates
them in a few steps. The end-to-end tests use the real pipeline.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from harp.train import loop

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

    def __getitem__(self, index: int) -> dict:
        label = index % len(CLASSES)
        rng = np.random.default_rng([self.seed, index])
        clip = render(label, rng, self.frames, self.size)
        if self.train and torch.rand(()) < 0.5:  # global torch RNG: exact resume must restore it
            clip = clip[:, :, ::-1].copy()
        failed = f"videos/broken_{index}.mp4" if index in self.bad else ""
        return {"video": torch.from_numpy(clip), "label": label, "skipped": int(index in self.bad), "failed": failed}


@pytest.fixture
def fake_data(monkeypatch):
    """Route the loop's data calls to FakeClips; returns a dict to tweak sizes / bad indices."""
    return install(monkeypatch)


def install(monkeypatch) -> dict:
    settings = {"train": 32, "val": 16, "bad": frozenset()}

    def resolve_run(cfg):
        from harp.models import resolve

        resolved = resolve(loop.model_config(cfg), len(CLASSES))
        sizes = {"train": settings["train"], "val": settings["val"]}
        return loop.RunData(class_names=list(CLASSES), model=resolved, frames=resolved.frames, frame_size=resolved.frame_size, split_sizes=sizes)

    def open_datasets(cfg, run):
        val = FakeClips(settings["val"], run.frames, run.frame_size, cfg.data.seed + 1, False) if settings["val"] else None
        return FakeClips(settings["train"], run.frames, run.frame_size, cfg.data.seed, True, settings["bad"]), val

    def make_loader(dataset, batch_size, *, sampler, num_workers, drop_last=False):
        # like the real loader: persistent worker processes that keep their RNG across epochs
        extra = {"persistent_workers": True} if num_workers else {}
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last, **extra)

    monkeypatch.setattr(loop, "resolve_run", resolve_run)
    monkeypatch.setattr(loop, "open_datasets", open_datasets)
    monkeypatch.setattr(loop, "make_loader", make_loader)
    return settings
