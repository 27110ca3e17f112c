"""A temporal family learns what a single frame cannot show: move_left vs move_right.

The synthetic pair mirrors in time (toroidal motion, uniform start), so one frame of either class is
distributed the same: TSN on one frame must stay near chance, while TSM (the same network plus the
zero-parameter temporal shift) reaches well above chance in a short CPU run on the same clips.

The clips come from ``harp.data.synthetic.render_clip`` with its random shapes, colours, sensor noise
and camera shake, on a flat grey scene (the textured backgrounds with static distractors need far more
steps than a unit test can afford), every 4th rendered frame (the object moves 2.5-5 px per step at 32 px).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harp.data.synthetic import render_clip
from harp.models.spec import IMAGENET_MEAN, IMAGENET_STD
from harp.models.tsm import TSMNet
from harp.models.tsn import TSNNet

SIZE, FRAMES, STRIDE = 32, 8, 4
PAIR = ("move_left", "move_right")


def _clips(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    scene = np.full((SIZE, SIZE, 3), 127.0, dtype=np.float32)
    labels = torch.arange(count) % 2
    clips = np.stack([render_clip(PAIR[int(y)], rng, SIZE, FRAMES * STRIDE, scene=scene)[::STRIDE] for y in labels])
    x = torch.from_numpy(clips).float().div(255).permute(0, 4, 1, 2, 3)  # (B, C, T, H, W)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return (x - mean) / std, labels


@pytest.fixture
def one_thread():
    """Batches of 16 tiny clips gain nothing from a second thread and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return _clips(256, seed=1), _clips(128, seed=2)


def _train_and_test(model: torch.nn.Module, train, test, frames: slice, steps: int = 60) -> float:
    torch.manual_seed(0)
    (x, y), (xt, yt) = train, test
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (16,), generator=generator)
        loss = F.cross_entropy(model(x[idx][:, :, frames]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return float((model(xt[:, :, frames]).argmax(1) == yt).float().mean())


def _tiny(cls):
    torch.manual_seed(0)
    return cls(num_classes=2, dropout=0.0, frames=FRAMES, depth=18, width=0.25, layers=(1, 1, 1, 1))


def test_tsm_learns_direction_tsn_on_one_frame_cannot(data, one_thread):
    train, test = data
    tsm_accuracy = _train_and_test(_tiny(TSMNet), train, test, slice(None))
    tsn_accuracy = _train_and_test(_tiny(TSNNet), train, test, slice(FRAMES // 2, FRAMES // 2 + 1))
    # The same TSN on all 8 frames: averaging per-frame scores has no order either.
    tsn_all_accuracy = _train_and_test(_tiny(TSNNet), train, test, slice(None))
    assert tsm_accuracy >= 0.85, f"tsm reached only {tsm_accuracy:.2f} on move_left vs move_right"
    assert abs(tsn_accuracy - 0.5) <= 0.15, f"tsn on one frame should be near chance, got {tsn_accuracy:.2f}"
    # (one-sided: it cannot learn the direction; below chance is only its overfitting of 256 clips)
    assert tsn_all_accuracy <= 0.65, f"tsn (no temporal modelling) should not beat chance, got {tsn_all_accuracy:.2f}"
