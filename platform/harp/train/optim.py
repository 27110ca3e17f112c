"""Optimisers and the two kinds of weight regularisation.

``optim.weight_decay`` is the optimiser's own decay (decoupled for AdamW, coupled into the
gradient for SGD/Adam). ``optim.l2`` is a separate knob: an explicit penalty
``0.5 * l2 * sum(w ** 2)`` added to the loss, as in 000_57caf5912cf98c58.txt (eq. 8). Neither
touches normalisation weights or biases: decaying those only hurts.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from harp.config.schema import OptimConfig
from harp.errors import ConfigError

_NORM_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def split_decay_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed): biases, norm-layer weights and 0/1-d tensors are not decayed."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, _NORM_TYPES) or name.endswith("bias") or param.ndim <= 1:
                no_decay.append(param)
            else:
                decay.append(param)
    return decay, no_decay


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """sgd (momentum, nesterov) / adam / adamw with weight_decay on the decayed group only."""
    decay, no_decay = split_decay_params(model)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "group": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "group": "no_decay"},
    ]
    groups = [g for g in groups if g["params"]]
    if cfg.name == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise ConfigError("optim.nesterov=true needs optim.momentum > 0")
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ConfigError(f"optim.name={cfg.name!r} is not valid; choose one of: sgd, adam, adamw")


def decayed_params(optimizer: torch.optim.Optimizer) -> Iterable[nn.Parameter]:
    """The parameters of the optimiser's decayed group (the ones the L2 penalty applies to)."""
    for group in optimizer.param_groups:
        if group.get("group", "decay") == "decay":
            yield from group["params"]


def l2_penalty(params: Iterable[nn.Parameter], l2: float) -> torch.Tensor | None:
    """``0.5 * l2 * sum(w ** 2)`` (000, eq. 8), or None when l2 is 0 (no graph cost)."""
    if l2 <= 0:
        return None
    squares = [p.float().pow(2).sum() for p in params]
    if not squares:
        return None
    return 0.5 * l2 * torch.stack(squares).sum()
