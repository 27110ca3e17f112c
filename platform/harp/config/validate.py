"""Value checks the type system cannot express: enumerations and ranges, one line per error."""
from __future__ import annotations

from harp.config import schema
from harp.config.schema import HarpConfig
from harp.errors import ConfigError


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(allowed)}")


def _positive(key: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}={value!r} must be {bound}")


def validate(cfg: HarpConfig) -> None:
    """Raise ConfigError naming the first bad value and what would be valid."""
    _choice("data.format", cfg.data.format, schema.DATA_FORMATS)
    _choice("data.val_strategy", cfg.data.val_strategy, schema.VAL_STRATEGIES)
    _choice("data.flip", cfg.data.flip, schema.FLIP_POLICIES)
    _choice("data.decode_backend", cfg.data.decode_backend, schema.DECODE_BACKENDS)
    _choice("data.short_video", cfg.data.short_video, schema.SHORT_VIDEO_MODES)
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={cfg.data.val_fraction} must be in [0, 1)")
    if not 0.0 <= cfg.data.max_bad_fraction <= 1.0:
        raise ConfigError(f"data.max_bad_fraction={cfg.data.max_bad_fraction} must be in [0, 1]")
    _choice("sampling.method", cfg.sampling.method, schema.SAMPLING_METHODS)
    _positive("sampling.num_frames", cfg.sampling.num_frames)
    _positive("sampling.interval", cfg.sampling.interval)
    _positive("sampling.num_clips", cfg.sampling.num_clips)
    _choice("model.size", cfg.model.size, schema.MODEL_SIZES)
    _positive("model.frames", cfg.model.frames)
    _positive("model.frame_size", cfg.model.frame_size)
    if cfg.model.dropout is not None and not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.model.dropout} must be in [0, 1)")
    _choice("optim.name", cfg.optim.name, schema.OPTIMIZERS)
    _choice("optim.schedule", cfg.optim.schedule, schema.SCHEDULES)
    _positive("optim.lr", cfg.optim.lr)
    _positive("optim.weight_decay", cfg.optim.weight_decay, allow_zero=True)
    _positive("optim.l2", cfg.optim.l2, allow_zero=True)
    _positive("train.epochs", cfg.train.epochs)
    _positive("train.batch_size", cfg.train.batch_size)
    _positive("train.grad_accum_steps", cfg.train.grad_accum_steps)
    _positive("train.num_workers", cfg.train.num_workers)
    _choice("train.precision", cfg.train.precision, schema.PRECISIONS)
    _positive("eval.num_clips", cfg.eval.num_clips)
    _positive("eval.num_crops", cfg.eval.num_crops)
    if cfg.eval.num_crops not in (1, 3):
        raise ConfigError(f"eval.num_crops={cfg.eval.num_crops} is not supported; use 1 (centre) or 3 (left/centre/right)")
    _choice("wandb.mode", cfg.wandb.mode, schema.WANDB_MODES)
    _choice("sweep.searcher", cfg.sweep.searcher, schema.SEARCHERS)
    _choice("sweep.scheduler", cfg.sweep.scheduler, schema.SCHEDULERS)
    _choice("sweep.mode", cfg.sweep.mode, schema.METRIC_MODES)
    _positive("sweep.num_samples", cfg.sweep.num_samples)
    _positive("sweep.max_concurrent_trials", cfg.sweep.max_concurrent_trials)
    _positive("sweep.cpus_per_trial", cfg.sweep.cpus_per_trial)
    _positive("sweep.gpus_per_trial", cfg.sweep.gpus_per_trial, allow_zero=True)
    from harp.models.registry import family_names

    _choice("model.family", cfg.model.family, tuple(family_names()))
