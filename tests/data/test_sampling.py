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
    # loop: the frames a looped playback gives, in temporal order (never back to the start mid-clip)
    assert fit_to_length(idx, 5, "loop").tolist() == [0, 0, 1, 1, 2, 2, 3, 4]
    assert fit_to_length(idx, 5, "repeat_last").tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    p = _params(False, "repeat_last", t=8, interval=2)
    assert sample("uniform", 5, np.random.default_rng(0), p).tolist() == [0, 2, 4, 4, 4, 4, 4, 4]


def test_loop_keeps_a_short_videos_frames_in_temporal_order():
    """uniform 8 x 32 needs 225 frames; on 180 the looped frames 192 and 224 are 12 and 44, and they
    come where they belong in time instead of after frame 160."""
    p = SamplingParams(num_frames=8, interval=32, train=False, short="loop")
    assert sample("uniform", 180, np.random.default_rng(0), p).tolist() == [0, 12, 32, 44, 64, 96, 128, 160]
    views = sample_views("uniform", 180, 3, np.random.default_rng(0), p)
    assert (np.diff(views, axis=1) >= 0).all()
    clips = sample("multi_clip", 10, np.random.default_rng(0), SamplingParams(num_frames=16, num_clips=2, train=True))
    assert clips.shape == (2, 16) and (np.diff(clips, axis=1) >= 0).all()


@pytest.mark.parametrize("method", list(FRAME_SAMPLERS))
@pytest.mark.parametrize("short", ["loop", "repeat_last"])
def test_every_sampler_keeps_temporal_order_on_short_videos(method, short):
    p = SamplingParams(num_frames=8, interval=4, num_clips=3, train=True, short=short, segment_frames=2)
    for n in (1, 3, 7, 20):
        for seed in range(5):
            for idx in (sample(method, n, np.random.default_rng(seed), p), sample_views(method, n, 2, np.random.default_rng(seed), p)):
                assert idx.min() >= 0 and idx.max() < n
                if method == "segment_frames":  # in order within each segment; segments start in order
                    segments = idx.reshape(-1, 4, 2)
                    assert (np.diff(segments, axis=2) >= 0).all() and (np.diff(segments[..., 0], axis=1) >= 0).all(), (n, idx)
                else:
                    assert (np.diff(idx.reshape(-1, 8), axis=1) >= 0).all(), (method, n, idx)


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


def _adjacent_reference(n: int, segments: int, k: int) -> list[int]:
    """MDT's clip layout in test mode (tests/models/test_mdt.py's reference): k adjacent frames centred
    in each of ``segments`` equal parts, segment-major."""
    starts = [max(s * n // segments, (s * n // segments + (s + 1) * n // segments - k) // 2) for s in range(segments)]
    return [start + j for start in starts for j in range(k)]


def _segment_params(train: bool, segments: int, k: int) -> SamplingParams:
    return SamplingParams(num_frames=segments * k, train=train, segment_frames=k)


def test_segment_frames_test_mode_is_mdts_centred_adjacent_layout():
    idx = sample("segment_frames", 60, np.random.default_rng(0), _segment_params(False, 4, 5))
    assert idx.dtype == np.int64 and idx.tolist() == _adjacent_reference(60, 4, 5)
    assert idx.tolist()[:5] == [5, 6, 7, 8, 9] and idx.tolist()[-5:] == [50, 51, 52, 53, 54]
    for n in (40, 41, 80, 199, 1000):
        assert sample("segment_frames", n, np.random.default_rng(3), _segment_params(False, 8, 5)).tolist() == _adjacent_reference(n, 8, 5)


@pytest.mark.parametrize("n", [16, 40, 81, 300])
def test_segment_frames_training_draws_k_neighbours_inside_each_segment(n):
    segments, k = 8, 5
    p = _segment_params(True, segments, k)
    lo = np.arange(segments) * n // segments
    hi = (np.arange(segments) + 1) * n // segments
    starts_seen = set()
    for seed in range(40):
        idx = sample("segment_frames", n, np.random.default_rng(seed), p).reshape(segments, k)
        starts = idx[:, 0]
        assert ((starts >= lo) & (starts <= np.maximum(lo, hi - k))).all(), "each start inside its own segment"
        steps = np.diff(idx, axis=1)
        if n >= segments * k:
            assert (steps == 1).all(), "consecutive frames within a segment"
            assert (idx[:, -1] < hi).all(), "a segment's frames stay in the segment"
        else:
            assert ((steps == 0) | (steps == 1)).all() and idx.max() <= n - 1, "a short video holds its last frame"
        starts_seen.add(starts.tobytes())
    assert (len(starts_seen) > 1) == bool((hi - k > lo).any()), "random starts wherever a segment has room"


def test_segment_frames_short_video_clamps_and_never_wraps():
    idx = sample("segment_frames", 7, np.random.default_rng(0), _segment_params(True, 4, 5)).reshape(4, 5)
    assert idx.tolist() == [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [3, 4, 5, 6, 6], [5, 6, 6, 6, 6]]
    assert sample("segment_frames", 1, np.random.default_rng(0), _segment_params(True, 2, 3)).tolist() == [0] * 6


def test_segment_frames_views_shift_each_segments_start():
    p = _segment_params(False, 4, 5)
    views = sample_views("segment_frames", 200, 3, np.random.default_rng(0), p)
    assert views.shape == (3, 20)
    one = sample_views("segment_frames", 200, 1, np.random.default_rng(0), p)
    assert one[0].tolist() == _adjacent_reference(200, 4, 5), "one view is the test sample"
    blocks = views.reshape(3, 4, 5)
    assert (np.diff(blocks, axis=2) == 1).all()
    assert (np.diff(blocks[:, :, 0], axis=0) > 0).all(), "the views' starts move forward inside every segment"
    lo = np.arange(4) * 50
    assert ((blocks[:, :, 0] >= lo) & (blocks[:, :, -1] < lo + 50)).all()


def test_frame_sampler_builds_segment_frames_from_the_config_words():
    from harp.data.sampling import FrameSampler

    train = FrameSampler.build("segment_frames", num_frames=80, segment_frames=5, train=True)
    assert train.notation() == "segment_frames:5x1x16" and train.frames_needed == 80
    assert train.clips(300, np.random.default_rng(0)).shape == (1, 80)
    test = FrameSampler.build("segment_frames", num_frames=80, segment_frames=5, train=False, test_clips=10)
    assert test.clips(300, np.random.default_rng(0)).shape == (10, 80)
    with pytest.raises(ValueError, match="multiple of segment_frames=5"):
        FrameSampler.build("segment_frames", num_frames=16, segment_frames=5)
