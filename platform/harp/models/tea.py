"""``tea``: Temporal Excitation and Aggregation (Li et al. 2020), a 2D baseline of the MDT-Net paper (Xu, Cao and Yi).

TSN's ResNet with two inserts in every residual block, as in the authors' code
(Phoenix1327/tea-action-recognition, ``ops/tea50_8f.py``):

* Motion excitation (ME), after ``conv1``: squeeze the C channels to C/r (1x1 conv + BN), take the
  feature-level difference between each frame's neighbour after a channel-wise 3x3 conv and the frame
  itself, ``d_t = conv(f_{t+1}) - f_t`` (``d_{T-1} = 0``), pool it spatially, expand back to C (1x1 conv +
  BN) and excite: ``x + x * (sigmoid(a) - 0.5)`` (the reference's centred gate: a zero attention map
  leaves the features as they are).
* Multiple temporal aggregation (MTA), replacing ``conv2`` (a Res2Net "Bottle2neck" with temporal
  convs): the channels are split into 4 fragments. Fragments 1-3 each run a channel-wise temporal
  conv (kernel 3), a 3x3 spatial conv and their own BN + ReLU, fragment i > 1 first adding the
  previous fragment's output (so later fragments see a larger spatio-temporal field); the last
  fragment is passed on through its temporal conv only (initialised as a shift: half of its channels
  from the next frame, half from the previous one). In the first block of a stage (Res2Net's
  ``stype='stage'``) the fragments are not chained and the last one is average-pooled (3x3, the
  block's stride). Parameters: ``conv2.temporal.{0,1,2,3}``, ``conv2.spatial.{0,1,2}``,
  ``conv2.norm.{0,1,2}``; a bottleneck with MTA has no ``bn2`` (MTA normalises its fragments).

Weights: the reference starts from Res2Net-50 26w x 4s (ImageNet). ``model.options.base_width=26``
builds those bottleneck widths (``floor(planes * 26 / 64) * 4`` channels inside each block) and the
``res2net50`` source (or ``file:`` the official ``res2net50_26w_4s-06e79181.pth``, or a TEA
checkpoint of the reference code) then loads every 2D weight: Res2Net's ``convs.i`` / ``bns.i`` are
MTA's ``spatial.i`` / ``norm.i``; a TEA checkpoint's ``me.*`` and ``shifts.i.conv`` are ``excite.*``
and ``temporal.i``.

The ``imagenet`` source (torchvision's ResNet-50, the default width) keeps only part of the 2D
weights: stem, ``conv1``, ``conv3``, the downsample branches and the BN statistics load whole, but of
each 3x3 ``conv2`` only the three diagonal blocks of fragments 1-3 survive (3/16 of its weights: the
fragment-to-fragment mixing of a dense conv has no place in MTA) and ``bn2`` becomes the three
fragments' norms; the last fragment's share is dropped.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from harp.errors import ConfigError
from harp.models.segment import (
    TINY_BACKBONE,
    SegmentConsensusNet,
    Segments,
    backbone_options,
    convert_tsm_repo_keys,
    imagenet_checkpoints,
    imagenet_resnet_spec,
)
from harp.models.spec import BuildArgs, SizePreset

__all__ = ["TEA", "MotionExcitation", "MultipleTemporalAggregation", "TEANet", "build", "convert_state_dict", "RES2NET50_26W_4S"]

FRAGMENTS = 4  # Res2Net's scale s=4, TEA's four fragments
# The official Res2Net-50 26w x 4s ImageNet file (Res2Net/Res2Net-PretrainedModels; the TEA code's start).
RES2NET50_26W_4S = "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/res2net50_26w_4s-06e79181.pth"


class MotionExcitation(nn.Module):
    """TEA's ME module on ``(B*T, C, H, W)`` features."""

    def __init__(self, channels: int, segments: Segments, reduction: int = 16) -> None:
        super().__init__()
        self.segments = segments
        reduced = max(channels // reduction, 4)
        self.squeeze = nn.Conv2d(channels, reduced, 1, bias=False)
        self.squeeze_bn = nn.BatchNorm2d(reduced)
        self.transform = nn.Conv2d(reduced, reduced, 3, padding=1, groups=reduced, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(channels)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The centred gate ``sigmoid(a) - 0.5`` in (-0.5, 0.5), one value per frame and channel."""
        f = self.squeeze_bn(self.squeeze(x))
        diff = self.segments.next_difference(f, self.transform(f))
        return torch.sigmoid(self.expand_bn(self.expand(self.pool(diff)))) - 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x * self.attention(x)


class MultipleTemporalAggregation(nn.Module):
    """TEA's MTA module, a drop-in for a block's 3x3 ``conv2`` (same in/out channels and stride)
    that normalises and activates its own output (``owns_norm``)."""

    owns_norm = True

    def __init__(self, conv2: nn.Conv2d, segments: Segments, fragments: int = FRAGMENTS, stage: bool | None = None) -> None:
        super().__init__()
        channels = conv2.in_channels
        if channels % fragments or conv2.out_channels != channels:
            raise ConfigError(f"tea: MTA needs a square conv2 whose {channels} channels split into {fragments} fragments")
        self.segments = segments
        self.fragments = fragments
        self.stride = conv2.stride[0]
        self.stage = self.stride != 1 if stage is None else stage  # first block of a stage: no chaining, pooled last fragment
        width = channels // fragments
        self.temporal = nn.ModuleList(nn.Conv1d(width, width, 3, padding=1, groups=width, bias=False) for _ in range(fragments))
        self.spatial = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride=self.stride, padding=1, bias=False) for _ in range(fragments - 1)
        )
        self.norm = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(fragments - 1))
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(3, stride=self.stride, padding=1) if self.stage else nn.Identity()
        self.reset_parameters_after_backbone()

    def reset_parameters_after_backbone(self) -> None:
        """As the reference: the temporal convs of fragments 1-3 start as the identity (centre tap 1);
        the last fragment's as a shift, its first half from frame t+1, its second half from frame t-1."""
        weights = [conv.weight for conv in self._temporal_convs()]
        with torch.no_grad():
            for weight in weights:
                weight.zero_()
            for weight in weights[:-1]:
                weight[:, 0, 1] = 1.0
            last = weights[-1]
            half = last.shape[0] // 2
            last[:half, 0, 2] = 1.0  # out_t = in_{t+1}
            last[half : 2 * half, 0, 0] = 1.0  # out_t = in_{t-1}
            last[2 * half :, 0, 1] = 1.0  # an odd channel stays in place

    def _temporal_convs(self) -> list[nn.Conv1d]:
        return [conv for conv in self.temporal if isinstance(conv, nn.Conv1d)]

    def _temporal(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        t = self.segments.frames
        seq = x.reshape(n // t, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(-1, c, t)  # (B*H*W, C, T)
        seq = conv(seq)
        return seq.view(n // t, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(n, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(x, self.fragments, dim=1)
        outputs = []
        previous = None
        for i in range(self.fragments - 1):
            part = parts[i] if previous is None or self.stage else parts[i] + previous
            previous = self.relu(self.norm[i](self.spatial[i](self._temporal(self.temporal[i], part))))
            outputs.append(previous)
        outputs.append(self.pool(self._temporal(self.temporal[-1], parts[-1])))
        return torch.cat(outputs, dim=1)


class TEANet(SegmentConsensusNet):
    """TSN + ME after ``conv1`` and MTA in place of ``conv2`` in every residual block.

    ``base_width``: Res2Net's baseWidth (26 for Res2Net-50 26w x 4s); None keeps torchvision's widths.
    """

    def __init__(self, *, frames: int, reduction: int = 16, base_width: int | None = None, **kwargs) -> None:
        segments = Segments(frames)
        if base_width is not None:
            if base_width < 1:
                raise ConfigError(f"tea: model.options.base_width must be a positive integer, got {base_width}")
            kwargs["bottleneck_width"] = lambda planes: (planes * base_width // 64) * FRAGMENTS
        super().__init__(
            frames=frames,
            segments=segments,
            conv1_hook=lambda channels, name: MotionExcitation(channels, segments, reduction),
            conv2_hook=lambda conv2, name: MultipleTemporalAggregation(conv2, segments, stage=name.endswith(".0")),
            **kwargs,
        )


def build(args: BuildArgs) -> TEANet:
    backbone, own = backbone_options(args, "tea", {"reduction": 16, "base_width": None})
    base_width = own["base_width"]
    if base_width is not None and backbone["depth"] < 50:
        raise ConfigError(f"tea: model.options.base_width (Res2Net widths) needs bottleneck blocks, depth >= 50; got depth {backbone['depth']}")
    return TEANet(
        num_classes=args.num_classes,
        dropout=args.dropout,
        frames=args.frames,
        reduction=int(own["reduction"]),
        base_width=None if base_width is None else int(base_width),
        **backbone,
    )


_CONV2 = re.compile(r"^(layer\d+\.\d+)\.conv2\.weight$")
_BN2 = re.compile(r"^(layer\d+\.\d+)\.bn2\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
# The reference code's names (Res2Net's Bottle2neck + TEA's ME and shifts) -> harp's.
_REFERENCE_NAMES = (
    (re.compile(r"^(layer\d+\.\d+)\.convs\.(\d+)\."), r"\1.conv2.spatial.\2."),
    (re.compile(r"^(layer\d+\.\d+)\.bns\.(\d+)\."), r"\1.conv2.norm.\2."),
    (re.compile(r"^(layer\d+\.\d+)\.shifts\.(\d+)\.conv\."), r"\1.conv2.temporal.\2."),
    (re.compile(r"^(layer\d+\.\d+)\.me\.conv1\."), r"\1.excite.squeeze."),
    (re.compile(r"^(layer\d+\.\d+)\.me\.bn1\."), r"\1.excite.squeeze_bn."),
    (re.compile(r"^(layer\d+\.\d+)\.me\.conv2\."), r"\1.excite.transform."),
    (re.compile(r"^(layer\d+\.\d+)\.me\.conv3\."), r"\1.excite.expand."),
    (re.compile(r"^(layer\d+\.\d+)\.me\.bn3\."), r"\1.excite.expand_bn."),
)


def _reference_name(key: str) -> str:
    for pattern, replacement in _REFERENCE_NAMES:
        key, n = pattern.subn(replacement, key)
        if n:
            break
    return key


def convert_state_dict(state: dict[str, torch.Tensor], source: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights of three layouts into TEA's.

    - Res2Net-50 / the TEA reference code (``layerX.Y.convs.i``, ``bns.i``, ``me.*``, ``shifts.i.conv``;
      TSN wrapper prefixes ``module.base_model.`` and ``new_fc`` too): renamed one to one. A Res2Net file
      into a model of torchvision widths fails in one line that says to set ``model.options.base_width``.
    - torchvision (``layerX.Y.conv2.weight``, ``bn2.*``): MTA's ``spatial.k`` is the diagonal block k of
      ``conv2`` and ``norm.k`` the k-th slice of ``bn2``, for fragments 1-3 (k = 0, 1, 2); the rest of
      ``conv2`` and the last fragment's ``bn2`` slice have no counterpart and are dropped.
    - harp's own TEA keys pass through unchanged.
    """
    from harp.models.pretrained import PretrainedError

    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in convert_tsm_repo_keys(state, source, model).items():
        renamed = _reference_name(key)
        if renamed != key:
            if renamed.endswith("conv2.spatial.0.weight") and renamed in own and own[renamed].shape != value.shape:
                raise PretrainedError(
                    f"{source} is a Res2Net/TEA checkpoint whose bottlenecks are {value.shape[0] * FRAGMENTS} channels wide "
                    f"({key}: {tuple(value.shape)}), but this tea model's are {own[renamed].shape[0] * FRAGMENTS}: build it with "
                    f"model.options.base_width=26 (Res2Net-50 26w x 4s) and model.options.depth=50"
                )
            out[renamed] = value
            continue
        conv2, bn2 = _CONV2.match(key), _BN2.match(key)
        match = conv2 or bn2
        block = match.group(1) if match else None
        if block is None or f"{block}.conv2.spatial.0.weight" not in own or key in own:
            out[key] = value
            continue
        width = own[f"{block}.conv2.spatial.0.weight"].shape[0]
        if conv2:
            if value.dim() != 4 or value.shape[0] != value.shape[1] or value.shape[0] != width * FRAGMENTS:
                out[key] = value  # left for the loader to report
                continue
            for k in range(FRAGMENTS - 1):
                out[f"{block}.conv2.spatial.{k}.weight"] = value[k * width : (k + 1) * width, k * width : (k + 1) * width].clone()
        elif bn2:
            name = bn2.group(2)
            if name == "num_batches_tracked":
                for k in range(FRAGMENTS - 1):
                    out[f"{block}.conv2.norm.{k}.{name}"] = value.clone()
            elif value.dim() == 1 and value.shape[0] == width * FRAGMENTS:
                for k in range(FRAGMENTS - 1):
                    out[f"{block}.conv2.norm.{k}.{name}"] = value[k * width : (k + 1) * width].clone()
            else:
                out[key] = value
    return out


TEA = imagenet_resnet_spec(
    name="tea",
    description=(
        "Temporal Excitation and Aggregation: ResNet-50 TSN with motion excitation and multiple temporal aggregation "
        "(reference code's MTA: per-fragment BN+ReLU). imagenet = torchvision ResNet-50, of which MTA keeps only the "
        "diagonal blocks of each 3x3 conv2 (3/16); res2net50 (with model.options.base_width=26) is the reference's "
        "Res2Net-50 26w x 4s start, every 2D weight loaded"
    ),
    paper="xu-mdt",
    build=build,
    sizes={
        "tiny": SizePreset(frames=8, frame_size=32, options=TINY_BACKBONE),
        "base": SizePreset(frames=8, frame_size=224, options={"depth": 50}),
    },
    pretrained_sources=("imagenet", "res2net50"),
    hub_checkpoints={**imagenet_checkpoints(50), "res2net50": RES2NET50_26W_4S},
    convert_state_dict=convert_state_dict,
)
