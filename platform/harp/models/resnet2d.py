"""A plain-torch 2D ResNet (18/34/50/101/152) with torchvision's exact parameter names.

``conv1``, ``bn1``, ``layer1`` .. ``layer4`` (``BasicBlock`` / ``Bottleneck`` with ``conv1/bn1/conv2/bn2
[/conv3/bn3]`` and ``downsample.0/.1``) and ``fc``: a torchvision ImageNet weight file loads as is.

Two knobs the video families need:

* ``width``: a multiplier on every channel count (stem and the four stages), rounded to a multiple of
  8, for tiny CPU models (``width=1.0`` is the torchvision network).
* hooks that put temporal modules inside each residual block, so TSM, TEA and MDT are the same
  network with different inserts. Each hook is called once per block with the block's channel count and
  its name (``"layer1.0"``, ...) and returns a module or ``None`` (no insert):

  - ``residual_hook(channels, name)``: applied to the block input on the residual branch only, before
    ``conv1`` (TSM's residual shift);
  - ``conv1_hook(channels, name)``: applied after ``relu(bn1(conv1(x)))`` (TEA's motion excitation,
    MDT's excitations); ``channels`` is the width of ``conv1``'s output;
  - ``conv2_hook(conv2, name)``: returns a replacement for ``conv2`` (TEA's multiple temporal
    aggregation); it receives the ``nn.Conv2d`` it replaces. A replacement with ``owns_norm = True``
    normalises and activates its own output (TEA's per-fragment BN + ReLU): a bottleneck then has no
    ``bn2`` and no ReLU after it.

A third knob, ``bottleneck_width(planes) -> channels``, sets the inner width of the bottlenecks
(``conv1``'s output, ``conv2``, ``conv3``'s input; default ``planes``, torchvision's), e.g. the
wider bottlenecks of Res2Net-50 26w x 4s (``floor(planes * 26 / 64) * 4``).

  Inserts that are ``None`` become ``nn.Identity`` (no parameters), so a hook-free network has exactly
  torchvision's state-dict keys.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ChannelHook = Callable[[int, str], "nn.Module | None"]
Conv2Hook = Callable[[nn.Conv2d, str], nn.Module]

# depth -> (block kind, blocks per stage), as in torchvision.models.resnet
DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 8 (at least 8); exact when width is 1."""
    if width == 1.0:
        return channels
    return max(8, int(round(channels * width / 8)) * 8)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


