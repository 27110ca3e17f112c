"""Learning-rate schedules, stepped once per optimiser step, with linear warmup.

Schedules: ``cosine`` (to zero), ``linear`` (to zero, as Hugging Face's Trainer), ``step``
(x gamma at each milestone), ``exponential`` (x gamma per epoch), ``none``.

Milestones and decay are written in epochs (as the papers state them: the MDT-Net paper of Xu,
Cao and Yi decays at epochs 30/40/50) and converted to optimiser steps here, so gradient
accumulation or a different batch size does not change what "epoch 30" means.

(Named ``build_lr_schedule``, not "scheduler": a trial scheduler, ASHA, is something else, built in
``harp.tune``.)
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from harp.config.schema import OptimConfig
from harp.errors import ConfigError


def lr_factor(cfg: OptimConfig, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """step -> multiplier of the base lr (pure; plotted and tested without an optimiser)."""
    steps_per_epoch = max(1, int(steps_per_epoch))
    total = max(1, steps_per_epoch * int(epochs))
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    milestones = sorted(int(m) * steps_per_epoch for m in cfg.milestones)
    if cfg.schedule == "step" and not milestones:
        raise ConfigError("optim.schedule=step needs optim.milestones (in epochs), e.g. optim.milestones=[30,40,50]")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "cosine":
            span = max(1, total - warmup)
            progress = min(1.0, (step - warmup) / span)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if cfg.schedule == "step":
            return cfg.gamma ** bisect.bisect_right(milestones, step)
        if cfg.schedule == "linear":
            # Hugging Face Trainer's default (get_linear_schedule_with_warmup): from the base lr after
            # warmup down to zero at the last step (Kaur fine-tuned TimeSformer with it).
            span = max(1, total - warmup)
            return max(0.0, (total - step) / span)
        if cfg.schedule == "exponential":
            # decays by gamma per epoch, smoothly per step
            return cfg.gamma ** ((step - warmup) / steps_per_epoch)
        return 1.0  # none (the config accepts no other name)

    return factor


def build_lr_schedule(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int, epochs: int) -> LambdaLR:
    """A LambdaLR over lr_factor; its state_dict is plain numbers (loads with weights_only=True)."""
    return LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch, epochs))
