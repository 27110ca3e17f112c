"""TSM: the shift moves exactly 1/8 of the channels one frame each way, zero-filled, on the residual branch."""
from __future__ import annotations

import pytest
import torch

from harp.models.segment import Segments
from harp.models.tsm import TemporalShift, TSMNet, temporal_shift
from harp.models.tsn import TSNNet


def _labelled(batch: int, frames: int, channels: int) -> torch.Tensor:
    """(B*T, C, 2, 2) where every value encodes (b, t, c) = 10000*(b+1) + 100*(t+1) + c."""
    b = torch.arange(batch).view(-1, 1, 1)
    t = torch.arange(frames).view(1, -1, 1)
    c = torch.arange(channels).view(1, 1, -1)
    code = (10000 * (b + 1) + 100 * (t + 1) + c).float()
    return code.reshape(batch * frames, channels, 1, 1).expand(-1, -1, 2, 2).contiguous()


@pytest.mark.parametrize("channels,fold_div", [(16, 8), (64, 8), (20, 8), (12, 4)])
def test_shift_fractions_exact_and_zero_filled(channels, fold_div):
    batch, frames = 2, 5
    x = _labelled(batch, frames, channels)
    out = temporal_shift(x, frames, fold_div).view(batch, frames, channels, 2, 2)
    src = x.view(batch, frames, channels, 2, 2)
    fold = channels // fold_div
    for t in range(frames):
        # [0, fold): from frame t+1 (one step backward in time); the last frame gets zeros.
        expected_back = src[:, t + 1, :fold] if t + 1 < frames else torch.zeros_like(src[:, t, :fold])
        torch.testing.assert_close(out[:, t, :fold], expected_back, rtol=0, atol=0)
        # [fold, 2*fold): from frame t-1 (one step forward in time); the first frame gets zeros.
        expected_fwd = src[:, t - 1, fold : 2 * fold] if t > 0 else torch.zeros_like(src[:, t, fold : 2 * fold])
        torch.testing.assert_close(out[:, t, fold : 2 * fold], expected_fwd, rtol=0, atol=0)
        # the rest stays where it is
        torch.testing.assert_close(out[:, t, 2 * fold :], src[:, t, 2 * fold :], rtol=0, atol=0)
    # Exactly the documented fractions moved: count channels whose value changed at an interior frame.
    moved = (out[:, 2] != src[:, 2]).any(dim=(0, 2, 3))
    assert int(moved.sum()) == 2 * fold
    # Nothing crosses between clips of the batch.
    assert out[0].max() < 20000 and out[1][out[1] != 0].min() > 20000


def test_shift_module_follows_the_clip_length():
    segments = Segments(4)
    shift = TemporalShift(segments)
    x = _labelled(1, 4, 8)
    torch.testing.assert_close(shift(x), temporal_shift(x, 4))
    segments.frames = 2
    torch.testing.assert_close(shift(x), temporal_shift(x, 2))


def _net(cls, **kw):
    torch.manual_seed(0)
    return cls(num_classes=3, dropout=0.0, frames=8, depth=18, width=0.25, layers=(1, 1, 1, 1), **kw).eval()


def test_tsm_is_tsn_plus_zero_parameters():
    tsm, tsn = _net(TSMNet), _net(TSNNet)
    assert list(tsm.state_dict()) == list(tsn.state_dict())
    tsn.load_state_dict(tsm.state_dict())
    clip = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        # The same weights on a static clip: the shift only mixes identical frames, except the zero-filled ends.
        static = clip[:, :, :1].expand(-1, -1, 8, -1, -1)
        assert not torch.allclose(tsm.segment_logits(clip), tsn.segment_logits(clip))
        torch.testing.assert_close(tsm.segment_logits(static)[:, 3:5], tsn.segment_logits(static)[:, 3:5], rtol=1e-4, atol=1e-5)


def test_residual_shift_receptive_field_grows_one_frame_per_block():
    """Four residual blocks (one per stage), each shifting by one frame: frame 0 reaches frames 0..4 only."""
    tsm, tsn = _net(TSMNet), _net(TSNNet)
    clip = torch.randn(1, 3, 8, 32, 32)
    bumped = clip.clone()
    bumped[:, :, 0] += 1.0
    with torch.no_grad():
        changed = (tsm.segment_logits(bumped) - tsm.segment_logits(clip)).abs().amax(dim=-1)[0]
        changed_tsn = (tsn.segment_logits(bumped) - tsn.segment_logits(clip)).abs().amax(dim=-1)[0]
    assert bool((changed[:5] > 1e-7).all()) and bool((changed[5:] == 0).all())
    assert bool(changed_tsn[0] > 1e-7) and bool((changed_tsn[1:] == 0).all())


def test_tsm_identity_path_is_unshifted():
    """In a block, only the residual branch is shifted: the block input also reaches the output unshifted."""
    tsm = _net(TSMNet)
    block = tsm.layer1[0]
    assert isinstance(block.residual, TemporalShift)
    tsm.segments.frames = 4
    x = torch.randn(4, 16, 8, 8).clamp_min(0)
    with torch.no_grad():
        torch.nn.init.zeros_(block.bn2.weight)
        torch.nn.init.zeros_(block.bn2.bias)
        torch.testing.assert_close(block(x), x)  # residual branch silenced: identity, no shift
