"""MDT-Net pieces, checked with numbers: deformable conv, Fourier motion salience, identity-at-init inserts."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harp.errors import ConfigError
from harp.models.deform import DeformConv2d, deform_conv2d
from harp.models.mdt import MDTNet, motion_salience
from harp.models.tsn import TSNNet

TINY = dict(depth=18, width=0.25, layers=(1, 1, 1, 1))


@pytest.mark.parametrize(
    "size,stride,padding,dilation",
    [((9, 11), 1, 1, 1), ((9, 11), 2, 1, 1), ((9, 11), 1, 2, 2), ((9, 11), 2, 0, 1), ((1, 1), 1, 1, 1), ((2, 3), 1, 2, 2)],
)
def test_deform_conv_with_zero_offsets_is_conv2d(size, stride, padding, dilation):
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, *size), torch.randn(4, 3, 3, 3), torch.randn(4)
    ref = F.conv2d(x, w, b, stride, padding, dilation)
    offset = torch.zeros(2, 18, *ref.shape[-2:])
    torch.testing.assert_close(deform_conv2d(x, offset, w, b, stride, padding, dilation), ref, rtol=1e-5, atol=1e-5)


def test_deform_conv_offsets_sample_shifted_and_interpolated_pixels():
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 9, 11), torch.randn(4, 3, 3, 3)
    right = torch.cat([x[..., 1:], torch.zeros_like(x[..., :1])], dim=-1)  # x one pixel to the right
    down = torch.cat([x[..., 1:, :], torch.zeros_like(x[..., :1, :])], dim=-2)
    for dy, dx, expected in ((0.0, 1.0, right), (1.0, 0.0, down), (0.0, 0.5, (x + right) / 2)):
        offset = torch.zeros(2, 9, 2, 9, 11)
        offset[:, :, 0], offset[:, :, 1] = dy, dx
        out = deform_conv2d(x, offset.view(2, 18, 9, 11), w, None, 1, 1, 1)
        ref = F.conv2d(expected, w, None, 1, 1)
        # away from the first row/column, where the conv's zero padding would have been sampled instead
        torch.testing.assert_close(out[..., 1:, 1:], ref[..., 1:, 1:], rtol=1e-5, atol=1e-5)


def test_deform_conv_module_starts_as_conv_and_learns_offsets():
    torch.manual_seed(0)
    layer = DeformConv2d(3, 4, 3, dilation=2)
    x = torch.randn(2, 3, 10, 10)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, None, 1, 2, 2), rtol=1e-5, atol=1e-5)
    layer(x).square().sum().backward()
    assert layer.offset.weight.grad.abs().sum() > 0  # the offsets get a gradient through grid_sample


def test_motion_salience_is_the_temporal_fourier_energy():
    torch.manual_seed(0)
    static = torch.rand(3, 1, 3, 8, 8).expand(-1, 4, -1, -1, -1)
    assert motion_salience(static).abs().max() == 0  # nothing moves: no salience
    frames = torch.zeros(1, 2, 3, 8, 8)
    frames[0, 1, :, 2:4, 5:7] = 1.0  # a patch appears in the second frame
    frames[0, 1, 0, 6, 1] = 0.5  # a fainter change, in one colour channel only
    s = motion_salience(frames)[0]
    # two frames: rfft = [x0 + x1, x0 - x1]; energy = mean_c |x0 - x1|; normalised by its maximum
    expected = (frames[0, 1] - frames[0, 0]).abs().mean(0)
    torch.testing.assert_close(s, expected / expected.max())
    assert s[2, 5] == 1 and abs(float(s[6, 1]) - 0.5 / 3) < 1e-6 and s[0, 0] == 0


def _pair():
    torch.manual_seed(0)
    mdt = MDTNet(num_classes=3, dropout=0.0, frames=8, segment_frames=2, **TINY).eval()
    tsn = TSNNet(num_classes=3, dropout=0.0, frames=4, **TINY).eval()
    missing, unexpected = tsn.load_state_dict(mdt.state_dict(), strict=False)
    assert not missing and unexpected  # MDT = TSN's parameters + its inserts
    return mdt, tsn


def _move_inserts_off_identity(mdt: torch.nn.Module) -> None:
    """As if trained: un-zero the inserts' BatchNorm scales and give the excitation weights values."""
    for module in mdt.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.fill_(1.0)
    for name, p in mdt.named_parameters():
        if "excite.1.expand" in name:
            p.normal_(0, 0.1)