def _insert(hook: ChannelHook | None, channels: int, name: str) -> nn.Module:
    module = hook(channels, name) if hook is not None else None
    return module if module is not None else nn.Identity()


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        name: str = "",
        residual_hook: ChannelHook | None = None,
        conv1_hook: ChannelHook | None = None,
        conv2_hook: Conv2Hook | None = None,
    ) -> None:
        super().__init__()
        self.residual = _insert(residual_hook, inplanes, name)
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.excite = _insert(conv1_hook, planes, name)
        conv2 = _conv3x3(planes, planes)
        self.conv2 = conv2_hook(conv2, name) if conv2_hook is not None else conv2
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(self.residual(x))))
        out = self.bn2(self.conv2(self.excite(out)))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 ``conv2``."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        name: str = "",
        residual_hook: ChannelHook | None = None,
        conv1_hook: ChannelHook | None = None,
        conv2_hook: Conv2Hook | None = None,
        inner: int | None = None,
    ) -> None:
        super().__init__()
        inner = planes if inner is None else inner
        self.residual = _insert(residual_hook, inplanes, name)
        self.conv1 = _conv1x1(inplanes, inner)
        self.bn1 = nn.BatchNorm2d(inner)
        self.excite = _insert(conv1_hook, inner, name)
        conv2 = _conv3x3(inner, inner, stride)
        self.conv2 = conv2_hook(conv2, name) if conv2_hook is not None else conv2
        # A conv2 replacement that normalises and activates its own output leaves no bn2/ReLU here.
        self.conv2_norm = not getattr(self.conv2, "owns_norm", False)
        self.bn2 = nn.BatchNorm2d(inner) if self.conv2_norm else nn.Identity()
        self.conv3 = _conv1x1(inner, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(self.residual(x))))
        out = self.conv2(self.excite(out))
        if self.conv2_norm:
            out = self.relu(self.bn2(out))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet2d(nn.Module):
    """torchvision-compatible ResNet. ``features`` stops before pooling; ``forward`` is the image classifier.

    ``num_classes=0`` builds no ``fc`` (video families put their own head on top).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        width: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        zero_init_residual: bool = False,
        residual_hook: ChannelHook | None = None,
        conv1_hook: ChannelHook | None = None,
        conv2_hook: Conv2Hook | None = None,
        bottleneck_width: Callable[[int], int] | None = None,
    ) -> None:
        super().__init__()
        self.width = width
        self.bottleneck_width = bottleneck_width
        self.inplanes = scaled(64, width)
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        hooks = {"residual_hook": residual_hook, "conv1_hook": conv1_hook, "conv2_hook": conv2_hook}
        for index, (base, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stage = self._make_layer(block, scaled(base, width), blocks, 1 if index == 1 else 2, f"layer{index}", hooks)
            setattr(self, f"layer{index}", stage)
        self.feature_dim = self.inplanes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.feature_dim, num_classes) if num_classes > 0 else None

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
        # Inserted modules may want a specific start (identity temporal convs, zero offsets, zero gates):
        # they define reset_parameters_after_backbone(), called after the backbone's own init above.
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters_after_backbone"):
                m.reset_parameters_after_backbone()

    def _make_layer(self, block, planes: int, blocks: int, stride: int, name: str, hooks: dict) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        if self.bottleneck_width is not None:
            if block is not Bottleneck:
                raise ValueError("bottleneck_width needs bottleneck blocks (ResNet-50 and deeper)")
            hooks = {**hooks, "inner": self.bottleneck_width(planes)}
        modules = [block(self.inplanes, planes, stride, downsample, name=f"{name}.0", **hooks)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            modules.append(block(self.inplanes, planes, name=f"{name}.{i}", **hooks))
        return nn.Sequential(*modules)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def stages(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` images -> ``(N, feature_dim, H/32, W/32)`` maps, before pooling."""
        return self.stages(self.stem(x))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, feature_dim)`` globally average-pooled features."""
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc is None:
            raise RuntimeError("this ResNet2d was built with num_classes=0: use .features() or .pooled()")
        return self.fc(self.pooled(x))


def build_resnet2d(
    depth: int,
    width: float = 1.0,
    *,
    layers: tuple[int, int, int, int] | None = None,
    num_classes: int = 1000,
    **hooks,
) -> ResNet2d:
    """A torchvision-named ResNet of ``depth`` 18/34/50/101/152, ``width`` times as wide.

    ``layers`` overrides the blocks per stage (e.g. ``(1, 1, 1, 1)`` for a fast tiny network) while
    keeping the block kind of ``depth``. ``hooks``: ``residual_hook``, ``conv1_hook``, ``conv2_hook``,
    ``zero_init_residual``, ``in_channels`` (see the module docstring).
    """
    if depth not in DEPTHS:
        raise ValueError(f"unknown ResNet depth {depth}; choose one of: {', '.join(map(str, DEPTHS))}")
    if width <= 0:
        raise ValueError(f"ResNet width must be positive, got {width}")
    kind, default_layers = DEPTHS[depth]
    block = BasicBlock if kind == "basic" else Bottleneck
    return ResNet2d(block, tuple(layers or default_layers), width=width, num_classes=num_classes, **hooks)


# torchvision's ImageNet weight files (IMAGENET1K_V1), the ``imagenet`` source of the 2D families.
TORCHVISION_IMAGENET = {
    18: "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    34: "https://download.pytorch.org/models/resnet34-b627a593.pth",
    50: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    101: "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    152: "https://download.pytorch.org/models/resnet152-394f9c45.pth",
}
