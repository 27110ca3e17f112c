"""Parameters and FLOPs per clip of a family, measured with ``torch.utils.flop_counter``.

Nothing is hard-coded: the model is built and one clip ``(1, C, T, H, W)`` goes through it under
``FlopCounterMode``. By default that happens on the ``meta`` device (shapes only, no arithmetic,
no memory), so a ViT-B costs a fraction of a second; a family whose forward needs real values
falls back to a real CPU forward.

Counting convention: ``flop_counter`` counts a multiply-add as 2 FLOPs (matmul, convolution,
attention). Papers (TimeSformer's 196 G, TSM/TEA/MDT's tables in 004) usually quote
multiply-accumulates under the name "FLOPs"; ``ModelCost.gmacs`` (= GFLOPs / 2) is that number.
Element-wise ops, norms, pooling, FFTs and grid sampling are not counted (they are small next to
the matmuls and convolutions, and no paper counts them either).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harp.config.schema import ModelConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelCost:
    """Size and compute of one family configuration, per clip of frames x frame_size^2."""

    family: str
    size: str
    frames: int
    frame_size: int
    num_classes: int
    params: int
    flops: int  # per clip, flop_counter convention (multiply-add = 2)

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def gmacs(self) -> float:
        """Multiply-accumulates (1e9): what papers usually call FLOPs."""
        return self.flops / 2e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device | None = None) -> int:
    """FLOPs of one forward of a zero input of ``input_shape`` (eval mode, no grad).

    ``device`` defaults to the model's own (a model built under ``torch.device("meta")`` counts
    without computing anything)."""
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        clip = torch.zeros(input_shape, device=device)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(clip)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


_CACHE: dict[tuple, ModelCost] = {}


def measure(model_cfg: ModelConfig, num_classes: int = 400) -> ModelCost:
    """Params and FLOPs per clip of a configured family (frames, frame size, options as resolved).

    Cached per resolved configuration (a sweep asks once per trial)."""
    from harp.models.registry import resolve

    resolved = resolve(model_cfg, num_classes)
    args = resolved.args
    key = (resolved.spec.name, args.size, args.frames, args.frame_size, args.num_classes, repr(sorted(args.options.items())))
    if key not in _CACHE:
        try:
            params, flops = _measure_on("meta", resolved)
        except Exception as exc:  # an op without a meta kernel, or a data-dependent forward
            logger.debug("meta-device FLOP count of %s failed (%s); counting on CPU", key[0], exc)
            params, flops = _measure_on("cpu", resolved)
        _CACHE[key] = ModelCost(*key[:5], params=params, flops=flops)
    return _CACHE[key]


def _measure_on(device: str, resolved) -> tuple[int, int]:
    args = resolved.args
    with torch.device(device):
        model = resolved.spec.build(args)
    flops = count_flops(model, (1, 3, args.frames, args.frame_size, args.frame_size), device=device)
    return count_params(model), flops


def model_cost(family: str, size: str = "tiny", num_classes: int = 400, **overrides) -> ModelCost:
    """Shorthand: ``model_cost("tsm", "base")``; overrides are ModelConfig fields (frames=16, ...)."""
    return measure(ModelConfig(family=family, size=size, **overrides), num_classes)
