"""2D -> 3D inflation (Carreira & Zisserman 2017; Anh et al. 2022, Figure 8).

A 2D kernel ``w`` of shape ``(O, I, kh, kw)`` becomes the 3D kernel ``(O, I, kt, kh, kw)`` that repeats
``w`` ``kt`` times along time and divides by ``kt``. On a "boring" clip (one frame repeated) the 3D
convolution then computes exactly the 2D one at every time step whose temporal window lies inside the
clip (the zero padding at the two ends of the clip is the only difference), so the inflated network
starts from the image network's features.

``convert_state_dict`` is the ``StateDictConverter`` of the ``imagenet`` source of ``i3d`` and
``i3d_nonlocal``: it reads a torchvision ResNet state dict (``conv1.weight``, ``bn1.*``,
``layer1.0.conv1.weight``, ..., ``downsample.0.weight``, ``fc.*``) and inflates every 4D conv weight
whose key is a 5D conv weight in the target model; batch norms and ``fc`` pass through unchanged (``fc``
is replaced by the loader when the class count differs).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["inflate_conv_weight", "inflate_state_dict", "convert_state_dict"]


def inflate_conv_weight(weight: torch.Tensor, time: int) -> torch.Tensor:
    """``(O, I, kh, kw)`` -> ``(O, I, time, kh, kw)``: the kernel repeated over time, divided by ``time``."""
    if weight.ndim != 4:
        raise ValueError(f"inflate_conv_weight expects a 4D conv weight, got shape {tuple(weight.shape)}")
    if time < 1:
        raise ValueError(f"temporal kernel size must be >= 1, got {time}")
    return weight.unsqueeze(2).repeat(1, 1, time, 1, 1) / time


def inflate_state_dict(state: Mapping[str, torch.Tensor], target: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inflate every 4D tensor of ``state`` whose key is a 5D tensor in ``target`` (a model or its state dict).

    The temporal size comes from the target's shape; spatial sizes must agree (else the tensor is left
    as is, for the loader to report). Keys absent from the target and non-conv tensors pass through.
    """
    shapes = {k: v.shape for k, v in (target.state_dict() if isinstance(target, nn.Module) else target).items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        shape = shapes.get(key)
        if (
            shape is not None
            and isinstance(value, torch.Tensor)
            and value.ndim == 4
            and len(shape) == 5
            and tuple(value.shape) == (shape[0], shape[1], shape[3], shape[4])
        ):
            out[key] = inflate_conv_weight(value, int(shape[2]))
        else:
            out[key] = value
    return out


def convert_state_dict(state: dict[str, torch.Tensor], source: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """``FamilySpec.convert_state_dict`` for inflated ResNets: 2D weights (``imagenet``, or a 2D
    ``file:``) are inflated; 3D weights (an inflated checkpoint saved earlier) pass through unchanged."""
    return inflate_state_dict(state, model)
