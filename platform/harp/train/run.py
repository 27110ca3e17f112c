"""Run set-up shared by training and evaluation: what a run's data and model are, which device
and precision it runs on, and the forward pass over (possibly multi-view) batches.

One copy, so that ``harp evaluate`` builds the model, normalises clips and averages views exactly
as the training loop did.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from harp.config.schema import HarpConfig, ModelConfig, SamplingConfig, SamplingMethod
from harp.data.manifest import class_names, ensure_manifest, load_manifest
from harp.data.transforms import to_model_input
from harp.errors import ConfigError, HarpError
from harp.models import resolve
from harp.models.registry import ResolvedModel

log = logging.getLogger("harp.train")


@dataclasses.dataclass
class RunData:
    """What a run needs from the data pipeline, resolved once.

    ``model.mean``/``model.std`` are what the pretraining source's weights want as input
    (``harp.models.input_norm``); ``sampling`` is ``cfg.sampling`` with the family's defaults filled
    in (``sampling_config``): pass it to ``harp.data.loader.build_dataset``."""

    class_names: list[str]
    model: ResolvedModel
    frames: int
    frame_size: int
    split_sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # usable videos per split
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)


def resolve_run(cfg: HarpConfig) -> RunData:
    """Manifest (synthesised/indexed when missing), class names, and the model's clip shape.

    ``sampling.num_frames`` overrides the family's default frames, for the model as well as the
    clips (a family with a fixed time embedding must be built for the frames it will see).
    """
    df = load_manifest(ensure_manifest(cfg.data, progress=False))
    names = class_names(df)
    sizes = {str(k): int(v) for k, v in df[df["error"] == ""]["split"].value_counts().items()}
    resolved = resolve(model_config(cfg), len(names))
    return RunData(
        class_names=list(names),
        model=resolved,
        frames=resolved.frames,
        frame_size=resolved.frame_size,
        split_sizes=sizes,
        sampling=sampling_config(cfg, resolved),
    )


def sampling_config(cfg: HarpConfig, resolved: ResolvedModel) -> SamplingConfig:
    """``cfg.sampling`` with the family's defaults filled in: ``method`` (the family's
    ``default_sampling`` when unset: MDT-Net's adjacent frames per segment, TSN's segments, C3D's
    consecutive frames, else uniform), ``num_frames`` (the model's) and ``segment_frames`` (the
    model's ``options.segment_frames`` when it has one, so the clips are laid out as the model reads
    them; a different explicit value is an error)."""
    method = SamplingMethod(cfg.sampling.method or resolved.default_sampling)
    wanted = resolved.args.options.get("segment_frames")
    k = cfg.sampling.segment_frames
    if k is not None and wanted is not None and int(k) != int(wanted):
        raise ConfigError(
            f"sampling.segment_frames={k} but the {resolved.spec.name} model reads segments of model.options.segment_frames={wanted}; set one of them"
        )
    k = int(k if k is not None else (wanted if wanted is not None else 1))
    if k < 1:
        raise ConfigError(f"sampling.segment_frames={k} must be >= 1 (adjacent frames per segment)")
    frames = int(cfg.sampling.num_frames or resolved.frames)
    if method == SamplingMethod.segment_frames and frames % k:
        raise ConfigError(
            f"sampling.method=segment_frames: {frames} frames do not split into segments of {k}; "
            f"set model.frames to a multiple of {k} (segments x frames per segment)"
        )
    if wanted is not None and int(wanted) > 1 and method != SamplingMethod.segment_frames:
        log.warning(
            "%s reads its clip as segments of %s adjacent frames; sampling.method=%s spreads them instead "
            "(the paper's layout is sampling.method=segment_frames)", resolved.spec.name, wanted, method,
        )
    return dataclasses.replace(cfg.sampling, method=method, num_frames=frames, segment_frames=k)


def model_config(cfg: HarpConfig) -> ModelConfig:
    """cfg.model with ``sampling.num_frames`` applied as the model's frames (when set): build the
    run's model with ``harp.models.build_model(model_config(cfg), num_classes)``."""
    frames, sampled = cfg.model.frames, cfg.sampling.num_frames
    if sampled and frames and sampled != frames:
        raise ConfigError(f"model.frames={frames} but sampling.num_frames={sampled}: the model would get clips of another length; set one of them")
    if sampled and not frames:
        return dataclasses.replace(cfg.model, frames=sampled)
    return cfg.model


def default_device(cfg: HarpConfig) -> torch.device:
    """cuda when a GPU exists and train.use_gpu is not False; an explicit True without a GPU is an error."""
    has_gpu = torch.cuda.is_available()
    if cfg.train.use_gpu and not has_gpu:
        raise HarpError("train.use_gpu=true but no CUDA GPU is visible; set train.use_gpu=false or run on a GPU node")
    return torch.device("cuda", torch.cuda.current_device()) if (has_gpu and cfg.train.use_gpu is not False) else torch.device("cpu")


def autocast_dtype(cfg: HarpConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on GPU (precision=auto) or when asked for; None -> fp32."""
    if cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """torch.autocast to ``dtype`` on ``device``'s type, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward_views(
    model: nn.Module, batch: Mapping[str, Any], device: torch.device, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, V, K), labels (B,)) for a batch of B samples with V views each (V=1 in training).

    The loader yields uint8 clips; normalisation happens here, on the device.
    """
    clip = batch["video"].to(device, non_blocking=True)
    labels = torch.as_tensor(batch["label"]).to(device, non_blocking=True).long().view(-1)
    logits = model(to_model_input(clip, mean, std))
    views = logits.shape[0] // max(1, labels.shape[0])
    if views * labels.shape[0] != logits.shape[0]:
        raise HarpError(f"{logits.shape[0]} clips for {labels.shape[0]} labels: the loader's views do not divide evenly")
    return logits.view(labels.shape[0], views, -1), labels


def micro_batch_size(cfg: HarpConfig, world_size: int) -> int:
    """Per-worker, per-step batch: train.batch_size is global, reached with grad_accum_steps."""
    per = world_size * cfg.train.grad_accum_steps
    if cfg.train.batch_size % per:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is not divisible by train.num_workers x train.grad_accum_steps "
            f"= {world_size} x {cfg.train.grad_accum_steps}; pick a multiple of {per}"
        )
    return cfg.train.batch_size // per


__all__ = [
    "RunData", "autocast", "autocast_dtype", "default_device", "forward_views", "micro_batch_size", "model_config", "resolve_run",
    "sampling_config",
]  # fmt: skip
