"""TEA's inserts, computed by hand: MTA's hierarchical fragments and ME's neighbour-difference excitation,
as the reference code (Phoenix1327/tea-action-recognition, ops/tea50_8f.py) computes them."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harp.models.segment import Segments
from harp.models.tea import MotionExcitation, MultipleTemporalAggregation, TEANet


def _bn(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode batch norm by hand."""
    shape = (1, -1, 1, 1)
    return (x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def _randomise_norms(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)


def _shift(x: torch.Tensor, frames: int, step: int) -> torch.Tensor:
    """``out_t = in_{t+step}`` within each clip of ``(B*T, C, H, W)`` features, zeros past the ends."""
    clips = x.view(-1, frames, *x.shape[1:])
    out = torch.zeros_like(clips)
    if step > 0:
        out[:, :-step] = clips[:, step:]
    else:
        out[:, -step:] = clips[:, :step]
    return out.flatten(0, 1)


def test_mta_at_init_is_the_hierarchical_spatial_conv_per_frame():
    """Fragments 1-3: conv + own BN + ReLU, chained; the last fragment: its shift (half from t+1, half from t-1)."""
    torch.manual_seed(0)
    mta = MultipleTemporalAggregation(torch.nn.Conv2d(16, 16, 3, padding=1, bias=False), Segments(3)).eval()
    _randomise_norms(mta)
    x = torch.randn(6, 16, 5, 5)  # 2 clips x 3 frames
    x1, x2, x3, x4 = x.split(4, dim=1)
    s, n = [conv.weight for conv in mta.spatial], list(mta.norm)
    o1 = F.relu(_bn(F.conv2d(x1, s[0], padding=1), n[0]))
    o2 = F.relu(_bn(F.conv2d(x2 + o1, s[1], padding=1), n[1]))
    o3 = F.relu(_bn(F.conv2d(x3 + o2, s[2], padding=1), n[2]))
    o4 = torch.cat([_shift(x4[:, :2], 3, +1), _shift(x4[:, 2:], 3, -1)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(mta(x), torch.cat([o1, o2, o3, o4], dim=1), rtol=1e-5, atol=1e-5)


def test_mta_temporal_conv_mixes_neighbouring_frames_only():
    torch.manual_seed(0)
    mta = MultipleTemporalAggregation(torch.nn.Conv2d(8, 8, 3, padding=1, bias=False), Segments(4)).eval()
    with torch.no_grad():
        for conv in mta.temporal:
            conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).expand_as(conv.weight))  # out_t = in_{t-1}
    x = torch.randn(4, 8, 3, 3)
    with torch.no_grad():
        out = mta(x)
        # fragment 1 of frame t is relu(bn(spatial conv of fragment 1 of frame t-1)) (zero input for the first frame)
        previous = torch.cat([torch.zeros_like(x[:1, :2]), x[:-1, :2]])
        expected = F.relu(_bn(F.conv2d(previous, mta.spatial[0].weight, padding=1), mta.norm[0]))
    torch.testing.assert_close(out[:, :2], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[:, 6:], torch.cat([torch.zeros_like(x[:1, 6:]), x[:-1, 6:]]))  # the last fragment: its temporal conv only


def test_mta_strided_block_pools_the_last_fragment():
    mta = MultipleTemporalAggregation(torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), Segments(2))
    x = torch.randn(2, 8, 6, 6)
    out = mta(x)
    assert out.shape == (2, 8, 3, 3)
    shifted = torch.cat([_shift(x[:, 6:7], 2, +1), _shift(x[:, 7:8], 2, -1)], dim=1)
    torch.testing.assert_close(out[:, 6:], F.avg_pool2d(shifted, 3, 2, 1))


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
        # the reference's centred gate: x + x * (sigmoid(a) - 0.5)
        torch.testing.assert_close(me(x), x + x * (a - 0.5), rtol=1e-5, atol=1e-5)
        # the last frame has no next frame: its attention is sigmoid(expand_bn(0)), the same for both clips
        torch.testing.assert_close(a.view(2, 3, 32)[0, 2], a.view(2, 3, 32)[1, 2])


