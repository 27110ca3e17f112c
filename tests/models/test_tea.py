"""TEA's inserts, computed by hand: MTA's hierarchical fragments and ME's neighbour-difference excitation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harp.models.segment import Segments
from harp.models.tea import MotionExcitation, MultipleTemporalAggregation, TEANet


def test_mta_at_init_is_the_hierarchical_spatial_conv_per_frame():
    torch.manual_seed(0)
    mta = MultipleTemporalAggregation(torch.nn.Conv2d(16, 16, 3, padding=1, bias=False), Segments(3))
    mta.reset_parameters_after_backbone()
    x = torch.randn(6, 16, 5, 5)  # 2 clips x 3 frames
    x1, x2, x3, x4 = x.split(4, dim=1)
    s = [conv.weight for conv in mta.spatial]
    o2 = F.conv2d(x2, s[0], padding=1)
    o3 = F.conv2d(x3 + o2, s[1], padding=1)
    o4 = F.conv2d(x4 + o3, s[2], padding=1)
    with torch.no_grad():
        torch.testing.assert_close(mta(x), torch.cat([x1, o2, o3, o4], dim=1), rtol=1e-5, atol=1e-5)


def test_mta_temporal_conv_mixes_neighbouring_frames_only():
    torch.manual_seed(0)
    mta = MultipleTemporalAggregation(torch.nn.Conv2d(8, 8, 3, padding=1, bias=False), Segments(4))
    with torch.no_grad():
        for conv in mta.temporal:
            conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).expand_as(conv.weight))  # out_t = in_{t-1}
    x = torch.randn(4, 8, 3, 3)
    with torch.no_grad():
        out = mta(x)
        # fragment 2 of frame t is spatial conv of fragment 2 of frame t-1 (zero for the first frame)
        expected = F.conv2d(torch.cat([torch.zeros_like(x[:1, 2:4]), x[:-1, 2:4]]), mta.spatial[0].weight, padding=1)
    torch.testing.assert_close(out[:, 2:4], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[:, :2], x[:, :2])  # the first fragment passes through


def test_mta_strided_block_pools_the_first_fragment():
    mta = MultipleTemporalAggregation(torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), Segments(2))
    x = torch.randn(2, 8, 6, 6)
    out = mta(x)
    assert out.shape == (2, 8, 3, 3)
    torch.testing.assert_close(out[:, :2], F.avg_pool2d(x[:, :2], 3, 2, 1))


def test_motion_excitation_hand_computed():
    torch.manual_seed(0)
    me = MotionExcitation(32, Segments(3), reduction=16).eval()
    with torch.no_grad():
        for bn in (me.squeeze_bn, me.expand_bn):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(6, 32, 4, 4)
    with torch.no_grad():
        f = me.squeeze_bn(me.squeeze(x)).view(2, 3, -1, 4, 4)
        moved = me.transform(f.flatten(0, 1)).view(2, 3, -1, 4, 4)
        diff = torch.stack([moved[:, 1] - f[:, 0], moved[:, 2] - f[:, 1], torch.zeros_like(f[:, 2])], dim=1)
        a = torch.sigmoid(me.expand_bn(me.expand(diff.flatten(0, 1).mean(dim=(2, 3), keepdim=True))))
        torch.testing.assert_close(me(x), x + x * a, rtol=1e-5, atol=1e-5)
        # the last frame has no next frame: its attention is sigmoid(expand_bn(0)), the same for both clips
        torch.testing.assert_close(a.view(2, 3, 32)[0, 2], a.view(2, 3, 32)[1, 2])


def test_tea_base_layout():
    torch.manual_seed(0)
    tea = TEANet(num_classes=5, dropout=0.5, frames=8, depth=50)
    block = tea.layer3[2]
    assert isinstance(block.excite, MotionExcitation) and isinstance(block.conv2, MultipleTemporalAggregation)
    assert block.excite.squeeze.out_channels == 256 // 16
    assert [c.weight.shape for c in block.conv2.spatial] == [torch.Size([64, 64, 3, 3])] * 3
