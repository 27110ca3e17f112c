"""I3D: inflation reproduces the 2D network on a static clip; non-local blocks are the identity at init."""
from __future__ import annotations

import math

import torch

from harp.config.schema import ModelConfig
from harp.models import build_model, get_family
from harp.models.i3d import I3DResNet, NonLocalBlock
from harp.models.i3d import convert_state_dict as i3d_convert_state_dict
from harp.models.inflate import convert_state_dict, inflate_conv_weight
from harp.models.resnet2d import build_resnet2d


def _randomise_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affines, so eval-mode features depend on every copied tensor."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


def test_inflate_conv_weight_repeats_and_divides():
    w = torch.randn(4, 3, 7, 7)
    w3 = inflate_conv_weight(w, 5)
    assert w3.shape == (4, 3, 5, 7, 7)
    for t in range(5):
        torch.testing.assert_close(w3[:, :, t], w / 5)
    torch.testing.assert_close(w3.sum(2), w)  # a constant-in-time input gives the 2D response


def test_inflated_resnet50_equals_2d_resnet50_on_a_static_clip():
    torch.manual_seed(0)
    width = 0.25
    net2d = build_resnet2d(50, width=width, num_classes=10)
    _randomise_norms(net2d)
    # float64 throughout (the 2D weights too, before inflating): in float32, 50 layers of rounding
    # (5 taps of w/5 do not sum bit-exactly to w) would blur the comparison; in double the only
    # difference left is the temporal zero padding.
    net2d.double().eval()
    net3d = I3DResNet(num_classes=10, width=width).double().eval()
    state = convert_state_dict(net2d.state_dict(), "imagenet", net3d)
    assert state["conv1.weight"].shape == (16, 3, 5, 7, 7)
    assert state["layer1.1.conv1.weight"].shape == (16, 64, 3, 1, 1)  # inflated 3x1x1
    assert state["layer1.0.conv2.weight"].shape == (16, 16, 1, 3, 3)
    result = net3d.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    frame = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    frames = 48
    clip = frame.unsqueeze(2).expand(1, 3, frames, 64, 64).contiguous()  # one frame repeated
    with torch.no_grad():
        f2 = net2d.features(frame)  # (1, 512, 2, 2)
        f3 = net3d.features(clip)  # (1, 512, 24, 2, 2): pool2 halves time
        logits2, logits3 = net2d(frame), net3d(clip)
    assert f3.shape == (1, f2.shape[1], frames // 2, *f2.shape[-2:])
    # Zero temporal padding reaches inwards by: conv1 (5x: 2 frames) + 3 inflated blocks of layer1
    # (3) = 5 input frames -> 3 after pool2 (3x, stride 2), + 2 + 3 + 1 inflated blocks of layers
    # 2-4 = 9 output frames at each end. The frames in between must equal the 2D features.
    margin = 9
    inner = f3[:, :, margin : frames // 2 - margin]
    assert inner.shape[2] == 6
    for t in range(inner.shape[2]):
        torch.testing.assert_close(inner[:, :, t], f2, rtol=1e-9, atol=1e-9)
    # ... while the padded ends do differ (the test would notice a network that ignores time).
    assert (f3[:, :, 0] - f2).abs().max() > 1e-3
    # The logits pool over all frames (ends included), so they are only close, not equal.
    assert (logits3 - logits2).abs().max() < (logits2.abs().max() + 1)


def test_imagenet_source_declares_torchvision_resnet50_and_inflation():
    for family in ("i3d", "i3d_nonlocal"):
        spec = get_family(family)
        assert spec.accepts("imagenet") and spec.convert_state_dict is i3d_convert_state_dict
        assert spec.hub_checkpoints["imagenet"].endswith("/resnet50-0676ba61.pth")
    # Paper-size I3D ResNet-50 for 400 classes: 28.04M parameters (the known I3D-R50 count);
    # the five non-local blocks add 2 x (4 x 512^2 + ...) + 3 x (4 x 1024^2 + ...) = 7.36M.
    i3d = build_model(ModelConfig(family="i3d", size="base", num_classes=400))
    nl = build_model(ModelConfig(family="i3d_nonlocal", size="base", num_classes=400))
    n_i3d = sum(p.numel() for p in i3d.parameters())
    assert n_i3d == 28_043_472
    def nl_params(c):
        return 3 * (c * c // 2 + c // 2) + (c // 2 * c + c) + 2 * c
    assert sum(p.numel() for p in nl.parameters()) - n_i3d == 2 * nl_params(512) + 3 * nl_params(1024)
    inflated = [n for n, m in i3d.named_modules() if isinstance(m, torch.nn.Conv3d) and m.kernel_size == (3, 1, 1)]
    assert len(inflated) == 3 + 2 + 3 + 1 and i3d.conv1.kernel_size == (5, 7, 7)
    assert [n for n, m in nl.named_modules() if isinstance(m, NonLocalBlock)] == [
        "layer2.1.non_local", "layer2.3.non_local", "layer3.1.non_local", "layer3.3.non_local", "layer3.5.non_local"]


def test_non_local_block_is_the_identity_at_init():
    torch.manual_seed(0)
    block = NonLocalBlock(16)
    x = torch.randn(2, 16, 4, 6, 6)
    assert torch.equal(block(x), x)  # training mode (batch statistics)
    block.eval()
    assert torch.equal(block(x), x)  # eval mode (running statistics)
    # ... and it can learn: the zero-initialised norm weight gets a gradient.
    block.train()
    (block(x) * torch.randn_like(x)).sum().backward()
    assert block.bn.weight.grad.abs().sum() > 0


def test_non_local_block_is_embedded_gaussian_attention_by_hand():
    torch.manual_seed(0)
    c, ci = 8, 4
    block = NonLocalBlock(c).eval()
    with torch.no_grad():
        block.bn.weight.fill_(1.0)
        for conv in (block.theta, block.phi, block.g, block.W):
            conv.weight.normal_()
            conv.bias.normal_()
    x = torch.randn(2, c, 3, 4, 4)
    with torch.no_grad():
        def conv1(conv, t):
            return torch.einsum("bcthw,oc->bothw", t, conv.weight[:, :, 0, 0, 0]) + conv.bias.view(1, -1, 1, 1, 1)
        sub = torch.nn.functional.max_pool3d(x, (1, 2, 2))
        q = conv1(block.theta, x).flatten(2)  # (B, C', N)
        k = conv1(block.phi, sub).flatten(2)  # (B, C', M)
        v = conv1(block.g, sub).flatten(2)
        f = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(ci), dim=-1)  # (B, N, M): rows sum to 1
        y = (f @ v.transpose(1, 2)).transpose(1, 2).reshape(2, ci, 3, 4, 4)
        z = conv1(block.W, y) / math.sqrt(1 + block.bn.eps) + x  # BN with running mean 0, var 1
        torch.testing.assert_close(block(x), z, rtol=1e-4, atol=1e-4)


def test_i3d_nonlocal_starts_as_i3d():
    torch.manual_seed(0)
    i3d = build_model(ModelConfig(family="i3d", size="tiny", num_classes=5)).eval()
    nl = build_model(ModelConfig(family="i3d_nonlocal", size="tiny", num_classes=5)).eval()
    result = nl.load_state_dict(i3d.state_dict(), strict=False)
    assert not result.unexpected_keys and all(".non_local." in k for k in result.missing_keys)
    assert len(result.missing_keys) == 5 * 12  # theta/phi/g/W weight+bias, bn weight/bias/mean/var
    clip = torch.randn(2, 3, 8, 32, 32, dtype=torch.float64)
    with torch.no_grad():  # (float64: the identity is exact, kernels downstream may differ in layout)
        torch.testing.assert_close(nl.double()(clip), i3d.double()(clip), rtol=1e-12, atol=1e-12)


def test_imagenet_source_loads_an_inflated_torchvision_file_from_the_cache(tmp_path, monkeypatch):
    # A torchvision-format ResNet-50 file (1/8 width so it is small) where torch.hub caches it.
    torch.manual_seed(0)
    net2d = build_resnet2d(50, width=0.125, num_classes=1000)
    _randomise_norms(net2d, seed=3)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(net2d.state_dict(), checkpoints / "resnet50-0676ba61.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from harp.models.pretrained import load_pretrained

    for family in ("i3d", "i3d_nonlocal"):
        # through the registry, as a sweep builds it (model.pretrained=imagenet)
        model = build_model(ModelConfig(family=family, size="tiny", num_classes=7, pretrained="imagenet"))
        state = model.state_dict()
        # every 2D conv arrived inflated (repeated over time / its length), norms copied as is
        torch.testing.assert_close(state["conv1.weight"], inflate_conv_weight(net2d.conv1.weight.detach(), 5))
        torch.testing.assert_close(state["layer1.1.conv1.weight"], inflate_conv_weight(net2d.layer1[1].conv1.weight.detach(), 3))
        torch.testing.assert_close(state["layer3.0.conv2.weight"][:, :, 0], net2d.layer3[0].conv2.weight.detach())
        torch.testing.assert_close(state["layer4.2.bn3.running_var"], net2d.layer4[2].bn3.running_var)
        # the report: 1000-way ImageNet head replaced by a fresh 7-way one; only non-local blocks missing
        report = load_pretrained(model, get_family(family), "imagenet")
        assert [k for k, _, _ in report.head_replaced] == ["fc.weight", "fc.bias"]
        assert not report.unexpected and not report.mismatched
        if family == "i3d":
            assert report.clean and report.matched_fraction == 1.0
        else:
            assert report.missing and all(".non_local." in k for k in report.missing)
            assert 0.5 < report.matched_fraction < 1.0


# ----------------------------------------------------------------------------- Kinetics-400 checkpoints

def _mmaction2_name(ours: str) -> str:
    """Our name -> the name the same tensor has in an mmaction2 I3D checkpoint (ResNet3d ConvModules,
    mmcv NonLocal3d with sub_sample=True, I3DHead)."""
    import re

    if ours.startswith("fc."):
        return "cls_head.fc_cls." + ours[3:]
    rules = (
        (r"^conv1\.weight$", "conv1.conv.weight"),
        (r"^bn1\.(.+)$", r"conv1.bn.\1"),
        (r"^(layer\d\.\d+)\.conv(\d)\.weight$", r"\1.conv\2.conv.weight"),
        (r"^(layer\d\.\d+)\.bn(\d)\.(.+)$", r"\1.conv\2.bn.\3"),
        (r"^(layer\d\.\d+)\.downsample\.0\.weight$", r"\1.downsample.conv.weight"),
        (r"^(layer\d\.\d+)\.downsample\.1\.(.+)$", r"\1.downsample.bn.\2"),
        (r"^(layer\d\.\d+)\.non_local\.theta\.(.+)$", r"\1.non_local_block.theta.conv.\2"),
        (r"^(layer\d\.\d+)\.non_local\.(phi|g)\.(.+)$", r"\1.non_local_block.\2.0.conv.\3"),
        (r"^(layer\d\.\d+)\.non_local\.W\.weight$", r"\1.non_local_block.conv_out.conv.weight"),
        (r"^(layer\d\.\d+)\.non_local\.bn\.(.+)$", r"\1.non_local_block.conv_out.bn.\2"),
    )
    for pattern, replacement in rules:
        name, n = re.subn(pattern, replacement, ours)
        if n:
            return "backbone." + name
    raise AssertionError(f"no mmaction2 name for {ours}")


def _random_checkpoint(model: torch.nn.Module, naming, classes: int = 400, seed: int = 7) -> tuple[dict, dict]:
    """A checkpoint with the real key names and random values: (their state, their name -> our name)."""
    g = torch.Generator().manual_seed(seed)
    state, ours_of = {}, {}
    for key, value in model.state_dict().items():
        if key.endswith(".non_local.W.bias"):
            continue  # mmcv's conv_out has no bias (its BN follows)
        name = naming(key)
        if key.startswith("fc."):
            value = torch.empty((classes, *value.shape[1:]) if key.endswith("weight") else (classes,))
        if value.is_floating_point():
            value = torch.rand(value.shape, generator=g) + 0.5 if "running_var" in key else torch.randn(value.shape, generator=g)
        state[name], ours_of[name] = value, key
    return state, ours_of


def test_mmaction2_nonlocal_checkpoint_lands_in_every_parameter(tmp_path, monkeypatch):
    """kinetics400 for i3d_nonlocal: mmaction2's names (backbone.conv1.conv.weight, backbone.layer1.0.conv1.conv.weight,
    ...non_local_block.phi.0.conv.weight, cls_head.fc_cls.weight), from the torch.hub cache like the other named sources."""
    from harp.models.i3d import MMACTION2_K400
    from harp.models.pretrained import load_pretrained, url_cache_path

    torch.manual_seed(0)
    model = build_model(ModelConfig(family="i3d_nonlocal", size="tiny", num_classes=5, options={"nonlocal_pool": "projection"}))
    theirs, ours_of = _random_checkpoint(model, _mmaction2_name)
    assert "backbone.layer1.0.conv1.conv.weight" in theirs and "backbone.layer2.1.non_local_block.g.0.conv.weight" in theirs
    assert theirs["cls_head.fc_cls.weight"].shape[0] == 400
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = url_cache_path(MMACTION2_K400["i3d_nonlocal"])
    cached.parent.mkdir(parents=True)
    torch.save({"meta": {"epoch": 100}, "state_dict": theirs}, cached)  # mmaction2's checkpoint layout
    report = load_pretrained(model, get_family("i3d_nonlocal"), "kinetics400")
    assert not report.missing and not report.unexpected and not report.mismatched, report.summary()
    assert [(k, tuple(a), tuple(b)) for k, a, b in report.head_replaced] == [("fc.weight", (400, 256), (5, 256)), ("fc.bias", (400,), (5,))]
    assert report.matched_fraction == 1.0
    own = model.state_dict()
    for name, value in theirs.items():
        key = ours_of[name]
        if key.startswith("fc."):
            continue
        assert own[key].shape == value.shape, key
        expected = value * math.sqrt(value.shape[0]) if ".non_local.theta." in key else value  # use_scale=False folded in
        assert torch.equal(own[key], expected.to(own[key].dtype)), (name, key)
    assert all(torch.equal(v, torch.zeros_like(v)) for k, v in own.items() if k.endswith(".non_local.W.bias"))


def test_mmaction2_nonlocal_block_computes_as_mmcv():
    """After the conversion, our block with nonlocal_pool=projection is mmcv's NonLocal3d (embedded Gaussian,
    use_scale=False, sub_sample=True: max pool after the phi/g convs), computed here by hand."""
    from harp.models.i3d import _from_mmaction2

    torch.manual_seed(0)
    c, ci = 8, 4
    theirs = {
        "backbone.layer2.1.non_local_block.theta.conv.weight": torch.randn(ci, c, 1, 1, 1),
        "backbone.layer2.1.non_local_block.theta.conv.bias": torch.randn(ci),
        "backbone.layer2.1.non_local_block.phi.0.conv.weight": torch.randn(ci, c, 1, 1, 1),
        "backbone.layer2.1.non_local_block.phi.0.conv.bias": torch.randn(ci),
        "backbone.layer2.1.non_local_block.g.0.conv.weight": torch.randn(ci, c, 1, 1, 1),
        "backbone.layer2.1.non_local_block.g.0.conv.bias": torch.randn(ci),
        "backbone.layer2.1.non_local_block.conv_out.conv.weight": torch.randn(c, ci, 1, 1, 1),
        "backbone.layer2.1.non_local_block.conv_out.bn.weight": torch.rand(c) + 0.5,
        "backbone.layer2.1.non_local_block.conv_out.bn.bias": torch.randn(c),
        "backbone.layer2.1.non_local_block.conv_out.bn.running_mean": torch.randn(c),
        "backbone.layer2.1.non_local_block.conv_out.bn.running_var": torch.rand(c) + 0.5,
    }
    converted = {k.removeprefix("layer2.1.non_local."): v for k, v in _from_mmaction2(theirs).items()}
    block = NonLocalBlock(c, pool="projection").eval()
    assert not block.load_state_dict(converted, strict=False).missing_keys
    x = torch.randn(2, c, 3, 4, 4)

    def conv(name, t):
        w, b = theirs[f"backbone.layer2.1.non_local_block.{name}.weight"], theirs.get(f"backbone.layer2.1.non_local_block.{name}.bias")
        out = torch.einsum("bcthw,oc->bothw", t, w[:, :, 0, 0, 0])
        return out if b is None else out + b.view(1, -1, 1, 1, 1)

    with torch.no_grad():
        pool = torch.nn.MaxPool3d((1, 2, 2))
        theta = conv("theta.conv", x).flatten(2).transpose(1, 2)  # (B, N, C')
        phi = pool(conv("phi.0.conv", x)).flatten(2)  # (B, C', M)
        g = pool(conv("g.0.conv", x)).flatten(2).transpose(1, 2)  # (B, M, C')
        y = (torch.softmax(theta @ phi, dim=-1) @ g).transpose(1, 2).reshape(2, ci, 3, 4, 4)  # no 1/sqrt(C') scaling
        out = conv("conv_out.conv", y)
        bn = {k: theirs[f"backbone.layer2.1.non_local_block.conv_out.bn.{k}"].view(1, -1, 1, 1, 1)
              for k in ("weight", "bias", "running_mean", "running_var")}
        out = (out - bn["running_mean"]) / torch.sqrt(bn["running_var"] + 1e-5) * bn["weight"] + bn["bias"]
        torch.testing.assert_close(block(x), x + out, rtol=1e-4, atol=1e-4)


_PTV_STAGES = {1: 1, 2: 3, 3: 4, 4: 5}  # i3d_r50: blocks.2 is the parameter-free stage-1 pool, blocks.6 the head


def _pytorchvideo_name(ours: str) -> str:
    import re

    if ours.startswith("fc."):
        return "blocks.6.proj." + ours[3:]
    if ours.startswith("conv1."):
        return "blocks.0.conv." + ours[len("conv1."):]
    if ours.startswith("bn1."):
        return "blocks.0.norm." + ours[len("bn1."):]
    m = re.match(r"^layer(\d)\.(\d+)\.(.+)$", ours)
    parts = {"conv1": "branch2.conv_a", "bn1": "branch2.norm_a", "conv2": "branch2.conv_b", "bn2": "branch2.norm_b",
             "conv3": "branch2.conv_c", "bn3": "branch2.norm_c", "downsample.0": "branch1_conv", "downsample.1": "branch1_norm"}
    rest = m.group(3)
    for mine, theirs in parts.items():
        if rest.startswith(mine + "."):
            rest = theirs + rest[len(mine):]
            break
    return f"blocks.{_PTV_STAGES[int(m.group(1))]}.res_blocks.{m.group(2)}.{rest}"


def test_pytorchvideo_i3d_r50_checkpoint_loads_through_file(tmp_path):
    """pytorchvideo's I3D_8x8_R50.pyth layout ({"model_state": {blocks.0.conv.weight, blocks.1.res_blocks.0.branch2.conv_a.weight,
    ..., blocks.6.proj.weight}}) into i3d."""
    from harp.models.pretrained import load_pretrained

    torch.manual_seed(0)
    model = build_model(ModelConfig(family="i3d", size="tiny", num_classes=5))
    theirs, ours_of = _random_checkpoint(model, _pytorchvideo_name)
    assert "blocks.3.res_blocks.0.branch1_conv.weight" in theirs and "blocks.5.res_blocks.2.branch2.norm_c.running_var" in theirs
    path = tmp_path / "I3D_8x8_R50.pyth"
    torch.save({"model_state": theirs}, path)
    report = load_pretrained(model, get_family("i3d"), f"file:{path}")
    assert not report.missing and not report.unexpected and not report.mismatched, report.summary()
    assert [k for k, _, _ in report.head_replaced] == ["fc.weight", "fc.bias"] and model.fc.out_features == 5
    own = model.state_dict()
    for name, value in theirs.items():
        if not name.startswith("blocks.6."):
            assert torch.equal(own[ours_of[name]], value), name


def test_kinetics400_is_a_named_source_of_both_i3d_families():
    from harp.models.i3d import MMACTION2_K400

    for family in ("i3d", "i3d_nonlocal"):
        spec = get_family(family)
        assert "kinetics400" in spec.pretrained_sources and spec.hub_checkpoints["kinetics400"] == MMACTION2_K400[family]
        assert spec.hub_checkpoints["kinetics400"].startswith("https://download.openmmlab.com/mmaction/")
    assert MMACTION2_K400["i3d_nonlocal"].endswith("nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb_20220812-afd8f562.pth")
