"""A checkpoint is a directory that resumes a run exactly and that other tools can read.

```
<dir>/model.safetensors   weights (DDP unwrapped), metadata: family, num_classes
<dir>/state.pt            optimiser, LR schedule, epoch, global step, RNG states
                          (plain tensors and numbers: torch.load(weights_only=True) reads it)
<dir>/config.yaml         the fully resolved HarpConfig (`harp train --config` retrains it)
<dir>/metrics.json        the metrics reported with this checkpoint
```

The RNG states are Python's, NumPy's global and torch's (CPU and CUDA): the model's random stream
(dropout). The data pipeline keeps none of its own: its order and augmentation are functions of
(seed, epoch, index) (``harp.data.determinism``), so restoring these is all an exact resume needs.
"""
from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from harp.config.load import load_config, to_yaml
from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.numbers import jsonable

WEIGHTS = "model.safetensors"
STATE = "state.pt"
CONFIG = "config.yaml"
METRICS = "metrics.json"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DDP / FSDP-style wrappers (``.module``) and torch.compile (``._orig_mod``)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, nn.parallel.DistributedDataParallel) or (
            hasattr(model, "module") and isinstance(model.module, nn.Module) and type(model).__name__.endswith("DataParallel")
        ):
            model = model.module  # type: ignore[assignment]
        else:
            return model


def rng_state() -> dict[str, Any]:
    """Python, NumPy (global) and torch CPU/CUDA generator states as weights_only-safe values."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(_as_python_state(state["python"]))
    npstate = state["numpy"]
    np.random.set_state(
        (npstate["kind"], npstate["keys"].numpy().astype(np.uint32), npstate["pos"], npstate["has_gauss"], npstate["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def _as_python_state(value: Any) -> tuple:
    version, internal, gauss = value
    return (int(version), tuple(int(x) for x in internal), gauss)


def save_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    cfg: HarpConfig,
    metrics: Mapping[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    epoch: int = 0,
    global_step: int = 0,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
) -> Path:
    """Write the four files into ``directory`` (created) and return it.

    ``epoch`` is the number of completed epochs: a resumed run starts at that epoch index.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bare = unwrap(model)
    meta = {"family": cfg.model.family, "epoch": str(epoch)}
    if num_classes is not None:
        meta["num_classes"] = str(num_classes)
    save_model(bare, str(directory / WEIGHTS), metadata=meta, force_contiguous=True)
    state = {
        "epoch": int(epoch),
        "global_step": int(global_step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "class_names": list(class_names) if class_names is not None else None,
        "num_classes": num_classes,
    }
    torch.save(state, directory / STATE)
    (directory / CONFIG).write_text(to_yaml(cfg))
    (directory / METRICS).write_text(json.dumps(jsonable(dict(metrics or {})), indent=2, sort_keys=True) + "\n")
    return directory


def check_checkpoint_dir(directory: str | Path) -> Path:
    directory = Path(directory)
    if not (directory / WEIGHTS).is_file():
        raise HarpError(
            f"{directory} is not a harp checkpoint (no {WEIGHTS}); pass a checkpoint directory such as "
            f"runs/train/<run>/checkpoints/epoch_0003 or an exported best/"
        )
    return directory


def read_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(directory) / STATE
    if not path.is_file():
        return {}
    return torch.load(path, map_location=map_location, weights_only=True)


def read_config(directory: str | Path) -> HarpConfig:
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise HarpError(f"{directory} has no {CONFIG}; pass the config explicitly (cfg=...)")
    return load_config([], path)


def read_metrics(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / METRICS
    return json.loads(path.read_text()) if path.is_file() else {}


def load_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    restore_rng: bool = False,
    strict: bool = True,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load weights (into the unwrapped model) and, when given, optimiser / LR schedule / RNG states.

    Returns the saved state (epoch, global_step, ...) plus ``metrics`` from metrics.json.
    """
    directory = check_checkpoint_dir(directory)
    bare = unwrap(model)
    device = next((p.device for p in bare.parameters()), torch.device("cpu"))
    hint = "is the config (model.family/size/options, num_classes) the one it was trained with?"
    try:
        missing, unexpected = load_model(bare, str(directory / WEIGHTS), strict=False, device=str(device))
    except RuntimeError as exc:  # shape mismatches
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise HarpError(f"checkpoint {directory} does not match the model ({detail}); {hint}") from exc
    if strict and (missing or unexpected):
        raise HarpError(
            f"checkpoint {directory} does not match the model: {len(missing)} missing keys "
            f"(e.g. {', '.join(sorted(missing)[:3])}), {len(unexpected)} unexpected (e.g. {', '.join(sorted(unexpected)[:3])}); {hint}"
        )
    state = read_state(directory, map_location)
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng and state.get("rng") is not None:
        set_rng_state(state["rng"])
    state["metrics"] = read_metrics(directory)
    return state
