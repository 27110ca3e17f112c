"""The synthetic data set: pure renderer, time-only classes, real H.264 files, determinism."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from harp.data.synthetic import CLASS_NAMES, HFLIP_SWAP, render_clip


def test_class_names_pairs_first():
    assert CLASS_NAMES[:8] == ("move_left", "move_right", "move_up", "move_down", "grow", "shrink", "rotate_cw", "rotate_ccw")
    assert len(CLASS_NAMES) == 10 and len(set(CLASS_NAMES)) == 10


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_render_clip_shape_dtype_and_purity(name):
    a = render_clip(name, np.random.default_rng(3), 40, 9)
    b = render_clip(name, np.random.default_rng(3), 40, 9)
    assert a.shape == (9, 40, 40, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b), "same seed -> same clip"
    assert not np.array_equal(a, render_clip(name, np.random.default_rng(4), 40, 9))


def _velocity(clip: np.ndarray, axis: int = 1) -> float:
    """Horizontal motion from two-frame differences: undo the camera shake (best integer roll),
    then the brightness-constancy estimate v = -sum(I_t I_x) / sum(I_x^2) over changed pixels."""
    f = clip.astype(np.float32).mean(-1)
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    total = 0.0
    for t in range(len(f) - 1):
        a, b = f[t], f[t + 1]
        a = np.roll(a, min(shifts, key=lambda s: np.abs(np.roll(a, s, (0, 1)) - b).mean()), (0, 1))
        d = b - a
        g = (np.roll(a, -1, axis) - np.roll(a, 1, axis) + np.roll(b, -1, axis) - np.roll(b, 1, axis)) / 4
        m = np.abs(d) > 30
        total += -(d * g)[m].sum() / ((g * g)[m].sum() + 1e-6)
    return total


def _single_frame_stats(frame: np.ndarray) -> tuple[float, float]:
    g = frame.astype(np.float32).mean(-1)
    saliency = np.abs(g - np.median(g)).sum(0)
    centroid = float((saliency * np.arange(g.shape[1])).sum() / saliency.sum())
    half = g.shape[1] // 2
    return centroid, float(g[:, :half].mean() - g[:, half:].mean())


def test_single_frame_is_chance_but_two_frames_separate_left_right():
    n = 80
    clips = {c: [render_clip(c, np.random.default_rng([11, i, k]), 48, 12) for i in range(n)] for k, c in enumerate(("move_left", "move_right"))}
    # Two-frame differences separate the pair.
    right = np.array([_velocity(c) > 0 for c in clips["move_right"]])
    left = np.array([_velocity(c) < 0 for c in clips["move_left"]])
    assert (right.mean() + left.mean()) / 2 > 0.85
    # A single random frame does not: the best threshold on per-frame statistics, fitted on half
    # the clips, stays at chance on the other half.
    rng = np.random.default_rng(0)
    x = np.array([_single_frame_stats(c[rng.integers(len(c))]) for k in clips for c in clips[k]])
    y = np.repeat([0, 1], n)
    order = rng.permutation(2 * n)
    x, y = x[order], y[order]
    h = n
    for j in range(x.shape[1]):
        fits = [(thr, s) for thr in np.unique(x[:h, j]) for s in (1, -1)]
        thr, s = max(fits, key=lambda ts: np.mean((ts[1] * (x[:h, j] - ts[0]) > 0) == y[:h]))
        assert np.mean((s * (x[h:, j] - thr) > 0) == y[h:]) < 0.68


def test_hflip_of_move_left_moves_right():
    clip = render_clip("move_left", np.random.default_rng(2), 48, 12)
    assert _velocity(clip) < 0 < _velocity(clip[:, :, ::-1])
    assert HFLIP_SWAP["move_left"] == "move_right" and HFLIP_SWAP["rotate_cw"] == "rotate_ccw"


def test_synthesize_writes_small_h264_files_with_splits(synthetic_root, synthetic_config):
    import av

    root = synthetic_root
    classes = (root / "classes.txt").read_text().split()
    assert classes == list(CLASS_NAMES[:4])
    videos = sorted(root.glob("*/*.mp4"))
    assert len(videos) == 24
    assert all(v.stat().st_size < 300_000 for v in videos)
    with av.open(str(videos[0])) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    train = (root / "splits" / "train.txt").read_text().split()
    test = (root / "splits" / "test.txt").read_text().split()
    assert len(train) + len(test) == 24 and not set(train) & set(test)
    # Whole groups go to test: no (class, group) on both sides.
    group = lambda p: p.rsplit("_c", 1)[0]  # noqa: E731
    assert not {group(p) for p in train} & {group(p) for p in test}


def test_synthesize_is_deterministic(tmp_path, synthetic_root, synthetic_config):
    import dataclasses

    from harp.data.synthetic import synthesize

    cfg = dataclasses.replace(synthetic_config.data.synth, num_classes=2, clips_per_class=2)
    synthesize(cfg, tmp_path, progress=False, workers=1)
    name = "move_left/move_left_g01_c01.mp4"
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(tmp_path / name) == digest(synthetic_root / name)


def test_some_clips_are_short(synthetic_manifest):
    from harp.data.manifest import load_manifest

    df = load_manifest(synthetic_manifest)
    assert (df["frames"] < 16).any(), "short clips exercise short-video handling"
    assert df["frames"].max() <= 32 and set(df["fps"]) > {df["fps"].iloc[0]}
