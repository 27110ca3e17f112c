"""Building a pretraining source on this machine: ``synthetic-src``, a related-but-different task.

The papers start from weights trained on a big related data set (Kinetics) and fine-tune them on
the small target (UCF101, HMDB51). The demo cannot download such weights offline, so it makes its
own source with the synthetic generator (``harp.data.synthetic``) and trains each family on it once;
the weights land in the weights cache (``harp.models.built_sources``) and any run loads them with
``model.pretrained=synthetic-src``, like a downloaded source (its classification head replaced).

The source task (``SOURCE_TASKS``): the generator's four classes the demo does not use --
``rotate_cw``/``rotate_ccw`` (a pair that only the direction of time tells apart, like the demo's
left/right, up/down and grow/shrink), ``blink`` (appearance over time) and ``still`` (nothing moves
but the camera) -- rendered on the scenes of another seed and at another resolution than the demo.
Related: the same world (one object on a textured background with distractors, camera shake,
sensor noise, H.264), and the same need to find the object and follow it over frames. Different:
no class in common with the demo, other scenes and clips, so nothing of the demo's test set is seen
and only what the body learnt about finding and following an object can carry over. (The other
choice, the demo's own motions on other scenes, would be the target task itself with more data,
not a pretraining source.)

The source run is an ordinary harp training run (``train_loop`` in a ``LocalSession``) of the target
run's architecture (family, size, options, clip shape), from scratch, with a fixed recipe; its last
checkpoint's weights are cached with the metadata every harp weights file carries
(``harp.train.checkpoint.weights_metadata``: family, size, options, frames, classes, input mean/std,
config) plus what the source is (``source``, ``architecture``, ``source_task``, ``source_val_top1``).
The input normalisation is the family's own (the source run starts from ``none``), which is what
``FamilySpec.source_norm`` says for a named source without an entry of its own.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from harp.config.load import load_config, to_dict
from harp.config.schema import HarpConfig, ModelConfig
from harp.data.manifest import ensure_manifest
from harp.errors import ConfigError, HarpError
from harp.models import get_family, resolve
from harp.models.built_sources import BUILT_SOURCES, architecture_key, built_source_dir, built_source_file
from harp.models.pretrained import torch_checkpoint_dir
from harp.train.checkpoint import WEIGHTS
from harp.train.loop import train_loop
from harp.train.run import model_config
from harp.train.sessions import LocalSession

log = logging.getLogger("harp.train")


@dataclasses.dataclass(frozen=True)
class SourceTask:
    """A source that harp builds: the data set it is trained on and the training recipe, as a
    config layer (any HarpConfig key; the architecture comes from the run it is built for)."""

    name: str
    summary: str
    config: Mapping[str, Any]


SOURCE_TASKS: dict[str, SourceTask] = {
    "synthetic-src": SourceTask(
        name="synthetic-src",
        summary="move_left/right/up/down, rotate_cw/ccw, blink, still on other scenes (seed 1), 48 px",
        config={
            "data": "synthetic",
            # The four classes come after the demo's six in the generator's order, so it renders all
            # ten and the manifest keeps these four; small frames and short clips make that cheap.
            "data.synth.num_classes": 10,
            "data.synth.clips_per_class": 60,
            "data.synth.seed": 1,
            "data.synth.min_size": 48,
            "data.synth.max_size": 48,
            "data.synth.min_frames": 16,
            "data.synth.max_frames": 32,
            "data.classes": ["move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw", "blink", "still"],
            "data.val_fraction": 0.1,
            "data.num_workers": 0,
            "optim.name": "adamw",
            "optim.lr": 1.0e-2,
            "optim.weight_decay": 1.0e-4,
            "optim.schedule": "cosine",
            "optim.warmup_epochs": 0.5,
            "train.epochs": 12,
            "train.batch_size": 8,
            "train.seed": 0,
            "wandb.mode": "disabled",
        },
    ),
}
assert set(SOURCE_TASKS) == set(BUILT_SOURCES), "every built source has a recipe"

# The model keys a source run takes from the run it is built for: the architecture and its clips.
_MODEL_KEYS = ("family", "size", "options", "frames", "frame_size", "dropout")


@dataclasses.dataclass(frozen=True)
class BuiltSource:
    """One family's weights of a built source: where they are, and whether this call built them."""

    source: str
    family: str
    size: str
    path: Path
    built: bool
    seconds: float = 0.0
    val_top1: float | None = None


def source_task(source: str) -> SourceTask:
    if source not in SOURCE_TASKS:
        raise ConfigError(f"{source!r} is not a source harp builds; choose one of: {', '.join(SOURCE_TASKS)}")
    return SOURCE_TASKS[source]