def test_motion_excitation_with_a_zero_gate_is_the_identity():
    """sigmoid(0) - 0.5 = 0: with the expand BN at zero (a = 0 everywhere) ME passes its input unchanged."""
    me = MotionExcitation(32, Segments(2)).eval()
    with torch.no_grad():
        me.expand_bn.weight.zero_()
        me.expand_bn.bias.zero_()
    x = torch.randn(4, 32, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(me(x), x)


def test_tea_base_layout():
    torch.manual_seed(0)
    tea = TEANet(num_classes=5, dropout=0.5, frames=8, depth=50)
    block = tea.layer3[2]
    assert isinstance(block.excite, MotionExcitation) and isinstance(block.conv2, MultipleTemporalAggregation)
    assert block.excite.squeeze.out_channels == 256 // 16
    assert [c.weight.shape for c in block.conv2.spatial] == [torch.Size([64, 64, 3, 3])] * 3
    assert [n.num_features for n in block.conv2.norm] == [64] * 3 and len(block.conv2.temporal) == 4
    assert isinstance(block.bn2, torch.nn.Identity) and not block.conv2_norm  # MTA normalises its own fragments
    assert "layer3.2.bn2.weight" not in tea.state_dict()
    assert tea.layer1[0].conv2.stage and not tea.layer1[1].conv2.stage  # Res2Net's 'stage' block: the first of a stage


def _res2net_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our TEA's state dict under the reference code's names (Res2Net Bottle2neck + TEA's me/shifts), random values."""
    renames = (("conv2.spatial.", "convs."), ("conv2.norm.", "bns."), ("conv2.temporal.", "shifts."), ("excite.squeeze_bn.", "me.bn1."),
               ("excite.squeeze.", "me.conv1."), ("excite.transform.", "me.conv2."), ("excite.expand_bn.", "me.bn3."),
               ("excite.expand.", "me.conv3."))
    state = {}
    generator = torch.Generator().manual_seed(3)
    for key, value in model.state_dict().items():
        for ours, theirs in renames:
            if ours in key:
                key = key.replace(ours, theirs)
                if theirs == "shifts.":
                    key = key.replace(".weight", ".conv.weight")
                break
        if value.is_floating_point():
            value = torch.rand(value.shape, generator=generator) + 0.5 if "running_var" in key else torch.randn(value.shape, generator=generator) * 0.05
        key = "new_fc." + key[3:] if key.startswith("fc.") else "base_model." + key
        state["module." + key] = value
    return state


def test_res2net_widths_and_reference_checkpoint_names_load_every_weight():
    """base_width=26 builds Res2Net-50 26w x 4s bottlenecks (104/208/416/832 channels inside); a checkpoint under the
    reference code's names (convs.i, bns.i, me.*, shifts.i.conv, module.base_model., new_fc) loads one to one."""
    from harp.models import get_family
    from harp.models.pretrained import load_pretrained

    torch.manual_seed(0)
    tea = TEANet(num_classes=5, dropout=0.0, frames=4, depth=50, base_width=26, layers=(1, 1, 1, 1)).eval()
    assert [tea.get_submodule(f"layer{i}.0.conv1").out_channels for i in (1, 2, 3, 4)] == [104, 208, 416, 832]
    assert tea.layer1[0].conv2.spatial[0].weight.shape == (26, 26, 3, 3)
    state = _res2net_state(tea)
    assert "module.base_model.layer2.0.convs.1.weight" in state and "module.base_model.layer2.0.shifts.3.conv.weight" in state
    report = load_pretrained(tea, get_family("tea"), "file:unused", state=state)
    assert report.clean and report.matched_fraction == 1.0, report.summary()
    own = tea.state_dict()
    assert torch.equal(own["layer2.0.conv2.spatial.1.weight"], state["module.base_model.layer2.0.convs.1.weight"])
    assert torch.equal(own["layer3.0.excite.expand_bn.running_var"], state["module.base_model.layer3.0.me.bn3.running_var"])


def test_res2net_checkpoint_into_torchvision_widths_says_what_to_set():
    from harp.models import get_family
    from harp.models.pretrained import PretrainedError, load_pretrained

    wide = TEANet(num_classes=5, dropout=0.0, frames=4, depth=50, base_width=26, layers=(1, 1, 1, 1))
    narrow = TEANet(num_classes=5, dropout=0.0, frames=4, depth=50, layers=(1, 1, 1, 1))
    with pytest.raises(PretrainedError, match="model.options.base_width=26"):
        load_pretrained(narrow, get_family("tea"), "res2net50", state=_res2net_state(wide))


def test_torchvision_bottleneck_bn2_becomes_the_fragment_norms():
    """The imagenet start: fragments 1-3 get conv2's diagonal blocks and bn2's slices; the last fragment's share is dropped."""
    from harp.models import get_family
    from harp.models.pretrained import load_pretrained
    from harp.models.resnet2d import build_resnet2d

    torch.manual_seed(1)
    net = build_resnet2d(50, 0.25, layers=(1, 1, 1, 1))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    tea = TEANet(num_classes=5, dropout=0.0, frames=4, depth=50, width=0.25, layers=(1, 1, 1, 1))
    report = load_pretrained(tea, get_family("tea"), "file:unused", state=net.state_dict())
    assert not report.unexpected and not report.mismatched, report.summary()
    assert not [k for k in report.missing if ".conv2.norm." in k or ".conv2.spatial." in k]
    own, src = tea.state_dict(), net.state_dict()
    c = own["layer2.0.conv2.norm.0.running_mean"].shape[0]
    for k in range(3):
        assert torch.equal(own[f"layer2.0.conv2.norm.{k}.running_mean"], src["layer2.0.bn2.running_mean"][k * c : (k + 1) * c])
        assert torch.equal(own[f"layer2.0.conv2.spatial.{k}.weight"], src["layer2.0.conv2.weight"][k * c : (k + 1) * c, k * c : (k + 1) * c])
