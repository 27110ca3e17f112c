"""A checkpoint is a directory that resumes a run exactly and that other tools can read.

```
<dir>/model.safetensors   weights (DDP unwrapped); metadata that rebuilds and feeds the model from
                          the file alone (``ModelCard``): family, size, options, frames, frame
                          size, dropout, class names, input mean/std, the resolved config
<dir>/state.pt            optimiser, LR schedule, epoch, global step, RNG states
                          (plain tensors and numbers: torch.load(weights_only=True) reads it)
<dir>/config.yaml         the fully resolved HarpConfig (`harp train --config` retrains it)
<dir>/metrics.json        the metrics reported with this checkpoint
<dir>/val_confusion.json  the val split's confusion matrix behind those metrics (``harp.train.val_confusion``)
```

The weights describe themselves so that a ``best/model.safetensors`` copied anywhere is usable
without the data set or the training code's config (``harp predict``, ``harp.serve.load_model``).
Metadata values are strings (safetensors' rule): lists and mappings as JSON, the config as YAML.

The RNG states are Python's, NumPy's global and torch's (CPU and CUDA): the model's random stream
(dropout). The data pipeline keeps none of its own: its order and augmentation are functions of
(seed, epoch, index) (``harp.data.determinism``), so restoring these is all an exact resume needs.
"""
from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from harp.config.load import from_dict, load_config, to_yaml
from harp.config.schema import HarpConfig, ModelConfig, ModelSize
from harp.errors import HarpError
from harp.models import resolve
from harp.numbers import jsonable
from harp.train.run import model_config

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
    meta = weights_metadata(cfg, num_classes=num_classes, class_names=class_names, epoch=epoch)
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


# ------------------------------------------------------------------------------------------
# weights that describe themselves
# ------------------------------------------------------------------------------------------
def weights_metadata(
    cfg: HarpConfig, *, num_classes: int | None = None, class_names: Sequence[str] | None = None, epoch: int = 0
) -> dict[str, str]:
    """The safetensors metadata of a run's weights: what ``read_model_card`` needs to rebuild the
    model (family, size, options, frames, frame size, dropout, class count) and to feed it (class
    names, the input mean/std the run normalised with, the whole resolved config for its sampling
    and test protocol)."""
    classes = num_classes or (len(class_names) if class_names else None) or cfg.model.num_classes
    meta = {"format": "pt", "family": str(cfg.model.family), "epoch": str(epoch), "config": to_yaml(cfg)}
    if class_names:
        meta["class_names"] = json.dumps([str(name) for name in class_names])
    if classes:
        resolved = resolve(model_config(cfg), int(classes))
        meta.update(
            num_classes=str(int(classes)),
            size=str(resolved.args.size),
            options=json.dumps(jsonable(dict(cfg.model.options))),
            frames=str(resolved.frames),
            frame_size=str(resolved.frame_size),
            dropout=repr(float(resolved.args.dropout)),
            mean=json.dumps([float(v) for v in resolved.mean]),
            std=json.dumps([float(v) for v in resolved.std]),
        )
    return meta


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a weights file says about its model: how to rebuild it (``model_config``) and how to
    feed it (clip shape, normalisation, class names, and the run's config for its sampling and
    multi-view test protocol)."""

    path: Path  # the .safetensors file
    family: str
    size: str
    options: dict[str, Any]
    frames: int
    frame_size: int
    dropout: float | None
    class_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    config: HarpConfig

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def model_config(self) -> ModelConfig:
        """The ModelConfig that builds this architecture; weights come from the file, so no pretraining source."""
        return ModelConfig(
            family=self.family, size=ModelSize(self.size), num_classes=self.num_classes, frames=self.frames,
            frame_size=self.frame_size, dropout=self.dropout, pretrained="none", options=dict(self.options),
        )


def read_model_card(weights: str | Path) -> ModelCard:
    """The ``ModelCard`` of a ``.safetensors`` file written by ``save_checkpoint``.

    Files from before the weights described themselves fall back to what lies next to them: the
    ``config.yaml`` for the architecture and ``state.pt`` for the class names.
    """
    weights = Path(weights)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise HarpError(f"{weights} is not a readable safetensors file ({exc}); pass a best/ directory or its model.safetensors") from exc
    if "config" in meta:
        cfg = from_dict(yaml.safe_load(meta["config"]))
    elif (weights.parent / CONFIG).is_file():
        cfg = read_config(weights.parent)
    else:
        raise HarpError(f"{weights} does not say which model it holds (no config metadata, no {CONFIG} beside it); re-export it with this harp")
    names = json.loads(meta["class_names"]) if "class_names" in meta else read_state(weights.parent).get("class_names")
    if not names:
        raise HarpError(f"{weights} does not name its classes (no class_names metadata, no {STATE} beside it); re-export it with this harp")
    if "frames" in meta:
        size, options = meta["size"], json.loads(meta["options"])
        frames, frame_size, dropout = int(meta["frames"]), int(meta["frame_size"]), float(meta["dropout"])
        mean, std = tuple(json.loads(meta["mean"])), tuple(json.loads(meta["std"]))
    else:  # the architecture from the config, normalisation from the family as it was then
        resolved = resolve(model_config(cfg), len(names))
        size, options = str(resolved.args.size), dict(cfg.model.options)
        frames, frame_size, dropout = resolved.frames, resolved.frame_size, float(resolved.args.dropout)
        mean, std = tuple(resolved.mean), tuple(resolved.std)
    return ModelCard(
        path=weights, family=meta.get("family", cfg.model.family), size=size, options=options, frames=frames, frame_size=frame_size,
        dropout=dropout, class_names=tuple(str(n) for n in names), mean=mean, std=std, config=cfg,
    )


def load_weights(weights: str | Path, model: nn.Module, *, strict: bool = True) -> None:
    """Load a safetensors file into (the unwrapped) ``model``, on the model's device; a mismatch is one line."""
    bare = unwrap(model)
    device = next((p.device for p in bare.parameters()), torch.device("cpu"))
    hint = "is the config (model.family/size/options, num_classes) the one it was trained with?"
    try:
        missing, unexpected = load_model(bare, str(weights), strict=False, device=str(device))
    except RuntimeError as exc:  # shape mismatches
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise HarpError(f"checkpoint {weights} does not match the model ({detail}); {hint}") from exc
    if strict and (missing or unexpected):
        raise HarpError(
            f"checkpoint {weights} does not match the model: {len(missing)} missing keys "
            f"(e.g. {', '.join(sorted(missing)[:3])}), {len(unexpected)} unexpected (e.g. {', '.join(sorted(unexpected)[:3])}); {hint}"
        )


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
    load_weights(directory / WEIGHTS, model, strict=strict)
    state = read_state(directory, map_location)
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng and state.get("rng") is not None:
        set_rng_state(state["rng"])
    state["metrics"] = read_metrics(directory)
    return state