def default_data_root(source: str, synth: Any) -> Path:
    """Where a source's videos go unless told: beside its weights in the cache, one folder per
    generator setting (``data.synth``), so a changed recipe never trains on stale videos."""
    settings = json.dumps(dataclasses.asdict(synth), sort_keys=True)
    return built_source_dir(source, torch_checkpoint_dir()) / f"data-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"


def source_config(
    source: str, model: ModelConfig, *, data_root: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> HarpConfig:
    """The config of the run that trains ``model``'s architecture on ``source``'s task, from scratch.
    ``overrides`` change the recipe (``train.epochs=12``)."""
    task = source_task(source)
    spec = get_family(model.family)
    if source not in spec.pretrained_sources:
        raise ConfigError(
            f"{model.family} does not declare the pretraining source {source!r} (its sources: {', '.join(spec.all_sources())})"
        )
    chosen = {f"model.{key}": _plain(getattr(model, key)) for key in _MODEL_KEYS}
    layer = {**task.config, **chosen, "model.pretrained": "none", "model.num_classes": None}
    cfg = load_config(overrides, layer=layer)
    cfg.data.root = str(Path(data_root) if data_root is not None else default_data_root(source, cfg.data.synth))
    return cfg


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, str) else (dict(value) if isinstance(value, Mapping) else value)


def cache_path(source: str, model: ModelConfig) -> Path:
    """The cached weights of ``source`` for ``model``'s architecture (whether or not they exist)."""
    resolved = resolve(dataclasses.replace(model, pretrained="none"), 2)  # the head is not part of the key
    net = resolved.spec.build(resolved.args)
    return built_source_file(source, resolved.spec.name, architecture_key(net, tuple(resolved.spec.head_prefixes)), torch_checkpoint_dir())


def ensure_source(
    source: str,
    model: ModelConfig,
    *,
    data_root: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    force: bool = False,
    on_start: Callable[[Path], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> BuiltSource:
    """``source``'s weights for ``model``'s architecture: from the cache, or built now (once: a
    second process asking for the same file waits for the first and then finds it). ``on_start``
    hears where a build goes before it starts, ``on_epoch`` each epoch of the source run."""
    cfg = source_config(source, model, data_root=data_root, overrides=overrides)
    path = cache_path(source, model_config(cfg))
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file() and not force:
            return BuiltSource(source, cfg.model.family, str(cfg.model.size), path, built=False)
        if on_start is not None:
            on_start(path)
        started = time.perf_counter()
        val_top1 = _train_and_store(source, cfg, path, on_epoch)
    return BuiltSource(source, cfg.model.family, str(cfg.model.size), path, built=True, seconds=time.perf_counter() - started, val_top1=val_top1)


def _train_and_store(source: str, cfg: HarpConfig, path: Path, on_epoch: Callable[[dict[str, float]], None] | None) -> float | None:
    """Train the source run in a scratch directory beside the cache and store its last weights."""
    ensure_manifest(cfg.data, progress=False)  # synthesises the source videos on first use
    with tempfile.TemporaryDirectory(prefix=".run-", dir=path.parent) as scratch:
        session = LocalSession(cfg, scratch, keep=1, on_report=(lambda metrics, _: on_epoch(metrics)) if on_epoch else None)
        history = train_loop(cfg, session)
        if not history:
            raise HarpError(f"the {source} run of {cfg.model.family} trained no epoch (train.epochs={cfg.train.epochs})")
        last = history[-1].get("val_top1")
        val_top1 = float(last) if isinstance(last, (int, float)) and last == last else None
        _store(Path(scratch) / "latest" / WEIGHTS, path, source, cfg, val_top1)
    return val_top1


def _store(weights: Path, path: Path, source: str, cfg: HarpConfig, val_top1: float | None) -> None:
    """The run's weights under ``path`` (written beside it, then renamed: a reader never sees half a
    file), its metadata kept and the source's added."""
    with safe_open(str(weights), framework="pt") as handle:
        meta = dict(handle.metadata() or {})
    meta.update(
        source=source,
        architecture=path.stem.rpartition("-")[2],
        source_task=json.dumps({"summary": source_task(source).summary, "data": to_dict(cfg)["data"]}, sort_keys=True),
        source_val_top1=repr(val_top1),
    )
    partial = path.with_name(path.name + ".partial")
    save_file(load_file(str(weights)), str(partial), metadata=meta)
    os.replace(partial, path)


def read_source_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a cached built source (what ``harp pretrain`` prints and the tests check)."""
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


__all__ = [
    "SOURCE_TASKS", "BuiltSource", "SourceTask", "cache_path", "default_data_root", "ensure_source", "read_source_metadata",
    "source_config", "source_task",
]  # fmt: skip
