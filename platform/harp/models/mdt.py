"""``mdt``: MDT-Net (Xu, Cao and Yi, "Video Human Action Recognition by the Fusion of Significant
Motion and Coarse-fine Temporal Granularity Features"): motion salience, coarse/fine temporal differences,
deformable-convolution motion excitation and channel excitation on a ResNet-50 TSN backbone.

The paper describes its modules in words only; this is the reading harp implements (every insert is
named after the paper's step, and every learned insert starts as the identity, so an ImageNet start
is the TSN network on salience-enhanced key frames):

Input: ``T = segments * segment_frames`` frames, segment-major: clip frames ``s*k .. s*k+k-1`` are
segment ``s``'s ``k = segment_frames`` *adjacent* video frames (the paper's 5 frames per segment,
whose fine differences are those of neighbouring frames; key frame = the 4th, ``key_frame`` option,
default ``min(3, segment_frames - 1)``), the segments spread over the video as TSN's. The sampler
must deliver that layout (indices ``[a_0, a_0+1, .., a_0+k-1, a_1, ..]``, ``a_s`` inside the s-th
of ``segments`` equal parts of the video): ``sampling.method=segment_frames``, the family's default
sampling (``harp.data.sampling``); k frames spread over a segment would turn the fine differences
into coarse ones. The network runs on the ``segments`` key frames.

1. Motion salience (step 2 of the paper), parameter-free: the magnitude of the temporal Fourier
   transform of each segment's frames, summed over the non-zero frequencies and averaged over colour
   channels, is a map that is 0 where nothing changes; normalised to [0, 1] per segment it enhances
   the key frame, ``key * (1 + salience)``. With one frame per segment the transform runs over all
   key frames of the clip.
2. Fine temporal granularity (step 3, intra-segment): the differences of consecutive frames within a
   segment (or of neighbouring key frames when a segment has one frame), stacked on channels, go
   through a strided 3x3 conv + ReLU + BN into the stem's resolution and are added to the key frame's
   stem features (``fine_diff``; its BN starts at zero).
3. Coarse temporal granularity (step 3, inter-segment): at the input of each stage (the residual
   branch of ``layerN.0``), the difference of neighbouring segments' features, squeezed to C/r,
   through a 3x3 conv back to C, excites the features: ``x + x * tanh(a)`` (``CoarseDifference``).
4. Deformable-convolution motion excitation, DCME (step 5), after ``conv1`` of every block: features
   squeezed to C/r; the next key frame's features go through two deformable 3x3 convolutions of
   different scales (dilation 1 and 2) and the current frame's features are subtracted; pooled,
   expanded to C, ``x + x * tanh(a)``.
5. Channel excitation (step 6), after DCME: spatially pooled channels squeezed to C/r, a temporal
   conv (kernel 3) across segments, expanded to C, ``x + x * tanh(a)``.

The last layer of every excitation starts at zero (``tanh(0) = 0``): each insert is the identity at
initialisation, which ``tests/models/test_mdt.py`` checks with numbers.
"""
from __future__ import annotations

import torch
from torch import nn

from harp.errors import ConfigError
from harp.models.deform import DeformConv2d
from harp.models.segment import TINY_BACKBONE, SegmentConsensusNet, Segments, backbone_options, imagenet_resnet_spec
from harp.models.spec import BuildArgs, SizePreset

__all__ = [
    "MDT",
    "ChannelExcitation",
    "CoarseDifference",
    "DeformableMotionExcitation",
    "FineDifference",
    "MDTNet",
    "build",
    "motion_salience",
]


def motion_salience(frames: torch.Tensor) -> torch.Tensor:
    """``(N, L, C, H, W)`` frames -> ``(N, H, W)`` salience in [0, 1] from the temporal Fourier transform.

    ``sum_{f>0} |FFT_t(x)[f]|`` averaged over channels: 0 for a static pixel, larger the more it
    changes; divided by its maximum per sample (all zeros stay zero). The transform runs on
    ``x - x_0`` (the same non-zero frequencies): a static pixel is then exactly zero, where the
    rounding of a 5-point FFT of the raw values would leave noise that the normalisation blows up to 1.
    """
    x = frames.float()
    spectrum = torch.fft.rfft(x - x[:, :1], dim=1).abs()[:, 1:]
    energy = spectrum.sum(dim=1).mean(dim=1)  # (N, H, W)
    peak = energy.flatten(1).amax(dim=1).clamp_min(1e-6).view(-1, 1, 1)
    return (energy / peak).to(frames.dtype)