def test_mdt_inserts_are_identity_at_init():
    """At init MDT equals TSN run on the salience-enhanced key frames (every learned insert is the identity)."""
    mdt, tsn = _pair()
    clip = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        key, differences = mdt.key_frames(clip)
        assert key.shape == (8, 3, 32, 32) and differences.shape == (8, 3, 32, 32)
        raw_key = clip.view(2, 3, 4, 2, 32, 32)[:, :, :, 1]  # key frame of 2-frame segments: the 2nd
        salience = motion_salience(clip.view(2, 3, 4, 2, 32, 32).permute(0, 2, 3, 1, 4, 5).flatten(0, 1))
        torch.testing.assert_close(key.view(2, 4, 3, 32, 32), raw_key.transpose(1, 2) * (1 + salience.view(2, 4, 1, 32, 32)))
        enhanced = key.view(2, 4, 3, 32, 32).transpose(1, 2)
        torch.testing.assert_close(mdt(clip), tsn(enhanced), rtol=1e-4, atol=1e-5)
    # Trained away from zero, the inserts change the output.
    with torch.no_grad():
        _move_inserts_off_identity(mdt)
        assert not torch.allclose(mdt(clip), tsn(enhanced), rtol=1e-3, atol=1e-4)


def test_mdt_temporal_modules_see_other_segments():
    """Changing one segment changes every segment's prediction (coarse difference, DCME, CE), unlike TSN."""
    mdt, tsn = _pair()
    with torch.no_grad():
        _move_inserts_off_identity(mdt)
    clip = torch.randn(1, 3, 8, 32, 32)
    bumped = clip.clone()
    bumped[:, :, 6:8] += 1.0  # the last segment only
    with torch.no_grad():
        changed = (mdt.segment_logits(bumped) - mdt.segment_logits(clip)).abs().amax(-1)[0]
    assert bool((changed > 1e-6).all())


def test_mdt_segment_frames_must_divide_the_clip():
    with pytest.raises(ConfigError, match="multiple of model.options.segment_frames"):
        MDTNet(num_classes=3, dropout=0.0, frames=9, segment_frames=2, **TINY)
    with pytest.raises(ConfigError, match="key_frame"):
        MDTNet(num_classes=3, dropout=0.0, frames=10, segment_frames=5, key_frame=5, **TINY)


