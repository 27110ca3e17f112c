"""``i3d`` and ``i3d_nonlocal``: ResNet-50 inflated to 3D, optionally with non-local blocks
(Anh et al. 2022; Carreira & Zisserman 2017 for inflation, Wang et al. 2018 for non-local).

The I3D-ResNet-50 of the non-local paper (its Table 1):

    conv1  5x7x7, 64, stride 1,2,2          pool1 1x3x3 max, stride 1,2,2
    layer1 3 bottlenecks [3x1x1 | 1x3x3 | 1x1x1]     pool2 3x1x1 max, stride 2,1,1
    layer2 4 bottlenecks, the first 1x1 conv inflated to 3x1x1 in every other block (0, 2)
    layer3 6 bottlenecks, inflated in blocks 0, 2, 4
    layer4 3 bottlenecks, inflated in block 1
    global average pool, dropout, fc

Names are torchvision's resnet50 names (``conv1``, ``bn1``, ``layerN.M.conv1..3``, ``bnK``,
``downsample.0/1``, ``fc``) with 5D kernels, so the ``imagenet`` source is torchvision's
ResNet-50 file inflated by ``harp.models.inflate.convert_state_dict``.

The ``kinetics400`` source is mmaction2's Kinetics-400 I3D-R50 (32x2x1, 100 epochs) for ``i3d`` and
its embedded-Gaussian non-local I3D-R50 for ``i3d_nonlocal``; ``convert_state_dict`` renames their
keys (``backbone.conv1.conv``/``.bn``, ``backbone.layerN.M.convK.conv``/``.bn``,
``downsample.conv``/``.bn``, ``non_local_block.{theta,phi.0,g.0,conv_out}``, ``cls_head.fc_cls``), and
those of pytorchvideo's ``i3d_r50`` (``blocks.0.conv``/``norm``, ``blocks.S.res_blocks.M.branch2.conv_a``
..., ``branch1_conv``/``norm``, ``blocks.6.proj``; through ``file:``), into these names. Differences the
weights carry with them: mmaction2's non-local blocks do not scale the attention logits
(``use_scale=False``: theta is multiplied by sqrt(C/2) on load so the scaled softmax here equals theirs)
and max-pool after the phi/g projections (``model.options.nonlocal_pool=projection`` does the same;
the default ``input`` pools before them, as the non-local paper's code); mmaction2 trained with
temporal strides 2 in conv1 and pool1 (``model.options.conv1_stride_t=2 pool1_stride_t=2``), the
non-local paper's table has 1; pytorchvideo's I3D expects Kinetics mean/std (0.45, 0.225), mmaction2's
ImageNet's (the family's).

``i3d_nonlocal`` adds five embedded-Gaussian non-local blocks (``layerN.M.non_local``) after blocks 1, 3
of layer2 and 1, 3, 5 of layer3 (every other residual block of res3/res4): ``theta``, ``phi``, ``g``
1x1x1 convs to C/2 channels (``phi``/``g`` on a 1x2x2 max-pooled map), ``y = softmax(theta^T phi /
sqrt(C/2)) g`` (scaled dot-product attention, as the reference implementation's ``use_scale``), then
``W`` (1x1x1 conv back to C) and a BatchNorm whose weight starts at zero, so each block is the
identity at initialisation and the network starts as the (inflated) I3D.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from harp.errors import ConfigError
from harp.models.inflate import inflate_state_dict
from harp.models.resnet2d import TORCHVISION_IMAGENET, scaled
from harp.models.spec import IMAGENET_MEAN, IMAGENET_STD, BuildArgs, FamilySpec, SizePreset

__all__ = [
    "I3D", "I3D_NONLOCAL", "I3DResNet", "Bottleneck3d", "NonLocalBlock", "build_i3d", "build_i3d_nonlocal", "convert_state_dict",
    "MMACTION2_K400",
]  # fmt: skip

logger = logging.getLogger(__name__)

# Which bottleneck's conv1 is inflated to 3x1x1 (the non-local paper's I3D-ResNet-50).
INFLATE = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
# Where the five non-local blocks go (after these bottlenecks).
NONLOCAL = ((0, 0, 0), (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 0))


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block: ``z = BN(W y) + x`` with the BN weight zero-initialised."""

    def __init__(self, channels: int, inter_channels: int | None = None, subsample: bool = True, pool: str = "input") -> None:
        super().__init__()
        if pool not in ("input", "projection"):
            raise ConfigError(f"non-local pool={pool!r}: choose input (pool x before phi/g, the paper's code) or projection (mmaction2)")
        inter = inter_channels or max(1, channels // 2)
        self.inter_channels = inter
        self.theta = nn.Conv3d(channels, inter, kernel_size=1)
        self.phi = nn.Conv3d(channels, inter, kernel_size=1)
        self.g = nn.Conv3d(channels, inter, kernel_size=1)
        self.subsample = subsample
        self.pool = pool
        self.W = nn.Conv3d(inter, channels, kernel_size=1)
        self.bn = nn.BatchNorm3d(channels)
        self.reset_parameters_after_backbone()

    def reset_parameters_after_backbone(self) -> None:
        """Small 1x1x1 convs (std 0.01, as the reference) and the last norm at zero: the block is the
        identity until it learns otherwise (the backbone's generic init must not undo this)."""
        for conv in (self.theta, self.phi, self.g, self.W):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """``y`` ``(B, C/2, T, H, W)``: every position's softmax-weighted sum of ``g`` over all positions."""
        b, _, t, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)  # (B, THW, C')
        kernel = (1, min(2, h), min(2, w)) if self.subsample and (h > 1 or w > 1) else None  # 1x2x2 max pool (1 px maps stay)

        def pooled(t: torch.Tensor) -> torch.Tensor:
            return t if kernel is None else F.max_pool3d(t, kernel_size=kernel, stride=kernel)

        if self.pool == "input":  # pool x, then project (the non-local paper's code)
            sub = pooled(x)
            k, v = self.phi(sub), self.g(sub)
        else:  # project, then pool (mmaction2 / mmcv)
            k, v = pooled(self.phi(x)), pooled(self.g(x))
        k = k.flatten(2).transpose(1, 2)  # (B, T H'W', C')
        v = v.flatten(2).transpose(1, 2)
        y = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        return y.transpose(1, 2).reshape(b, self.inter_channels, t, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.W(self.attend(x))) + x


