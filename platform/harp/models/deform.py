"""Deformable 2D convolution (Dai et al. 2017) in plain torch, with ``grid_sample``.

torchvision.ops.deform_conv2d cannot be used here (no working CPU torchvision), so the kernel is
written out: for every output position p and kernel tap k the input is sampled bilinearly at
``p * stride - padding + k * dilation + offset[k](p)`` (zeros outside the image), and the samples are
multiplied with the kernel like an ordinary convolution. The offset layout is torchvision's:
channel ``2k`` is the vertical (y) offset of tap k, channel ``2k+1`` the horizontal (x) one, taps in
row-major order. With zero offsets the result equals ``F.conv2d`` with the same weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DeformConv2d", "deform_conv2d"]


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> torch.Tensor:
    """``x (N,C,H,W)``, ``offset (N, 2*kh*kw, Ho, Wo)``, ``weight (O, C, kh, kw)`` -> ``(N, O, Ho, Wo)``."""
    n, c, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    taps = kh * kw
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    if offset.shape != (n, 2 * taps, ho, wo):
        raise ValueError(f"offset must be {(n, 2 * taps, ho, wo)}, got {tuple(offset.shape)}")
    dtype, device = x.dtype, x.device
    # Sampling positions without offsets: (taps, Ho, Wo) for y and x.
    ky, kx = torch.meshgrid(
        torch.arange(kh, device=device, dtype=dtype) * dilation,
        torch.arange(kw, device=device, dtype=dtype) * dilation,
        indexing="ij",
    )
    oy = torch.arange(ho, device=device, dtype=dtype) * stride - padding
    ox = torch.arange(wo, device=device, dtype=dtype) * stride - padding
    base_y = ky.reshape(taps, 1, 1) + oy.view(1, ho, 1)
    base_x = kx.reshape(taps, 1, 1) + ox.view(1, 1, wo)
    offset = offset.view(n, taps, 2, ho, wo)
    py = base_y.unsqueeze(0) + offset[:, :, 0]  # (N, taps, Ho, Wo)
    px = base_x.unsqueeze(0) + offset[:, :, 1]
    # grid_sample with align_corners=False: pixel i's centre is at (2i + 1) / size - 1 (exact for 1-pixel maps too).
    gy = (2.0 * py + 1.0) / h - 1.0
    gx = (2.0 * px + 1.0) / w - 1.0
    grid = torch.stack((gx, gy), dim=-1).view(n, taps * ho, wo, 2)
    samples = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    columns = samples.view(n, c * taps, ho * wo)  # channel-major, then tap: matches weight.view(O, C*taps)
    out = torch.matmul(weight.reshape(out_channels, c * taps), columns).view(n, out_channels, ho, wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """A deformable conv whose offsets come from a 3x3 conv on the same input, zero-initialised.

    At initialisation every offset is 0, so the layer starts as the ordinary convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.stride, self.dilation = stride, dilation
        self.padding = dilation * (kernel_size - 1) // 2
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.offset = nn.Conv2d(in_channels, 2 * kernel_size * kernel_size, 3, stride=stride, padding=1)
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.reset_parameters_after_backbone()

    def reset_parameters_after_backbone(self) -> None:
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return deform_conv2d(x, self.offset(x), self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, dilation={self.dilation}"