def _reduced(channels: int, reduction: int) -> int:
    return max(channels // reduction, 4)


def _excite(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return x + x * torch.tanh(a)


class FineDifference(nn.Module):
    """Intra-segment frame differences -> stem-resolution features added to the key frame's stem."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def reset_parameters_after_backbone(self) -> None:
        nn.init.zeros_(self.bn.weight)

    def forward(self, differences: torch.Tensor) -> torch.Tensor:
        # ReLU before the zero-initialised BN, so the BN's scale gets a gradient from the first step.
        return self.bn(self.relu(self.conv(differences)))


class CoarseDifference(nn.Module):
    """Inter-segment feature differences -> a spatial-channel excitation of the stage input."""

    def __init__(self, channels: int, segments: Segments, reduction: int = 16) -> None:
        super().__init__()
        self.segments = segments
        reduced = _reduced(channels, reduction)
        self.squeeze = nn.Conv2d(channels, reduced, 1, bias=False)
        self.expand = nn.Conv2d(reduced, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def reset_parameters_after_backbone(self) -> None:
        nn.init.zeros_(self.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.squeeze(x)
        diff = self.segments.next_difference(f, f)
        return _excite(x, self.bn(self.expand(diff)))


class DeformableMotionExcitation(nn.Module):
    """DCME: motion from the next frame's deformable features (two scales) minus the current ones."""

    def __init__(self, channels: int, segments: Segments, reduction: int = 16) -> None:
        super().__init__()
        self.segments = segments
        reduced = _reduced(channels, reduction)
        self.squeeze = nn.Conv2d(channels, reduced, 1, bias=False)
        self.squeeze_bn = nn.BatchNorm2d(reduced)
        self.deform_small = DeformConv2d(reduced, reduced, 3, dilation=1)
        self.deform_large = DeformConv2d(reduced, reduced, 3, dilation=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def reset_parameters_after_backbone(self) -> None:
        nn.init.zeros_(self.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.squeeze_bn(self.squeeze(x))
        t = self.segments.frames
        cur = f.view(-1, t, *f.shape[1:])
        # as segments.next_difference, but the deform convs run only on frames 1..T-1 (the "next" frames)
        following = cur[:, 1:].flatten(0, 1)
        moved = (self.deform_small(following) + self.deform_large(following)) / 2
        diff = torch.zeros_like(cur)
        diff[:, :-1] = moved.view(cur.shape[0], t - 1, *cur.shape[2:]) - cur[:, :-1]
        return _excite(x, self.bn(self.expand(self.pool(diff.flatten(0, 1)))))


class ChannelExcitation(nn.Module):
    """Channel excitation with a temporal conv across segments (ACTION-Net style)."""

    def __init__(self, channels: int, segments: Segments, reduction: int = 16) -> None:
        super().__init__()
        self.segments = segments
        reduced = _reduced(channels, reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.squeeze = nn.Conv2d(channels, reduced, 1)
        self.temporal = nn.Conv1d(reduced, reduced, 3, padding=1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def reset_parameters_after_backbone(self) -> None:
        nn.init.zeros_(self.expand.weight)
        nn.init.zeros_(self.expand.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.segments.frames
        s = self.squeeze(self.pool(x)).flatten(1)  # (B*T, c)
        s = self.temporal(s.view(-1, t, s.shape[1]).transpose(1, 2)).transpose(1, 2).reshape(-1, s.shape[1])
        return _excite(x, self.expand(torch.relu(s)[:, :, None, None]))


class MDTNet(SegmentConsensusNet):
    """MDT-Net on a torchvision-named ResNet; input ``(B, C, segments * segment_frames, H, W)``."""

    def __init__(
        self,
        *,
        frames: int,
        segment_frames: int = 5,
        key_frame: int | None = None,
        reduction: int = 16,
        salience: bool = True,
        **kwargs,
    ) -> None:
        if frames % segment_frames:
            raise ConfigError(
                f"mdt: model.frames={frames} must be a multiple of model.options.segment_frames={segment_frames} (segments x frames per segment)"
            )
        segments = Segments(frames // segment_frames)
        self.segment_frames = segment_frames
        self.key_frame = min(3, segment_frames - 1) if key_frame is None else key_frame
        if not 0 <= self.key_frame < segment_frames:
            raise ConfigError(f"mdt: model.options.key_frame={key_frame} must be in [0, {segment_frames})")
        self.use_salience = salience

        def residual_hook(channels: int, name: str):
            return CoarseDifference(channels, segments, reduction) if name.endswith(".0") else None

        def conv1_hook(channels: int, name: str):
            return nn.Sequential(
                DeformableMotionExcitation(channels, segments, reduction), ChannelExcitation(channels, segments, reduction)
            )

        super().__init__(frames=frames, segments=segments, residual_hook=residual_hook, conv1_hook=conv1_hook, **kwargs)
        in_channels = self.conv1.in_channels
        diff_channels = in_channels * max(segment_frames - 1, 1)
        self.fine_diff = FineDifference(diff_channels, self.conv1.out_channels)
        self.fine_diff.reset_parameters_after_backbone()

    def key_frames(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B*S, C, H, W)`` salience-enhanced key frames and ``(B*S, C*(L-1), H, W)`` fine differences."""
        b, c, t, h, w = clip.shape
        length = self.segment_frames
        if t % length:
            raise ValueError(f"mdt: a clip of {t} frames does not split into segments of {length}")
        s = t // length
        frames = clip.transpose(1, 2).reshape(b, s, length, c, h, w)
        key = frames[:, :, self.key_frame]  # (B, S, C, H, W)
        if length > 1:
            differences = (frames[:, :, 1:] - frames[:, :, :-1]).reshape(b, s, (length - 1) * c, h, w)
            salience = motion_salience(frames.flatten(0, 1)).view(b, s, 1, h, w)
        else:
            differences = torch.zeros_like(key)
            differences[:, :-1] = key[:, 1:] - key[:, :-1]
            salience = motion_salience(key).view(b, 1, 1, h, w)
        if self.use_salience:
            key = key * (1 + salience)
        return key.flatten(0, 1), differences.flatten(0, 1)

    def frame_maps(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.dim() != 5:
            raise ValueError(f"expected a clip (B, C, T, H, W), got shape {tuple(clip.shape)}")
        key, differences = self.key_frames(clip)
        self.segments.frames = clip.shape[2] // self.segment_frames
        stem = self.relu(self.bn1(self.conv1(key))) + self.fine_diff(differences)
        return self.stages(self.maxpool(stem))


def build(args: BuildArgs) -> MDTNet:
    backbone, own = backbone_options(
        args, "mdt", {"segment_frames": 5, "key_frame": None, "reduction": 16, "salience": True}
    )
    return MDTNet(
        num_classes=args.num_classes,
        dropout=args.dropout,
        frames=args.frames,
        segment_frames=int(own["segment_frames"]),
        key_frame=None if own["key_frame"] is None else int(own["key_frame"]),
        reduction=int(own["reduction"]),
        salience=bool(own["salience"]),
        **backbone,
    )


MDT = imagenet_resnet_spec(
    name="mdt",
    description="MDT-Net: Fourier motion salience, coarse/fine temporal differences, deformable motion + channel excitation on a ResNet-50 TSN",
    paper="xu-mdt",
    build=build,
    # S segments x k adjacent frames, segment-major: the layout key_frames() reads (harp.data.sampling).
    default_sampling="segment_frames",
    sizes={
        # 4 segments of 2 frames at 32x32.
        "tiny": SizePreset(frames=8, frame_size=32, options={**TINY_BACKBONE, "segment_frames": 2}),
        # The paper: 8 segments x 5 frames (key frame = the 4th), 224x224, ImageNet ResNet-50.
        "base": SizePreset(frames=40, frame_size=224, options={"depth": 50, "segment_frames": 5}),
    },
)