class Bottleneck3d(nn.Module):
    """torchvision's ResNet v1.5 bottleneck with 5D kernels: conv1 1x1x1 or 3x1x1 (inflated), conv2
    1x3x3 carrying the spatial stride, conv3 1x1x1; an optional non-local block after the sum."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 inflate: bool = True, non_local: bool = False, nonlocal_pool: str = "input") -> None:
        super().__init__()
        kt = 3 if inflate else 1
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=(kt, 1, 1), padding=(kt // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=(1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.non_local = NonLocalBlock(planes * self.expansion, pool=nonlocal_pool) if non_local else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.relu(self.bn3(self.conv3(out)) + identity)
        return out if self.non_local is None else self.non_local(out)


class I3DResNet(nn.Module):
    """Inflated ResNet-50 (torchvision names, 5D kernels); ``width`` scales every channel count."""

    def __init__(
        self,
        num_classes: int,
        layers: Sequence[int] = (3, 4, 6, 3),
        width: float = 1.0,
        dropout: float = 0.5,
        non_local: bool = False,
        conv1_time: int = 5,
        pool2: bool = True,
        conv1_stride_t: int = 1,
        pool1_stride_t: int = 1,
        nonlocal_pool: str = "input",
    ) -> None:
        super().__init__()
        self.inplanes = scaled(64, width)
        self.nonlocal_pool = nonlocal_pool
        self.conv1 = nn.Conv3d(3, self.inplanes, kernel_size=(conv1_time, 7, 7), stride=(conv1_stride_t, 2, 2),
                               padding=(conv1_time // 2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(pool1_stride_t, 2, 2), padding=(0, 1, 1))
        self.pool2 = nn.MaxPool3d(kernel_size=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)) if pool2 else nn.Identity()
        for index, (base, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            inflate = [INFLATE[index][i % len(INFLATE[index])] for i in range(blocks)]
            nl = [NONLOCAL[index][i % len(NONLOCAL[index])] and non_local for i in range(blocks)]
            stage = self._make_layer(scaled(base, width), blocks, 1 if index == 0 else 2, inflate, nl)
            setattr(self, f"layer{index + 1}", stage)
        self.feature_dim = self.inplanes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.feature_dim, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # non-local blocks: their own init (last norm zero) after the generic one
            if isinstance(m, NonLocalBlock):
                m.reset_parameters_after_backbone()

    def _make_layer(self, planes: int, blocks: int, stride: int, inflate: list, non_local: list) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck3d.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * Bottleneck3d.expansion, kernel_size=1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(planes * Bottleneck3d.expansion),
            )
        pool = self.nonlocal_pool
        modules = [Bottleneck3d(self.inplanes, planes, stride, downsample, bool(inflate[0]), bool(non_local[0]), pool)]
        self.inplanes = planes * Bottleneck3d.expansion
        modules += [Bottleneck3d(self.inplanes, planes, 1, None, bool(inflate[i]), bool(non_local[i]), pool) for i in range(1, blocks)]
        return nn.Sequential(*modules)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` -> layer4 maps ``(B, feature_dim, T/2, H/32, W/32)`` before pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool2(self.layer1(x))
        return self.layer4(self.layer3(self.layer2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(self.features(x)), 1)))


def _build(args: BuildArgs, non_local: bool, family: str) -> I3DResNet:
    o = dict(args.options)
    valid = {"width", "layers", "conv1_time", "pool2", "conv1_stride_t", "pool1_stride_t"} | ({"nonlocal_pool"} if non_local else set())
    unknown = set(o) - valid
    if unknown:
        raise ConfigError(f"{family}: unknown model.options {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
    layers = tuple(int(v) for v in o.get("layers", (3, 4, 6, 3)))
    if len(layers) != 4 or min(layers) < 1:
        raise ConfigError(f"{family}: model.options.layers must be 4 block counts >= 1, got {list(layers)}")
    width = float(o.get("width", 1.0))
    if width <= 0:
        raise ConfigError(f"{family}: model.options.width must be > 0, got {width}")
    strides = {k: int(o.get(k, 1)) for k in ("conv1_stride_t", "pool1_stride_t")}
    if min(strides.values()) < 1:
        raise ConfigError(f"{family}: model.options conv1_stride_t / pool1_stride_t must be >= 1, got {strides}")
    nonlocal_pool = str(o.get("nonlocal_pool", "input"))
    if nonlocal_pool not in ("input", "projection"):
        raise ConfigError(f"{family}: model.options.nonlocal_pool={nonlocal_pool!r}; choose input (the paper's code) or projection (mmaction2)")
    return I3DResNet(
        num_classes=args.num_classes,
        layers=layers,
        width=width,
        dropout=args.dropout,
        non_local=non_local,
        conv1_time=int(o.get("conv1_time", 5)),
        pool2=bool(o.get("pool2", True)),
        nonlocal_pool=nonlocal_pool,
        **strides,
    )


def build_i3d(args: BuildArgs) -> I3DResNet:
    return _build(args, non_local=False, family="i3d")


def build_i3d_nonlocal(args: BuildArgs) -> I3DResNet:
    return _build(args, non_local=True, family="i3d_nonlocal")


# ----------------------------------------------------------------------------- Kinetics-400 checkpoints

MMACTION2_K400 = {
    "i3d": "https://download.openmmlab.com/mmaction/v1.0/recognition/i3d/"
    "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb/"
    "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb_20220812-e213c223.pth",
    "i3d_nonlocal": "https://download.openmmlab.com/mmaction/v1.0/recognition/i3d/"
    "i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb/"
    "i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb_20220812-afd8f562.pth",
}

_MM_CONV = re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.(conv|bn)\.(.+)$")
_MM_DOWNSAMPLE = re.compile(r"^(layer\d+\.\d+)\.downsample\.(conv|bn)\.(.+)$")
_MM_NONLOCAL = re.compile(r"^(layer\d+\.\d+)\.non_local_block\.(theta|phi|g|conv_out)\.(?:0\.)?(conv|bn)\.(.+)$")
_PTV_STEM = re.compile(r"^blocks\.0\.(conv|norm)\.(.+)$")
_PTV_BLOCK = re.compile(r"^blocks\.(\d+)\.res_blocks\.(\d+)\.(.+)$")
_PTV_HEAD = re.compile(r"^blocks\.(\d+)\.proj\.(weight|bias)$")
_PTV_PARTS = {
    "branch2.conv_a": "conv1", "branch2.norm_a": "bn1", "branch2.conv_b": "conv2", "branch2.norm_b": "bn2",
    "branch2.conv_c": "conv3", "branch2.norm_c": "bn3", "branch1_conv": "downsample.0", "branch1_norm": "downsample.1",
}  # fmt: skip


def _from_mmaction2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmaction2 ResNet3d + I3DHead (+ mmcv NonLocal3d) names -> ours; theta rescaled for use_scale=False."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("cls_head.fc_cls."):
            out["fc." + key[len("cls_head.fc_cls."):]] = value
            continue
        if key.startswith("cls_head."):
            out[key] = value  # anything else of a head: reported as unused
            continue
        key = key[len("backbone."):] if key.startswith("backbone.") else key
        if key.startswith("conv1.conv."):
            out["conv1." + key[len("conv1.conv."):]] = value
        elif key.startswith("conv1.bn."):
            out["bn1." + key[len("conv1.bn."):]] = value
        elif m := _MM_CONV.match(key):
            block, n, kind, rest = m.groups()
            out[f"{block}.{'conv' if kind == 'conv' else 'bn'}{n}.{rest}"] = value
        elif m := _MM_DOWNSAMPLE.match(key):
            block, kind, rest = m.groups()
            out[f"{block}.downsample.{0 if kind == 'conv' else 1}.{rest}"] = value
        elif m := _MM_NONLOCAL.match(key):
            block, part, kind, rest = m.groups()
            if part == "conv_out":
                out[f"{block}.non_local.{'W' if kind == 'conv' else 'bn'}.{rest}"] = value
            elif part == "theta":
                # mmaction2's softmax(theta^T phi) (use_scale=False) == our softmax((s theta)^T phi / s), s = sqrt(C')
                out[f"{block}.non_local.theta.{rest}"] = value * math.sqrt(value.shape[0])
            else:
                out[f"{block}.non_local.{part}.{rest}"] = value
        else:
            out[key] = value
    for key in [k for k in out if k.endswith(".non_local.W.weight")]:
        bias = key[: -len("weight")] + "bias"
        out.setdefault(bias, torch.zeros(out[key].shape[0], dtype=out[key].dtype))  # conv_out has no bias (its BN follows)
    return out


def _from_pytorchvideo(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pytorchvideo create_resnet names (``blocks.*``) -> ours. Its stages are the blocks holding
    ``res_blocks`` in order (the parameter-free stage-1 pool sits between the first two)."""
    stages = sorted({int(m.group(1)) for k in state if (m := _PTV_BLOCK.match(k))})
    layer_of = {block: i + 1 for i, block in enumerate(stages)}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if m := _PTV_STEM.match(key):
            out[f"{'conv1' if m.group(1) == 'conv' else 'bn1'}.{m.group(2)}"] = value
        elif m := _PTV_BLOCK.match(key):
            block, index, rest = m.groups()
            part = next((p for p in _PTV_PARTS if rest.startswith(p + ".")), None)
            name = f"{_PTV_PARTS[part]}{rest[len(part):]}" if part else rest
            out[f"layer{layer_of[int(block)]}.{index}.{name}"] = value
        elif m := _PTV_HEAD.match(key):
            out[f"fc.{m.group(2)}"] = value
        else:
            out[key] = value
    return out


