"""Every sampler's index properties, without any video."""
from __future__ import annotations

import numpy as np
import pytest

from harp.config.schema import SamplingMethod
from harp.data.sampling import FRAME_SAMPLERS, SamplingParams, fit_to_length, frames_needed, sample, sample_views
from harp.data.short_video import augment_short, augmented_length

LENGTHS = (1, 5, 16, 33, 64, 175, 1000)


def _params(train: bool, short: str = "loop", **kw) -> SamplingParams:
    return SamplingParams(num_frames=kw.pop("t", 8), interval=kw.pop("interval", 4), num_clips=kw.pop("clips", 3), train=train, short=short)


def test_sampler_names_match_config():
    assert tuple(FRAME_SAMPLERS) == tuple(SamplingMethod)


@pytest.mark.parametrize("method", list(FRAME_SAMPLERS))
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("short", ["loop", "repeat_last"])
def test_bounds_count_order(method, n, train, short):
    p = _params(train, short)
    for seed in range(5):
        idx = sample(method, n, np.random.default_rng(seed), p)
        shape = (p.num_clips, p.num_frames) if method == "multi_clip" else (p.num_frames,)
        assert idx.shape == shape and idx.dtype == np.int64
        assert idx.min() >= 0 and idx.max() < n
        if n >= frames_needed(method, p):
            rows = idx.reshape(-1, p.num_frames)
            assert (np.diff(rows, axis=1) > 0).all(), "strictly increasing within a clip on long-enough videos"
            if method == "random":
                assert len(set(idx.tolist())) == p.num_frames


@pytest.mark.parametrize("method", list(FRAME_SAMPLERS))
def test_deterministic_by_seed_and_test_mode_fixed(method):
    n = 300
    a = sample(method, n, np.random.default_rng(7), _params(True))
    b = sample(method, n, np.random.default_rng(7), _params(True))
    assert np.array_equal(a, b)
    draws = {sample(method, n, np.random.default_rng(s), _params(True)).tobytes() for s in range(20)}
    assert len(draws) > 1, "training draws vary with the seed"
    tests = {sample(method, n, np.random.default_rng(s), _params(False)).tobytes() for s in range(20)}
    assert len(tests) == 1, "test mode does not depend on the random generator"


def test_uniform_and_dense_are_centred_in_test():
    p = _params(False, t=8, interval=4)
    idx = sample("uniform", 101, np.random.default_rng(0), p)
    assert np.all(np.diff(idx) == 4) and idx[0] == (101 - 29) // 2
    idx = sample("dense", 100, np.random.default_rng(0), p)
    assert np.all(np.diff(idx) == 1) and idx[0] == 46


def test_equidistant_covers_every_segment():
    n, t = 160, 8
    for train in (True, False):
        idx = sample("equidistant", n, np.random.default_rng(1), _params(train, t=t))
        assert np.array_equal(idx // (n // t), np.arange(t)), "one frame per segment"
    assert np.array_equal(sample("equidistant", n, np.random.default_rng(0), _params(False, t=t)), np.arange(t) * 20 + 10)


def test_multi_clip_spreads_disjoint_clips_and_overlaps_only_when_short():
    p = _params(True, t=16, clips=5)
    idx = sample("multi_clip", 200, np.random.default_rng(0), p)
    assert idx.shape == (5, 16)
    assert (idx[1:, 0] > idx[:-1, -1]).all(), "disjoint, in order"
    assert idx[0, 0] < 40 and idx[-1, -1] >= 160, "spread over the whole video"
    short = sample("multi_clip", 50, np.random.default_rng(0), _params(False, t=16, clips=5))
    assert short[0, 0] == 0 and short[-1, -1] == 49


def test_segment_stride_takes_every_kth_frame_inside_a_segment():
    p = _params(True, t=8, interval=3)
    starts = set()
    for seed in range(50):
        idx = sample("segment_stride", 300, np.random.default_rng(seed), p)
        assert np.all(np.diff(idx) == 3) and idx[-1] < 300
        starts.add(int(idx[0]))
    assert max(starts) - min(starts) > 150, "random segment over the whole video"


@pytest.mark.parametrize("method", list(FRAME_SAMPLERS))
def test_sample_views_gives_n_distinct_clips(method):
    p = _params(False, t=8, interval=2)
    views = sample_views(method, 240, 4, np.random.default_rng(0), p)
    assert views.shape == (4, 8) and views.min() >= 0 and views.max() < 240
    assert len({v.tobytes() for v in views}) == 4
    assert np.array_equal(views, sample_views(method, 240, 4, np.random.default_rng(9), p))
    one = sample_views(method, 240, 1, np.random.default_rng(0), p)
    assert one.shape == (1, 8)


def test_short_modes_map_indices():
    idx = np.arange(8)
    assert fit_to_length(idx, 5, "loop").tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert fit_to_length(idx, 5, "repeat_last").tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    p = _params(False, "repeat_last", t=8, interval=2)
    assert sample("uniform", 5, np.random.default_rng(0), p).tolist() == [0, 2, 4, 4, 4, 4, 4, 4]


def test_augment_short_interpolates_then_reverses_then_brightens():
    frames = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (0, 100, 200)])
    out = augment_short(frames, 5)  # interpolation alone reaches 5
    assert out[:, 0, 0, 0].tolist() == [0, 50, 100, 150, 200]
    out = augment_short(frames, 8)  # + reversal
    assert out[:, 0, 0, 0].tolist() == [0, 50, 100, 150, 200, 200, 150, 100, 50, 0]
    out = augment_short(frames, 15)  # + brightness x0.6
    assert len(out) == 20 and out[10:, 0, 0, 0].tolist() == [0, 30, 60, 90, 120, 120, 90, 60, 30, 0]
    out = augment_short(frames, 45)  # + 0.8, 1.2, 1.4 (clipped at 255)
    assert len(out) == 50 and out[-10:, 0, 0, 0].max() == 255
    for n in (1, 2, 3, 7, 15):
        for needed in (8, 16, 32, 256):
            assert len(augment_short(np.zeros((n, 1, 1, 3), np.uint8), needed)) == augmented_length(n, needed)
