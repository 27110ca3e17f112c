"""Value checks the schema's types cannot express: ranges, one line per error.

Enumerated keys need no check here: they are typed by the schema's enums, so OmegaConf rejects a
bad value while the config is built. The model family is checked by ``harp.models.registry``
(the config layer does not import the models).
"""
from __future__ import annotations

from harp.config.schema import HarpConfig
from harp.errors import ConfigError


def _positive(key: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}={value!r} must be {bound}")


def validate(cfg: HarpConfig) -> None:
    """Raise ConfigError naming the first value out of its range and the range."""
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={cfg.data.val_fraction} must be in [0, 1)")
    if not 0.0 <= cfg.data.max_bad_fraction <= 1.0:
        raise ConfigError(f"data.max_bad_fraction={cfg.data.max_bad_fraction} must be in [0, 1]")
    _positive("sampling.num_frames", cfg.sampling.num_frames)
    _positive("sampling.interval", cfg.sampling.interval)
    _positive("sampling.num_clips", cfg.sampling.num_clips)
    _positive("model.frames", cfg.model.frames)
    _positive("model.frame_size", cfg.model.frame_size)
    if cfg.model.dropout is not None and not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.model.dropout} must be in [0, 1)")
    _positive("optim.lr", cfg.optim.lr)
    _positive("optim.weight_decay", cfg.optim.weight_decay, allow_zero=True)
    _positive("optim.l2", cfg.optim.l2, allow_zero=True)
    _positive("train.epochs", cfg.train.epochs)
    _positive("train.batch_size", cfg.train.batch_size)
    _positive("train.grad_accum_steps", cfg.train.grad_accum_steps)
    _positive("train.num_workers", cfg.train.num_workers)
    _positive("train.threads", cfg.train.threads)
    _positive("eval.num_clips", cfg.eval.num_clips)
    _positive("eval.num_crops", cfg.eval.num_crops)
    if cfg.eval.num_crops not in (1, 3):
        raise ConfigError(f"eval.num_crops={cfg.eval.num_crops} is not supported; use 1 (centre) or 3 (left/centre/right)")
    _positive("sweep.num_samples", cfg.sweep.num_samples)
    _positive("sweep.max_concurrent_trials", cfg.sweep.max_concurrent_trials)
    _positive("sweep.cpus_per_trial", cfg.sweep.cpus_per_trial)
    _positive("sweep.gpus_per_trial", cfg.sweep.gpus_per_trial, allow_zero=True)