def convert_state_dict(state: dict[str, torch.Tensor], source: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """``FamilySpec.convert_state_dict`` of i3d / i3d_nonlocal: an mmaction2 or pytorchvideo Kinetics
    checkpoint is renamed to our names; a 2D torchvision ResNet (``imagenet``) is inflated; our own
    checkpoints pass through."""
    if any(k.startswith(("backbone.", "cls_head.")) for k in state) or "conv1.conv.weight" in state:
        state = _from_mmaction2(state)
        nl_pool = getattr(model, "nonlocal_pool", "input")
        if nl_pool != "projection" and any(".non_local." in k for k in state):
            logger.warning(
                "%s: mmaction2 non-local blocks max-pool after their phi/g projections; this model pools before "
                "(model.options.nonlocal_pool=%s). Set model.options.nonlocal_pool=projection to compute as the checkpoint did",
                source, nl_pool,
            )
    elif any(k.startswith("blocks.") for k in state):
        state = _from_pytorchvideo(state)
    return inflate_state_dict(state, model)


_SIZES = {
    # CPU: the full 50-layer structure at 1/8 width (8-16-32-64 bottleneck widths), 8 frames of 32px.
    "tiny": SizePreset(frames=8, frame_size=32, options={"width": 0.125}),
    # ResNet-50 inflated, 16-frame clips (003) at ImageNet resolution.
    "base": SizePreset(frames=16, frame_size=224, options={"width": 1.0}),
}

I3D = FamilySpec(
    name="i3d",
    description="I3D: ResNet-50 inflated to 3D (conv1 5x7x7, 3x1x1 in every other block); imagenet = inflated 2D weights, "
    "kinetics400 = mmaction2's K400 I3D-R50",
    paper="anh2022",
    build=build_i3d,
    sizes=_SIZES,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    default_dropout=0.5,
    pretrained_sources=("imagenet", "kinetics400"),
    hub_checkpoints={"imagenet": TORCHVISION_IMAGENET[50], "kinetics400": MMACTION2_K400["i3d"]},
    head_prefixes=("fc.",),
    convert_state_dict=convert_state_dict,
    explain_layers=("layer4", "layer3", "layer2"),
)

# Same inputs, sizes and weights sources as I3D; the network and its Kinetics checkpoint differ.
I3D_NONLOCAL = replace(
    I3D,
    name="i3d_nonlocal",
    description="I3D ResNet-50 + 5 embedded-Gaussian non-local blocks (res3/res4, last BN zero-init); "
    "kinetics400 = mmaction2's K400 non-local I3D-R50 (with model.options.nonlocal_pool=projection)",
    build=build_i3d_nonlocal,
    hub_checkpoints={"imagenet": TORCHVISION_IMAGENET[50], "kinetics400": MMACTION2_K400["i3d_nonlocal"]},
)
