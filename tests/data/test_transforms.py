"""Clip-consistent transforms and the on-device conversion to model input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harp.data.transforms import ClipTransform, hflip, resize_short_side, three_crops, to_model_input


def _static_clip(t=6, h=48, w=64) -> torch.Tensor:
    frame = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return frame.expand(t, h, w, 3).contiguous()


@pytest.mark.parametrize("seed", range(8))
def test_train_transform_is_the_same_for_every_frame(seed):
    tf = ClipTransform(frame_size=32, train=True, resize_short=40, jitter=0.3)
    (out,), _ = tf(_static_clip(), np.random.default_rng(seed))
    assert out.shape == (6, 32, 32, 3) and out.dtype == torch.uint8
    assert (out == out[0]).all(), "one crop / flip / jitter for the whole clip"


def test_flip_is_a_mirror_of_the_same_crop():
    clip = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (4, 40, 50, 3), dtype=np.uint8))
    with_flip = ClipTransform(frame_size=24, train=True, resize_short=40)
    no_flip = ClipTransform(frame_size=24, train=True, resize_short=40, flip=False)
    flips = 0
    for seed in range(20):
        (a,), flipped = with_flip(clip, np.random.default_rng(seed))
        (b,), was = no_flip(clip, np.random.default_rng(seed))
        assert not was
        assert torch.equal(a, hflip(b) if flipped else b)
        flips += flipped
    assert 0 < flips < 20


def test_test_time_crops():
    clip = _static_clip(h=60, w=80)
    (centre,), flipped = ClipTransform(frame_size=32, train=False, resize_short=36)(clip, np.random.default_rng(0))
    assert centre.shape == (6, 32, 32, 3) and not flipped
    crops, _ = ClipTransform(frame_size=32, train=False, resize_short=36, num_crops=3)(clip, np.random.default_rng(0))
    assert len(crops) == 3 and all(c.shape == (6, 32, 32, 3) for c in crops)
    resized = resize_short_side(clip, 32)
    assert resized.shape[1:3] == (32, 43)
    assert torch.equal(crops[0], resized[:, :, :32]) and torch.equal(crops[2], resized[:, :, -32:])
    assert len(three_crops(clip.transpose(1, 2), 32)) == 3  # portrait: crops along the height


def test_to_model_input_flattens_views_and_normalises():
    clip = torch.zeros(2, 3, 4, 8, 8, 3, dtype=torch.uint8)  # (B, V, T, H, W, C)
    clip[..., 0] = 255
    x = to_model_input(clip, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    assert x.shape == (6, 3, 4, 8, 8) and x.dtype == torch.float32 and x.is_contiguous()
    assert torch.allclose(x[:, 0], torch.ones(())) and torch.allclose(x[:, 1], torch.full((), -2.0))
    single = to_model_input(clip[0, 0], (0.0,) * 3, (1.0,) * 3)
    assert single.shape == (1, 3, 4, 8, 8)