def _adjacent_segments(n: int, segments: int, k: int) -> torch.Tensor:
    """The clip layout MDT reads (test mode): the video cut into ``segments`` equal parts, ``k`` adjacent frames
    centred in each, segment-major: [s0, s0+1, .., s0+k-1, s1, s1+1, ...]."""
    starts = [(s * n // segments + (s + 1) * n // segments - k) // 2 for s in range(segments)]
    return torch.tensor([start + j for start in starts for j in range(k)])


def test_mdt_reads_each_segment_as_k_adjacent_frames():
    """The paper's 5 frames per segment: frames j and j+1 of a segment are neighbouring video frames, so the fine
    differences are one-frame differences and the key frame is the segment's 4th frame; segments never mix."""
    torch.manual_seed(0)
    mdt = MDTNet(num_classes=3, dropout=0.0, frames=20, segment_frames=5, salience=False, **TINY).eval()
    n = 60
    video = torch.arange(n, dtype=torch.float32).view(1, 1, n, 1, 1).expand(1, 3, n, 8, 8)  # frame i has value i
    indices = _adjacent_segments(n, segments=4, k=5)
    assert indices.tolist()[:5] == [5, 6, 7, 8, 9] and indices.tolist()[-5:] == [50, 51, 52, 53, 54]
    clip = video[:, :, indices]
    key, differences = mdt.key_frames(clip)
    assert key.shape == (4, 3, 8, 8) and differences.shape == (4, 4 * 3, 8, 8)
    torch.testing.assert_close(key[:, 0, 0, 0], indices.view(4, 5)[:, 3].float())  # the 4th frame of each segment
    assert torch.equal(differences, torch.ones_like(differences)), "differences of neighbouring frames within a segment only"
    # With the salience on, it comes from the segment's own frames: a segment whose 5 frames are still has none.
    still = clip.clone()
    still[:, :, 5:10] = still[:, :, 5:6]
    mdt.use_salience = True
    key_still, _ = mdt.key_frames(still)
    torch.testing.assert_close(key_still[1], still[0, :, 8])  # key * (1 + 0)
    assert not torch.equal(mdt.key_frames(clip)[0][0], clip[0, :, 3])  # a moving segment is enhanced


def _clock_videos(root, frames: int = 40) -> None:
    """Two classes x two videos whose frame i is a flat grey of value 6 * i: a decoded frame tells its index."""
    import numpy as np

    from harp.data.synthetic import write_mp4

    video = np.stack([np.full((32, 32, 3), 6 * i, np.uint8) for i in range(frames)])
    for label in ("a", "b"):
        for k in range(2):
            (root / label).mkdir(parents=True, exist_ok=True)
            write_mp4(root / label / f"v{k}.mp4", video, 25, crf=0)


def _frame_indices(clip: torch.Tensor) -> list[int]:
    return [round(float(v) / 6) for v in clip.float().mean(dim=(1, 2, 3))]


def test_mdt_gets_adjacent_frames_per_segment_by_default(tmp_path, caplog):
    """The family's default sampling is segment_frames with the model's own k: every training clip the
    data pipeline builds for mdt is S segments x k neighbouring frames; test clips are the centred layout."""
    from harp.config import load_config
    from harp.data.loader import build_dataset
    from harp.train.run import resolve_run

    _clock_videos(tmp_path)
    base = [f"data.root={tmp_path}", "data.format=folder", "data.num_workers=0", "model.family=mdt", "model.size=tiny", "augment.hflip=false"]
    run = resolve_run(load_config(base))
    assert run.sampling.method == "segment_frames" and run.sampling.segment_frames == 2 and run.sampling.num_frames == 8
    cfg = load_config(base)
    train = build_dataset(cfg, "train", True, run.frames, run.frame_size, sampling=run.sampling)
    assert train.sampler.notation() == "segment_frames:2x1x4"
    for item in range(len(train)):
        idx = _frame_indices(train[item]["video"])
        pairs = [idx[i : i + 2] for i in range(0, 8, 2)]
        assert all(b - a == 1 for a, b in pairs), idx
        assert [p[0] for p in pairs] == sorted(p[0] for p in pairs) and all(s * 10 <= p[0] <= s * 10 + 8 for s, p in enumerate(pairs)), idx
    test = build_dataset(cfg, "test", False, run.frames, run.frame_size, sampling=run.sampling)
    centred = [start + j for start in (4, 14, 24, 34) for j in range(2)]  # max(lo, (lo + hi - 2) // 2), segments of 10
    assert _frame_indices(test[0]["video"]) == centred
    # another layout is allowed, but said; a k that is not the model's is refused
    with caplog.at_level("WARNING", logger="harp.train"):
        assert resolve_run(load_config([*base, "sampling.method=equidistant"])).sampling.method == "equidistant"
    assert "reads its clip as segments of 2 adjacent frames" in caplog.text
    with pytest.raises(ConfigError, match=r"sampling.segment_frames=4 but the mdt model reads segments of model.options.segment_frames=2"):
        resolve_run(load_config([*base, "sampling.segment_frames=4"]))
    # the paper's size: 16 segments x 5 frames
    big = resolve_run(load_config([*base, "model.size=base", "model.frames=80"]))
    assert (big.sampling.segment_frames, big.sampling.num_frames) == (5, 80)
