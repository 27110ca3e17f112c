"""The sweep directory: its layout, and the files that say what the sweep is.

``<sweep.output_dir>/<sweep.name>``::

    sweep.json        what this sweep is: name, space file, resolved base config (export reads it)
    .harp-sweep.lock  held by the one process running (or cleaning) the sweep (harp.tune.lock)
    base_config.yaml  the resolved base config (harp config --config reads it)
    space.yaml        a copy of the search-space file
    optuna.db         the Optuna study (SQLite) unless sweep.optuna_storage names another database
    tune/             Ray Tune's experiment (trials, checkpoints of in-process trials, state)
    train_runs/       one Ray Train run per multi-worker trial (their checkpoints)
    wandb/            W&B runs (offline ones are synced with `wandb sync`)
    trials.parquet, best/   written by export

``sweep.output_dir`` may be a URI (``s3://bucket/runs``): then the directory's files are read and
written through its filesystem, and what an object store cannot hold stays on the driver
(``harp.tune.sweep_location``: ``SweepPaths``, re-exported here).

The sweep runner writes it, export and ``--resume`` read it: one module, so both agree. A fresh
sweep never starts in a directory that holds one (``check_sweep_dir``), and a resumed one is
compared with what the directory was started with (``sweep_differences``).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harp.config.load import from_dict, to_dict, to_yaml
from harp.config.schema import HarpConfig
from harp.errors import ConfigError, HarpError
from harp.tune.space import SearchSpace, parse_space
from harp.tune.sweep_location import (
    BEST_DIR,
    REMOTE_FILE,
    SWEEP_FILE,
    TRAIN_RUNS_DIR,
    TRIALS_FILE,
    TUNE_DIR,
    SweepPaths,
    mark_driver_dir,
    open_sweep_dir,
    recorded_driver_dir,
    sweep_paths,
    train_runs_location,
    tune_state_written,
)


def sweep_name(cfg: HarpConfig, space: SearchSpace) -> str:
    """``sweep.name``, or the space's name and the start time; a name is one directory inside
    ``sweep.output_dir``, never a path out of it."""
    if cfg.sweep.name:
        return check_sweep_name(cfg.sweep.name)
    return check_sweep_name(f"{space.name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")


def check_sweep_name(name: str) -> str:
    """``name`` if it is a plain directory name (no separator, not ``.``/``..``)."""
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ConfigError(
            f"sweep.name={name!r} must be a plain directory name (no '/', not '..'): the sweep lives in "
            "sweep.output_dir/sweep.name; set sweep.output_dir to choose where"
        )
    return name


def storage_url(cfg: HarpConfig, paths: SweepPaths) -> str:
    """The Optuna storage: ``sweep.optuna_storage``, or SQLite in the sweep directory."""
    return cfg.sweep.optuna_storage or f"sqlite:///{paths.optuna_db.resolve()}"


def _study_record(cfg: HarpConfig, paths: SweepPaths) -> str:
    """What sweep.json says about the study (never a URL with credentials: those stay in the config)."""
    if cfg.sweep.optuna_storage:
        return "<sweep.optuna_storage>"
    if paths.remote is not None:
        import socket

        return f"sqlite:///{paths.optuna_db} on the driver {socket.gethostname()} (a copy: {paths.uri('optuna.db')})"
    return "sqlite:///optuna.db"


def write_sweep_files(cfg: HarpConfig, space: SearchSpace, paths: SweepPaths, raw_space: dict[str, Any]) -> None:
    """``sweep.json``, ``base_config.yaml`` and ``space.yaml`` of a fresh sweep."""
    info = {
        "name": cfg.sweep.name,
        "space_name": space.name,
        "space_file": str(space.path) if space.path else None,
        "space": raw_space,
        "base_config": to_dict(cfg),
        "study_name": cfg.sweep.name,
        "optuna_storage": _study_record(cfg, paths),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if paths.remote is not None:
        info["driver_dir"] = str(paths.root)  # kept on resume (recorded_driver_dir)
    paths.write_text(json.dumps(info, indent=2, default=str) + "\n", SWEEP_FILE)
    paths.write_text(to_yaml(cfg), "base_config.yaml")
    if space.path is not None and Path(space.path).is_file():
        paths.storage.write_bytes(Path(space.path).read_bytes(), "space.yaml")


def check_sweep_dir(paths: SweepPaths, *, resume: bool, restorable: bool | None = None) -> None:
    """A fresh sweep needs a directory that holds none; a resumed one needs Tune's state in it.
    ``restorable`` is Tune's own verdict (``Tuner.can_restore``) when the caller has it."""
    restorable = paths.has_tune_state() if restorable is None else restorable
    if resume:
        if not restorable:
            raise ConfigError(f"{paths.where} holds no Tune state to resume; start the sweep without --resume")
        return
    if restorable or paths.exists(SWEEP_FILE):
        raise ConfigError(
            f"{paths.where} already holds a sweep: continue it with `harp sweep --resume {paths.where}`, "
            "or pick another sweep.name to start over"
        )


def _dotted(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, Mapping) or not node:
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_dotted(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


# Keys a resumed sweep may differ in without --allow-changes: where the sweep directory, its space
# file (the same file reached by another path; its params are compared) and Ray are.
_WHERE_KEYS = ("sweep.output_dir", "sweep.name", "sweep.search_space", "sweep.ray_address")
# sweep.* settings that take effect on resume (Tune rebuilds the trainable's resources); every
# other sweep setting lives in Tune's and Optuna's restored state, so a change would be ignored.
RESUMABLE_SWEEP_KEYS = ("sweep.cpus_per_trial", "sweep.gpus_per_trial")


@dataclass(frozen=True)
class SweepDifferences:
    """How a resume's space and base config differ from the sweep directory's (dotted keys)."""

    params: list[str]
    config: dict[str, tuple[Any, Any]]  # key -> (directory's value, given value)

    @property
    def fixed_settings(self) -> list[str]:
        """Changed sweep.* settings a resume cannot apply."""
        return [k for k in self.config if k.startswith("sweep.") and k not in RESUMABLE_SWEEP_KEYS]

    def describe(self, limit: int = 6) -> str:
        shown = [f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in list(self.config.items())[:limit]]
        more = len(self.config) - len(shown)
        return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def sweep_differences(paths: SweepPaths, cfg: HarpConfig, raw_space: Mapping[str, Any]) -> SweepDifferences:
    """Compare a resume's base config and space ``params`` with those the directory was started with."""
    info = json.loads(paths.read_text(SWEEP_FILE))
    stored_params = dict((info.get("space") or {}).get("params") or {})
    given_params = dict(raw_space.get("params") or {})
    params = sorted(k for k in stored_params.keys() | given_params.keys() if stored_params.get(k) != given_params.get(k))
    stored, given = _dotted(info.get("base_config") or {}), _dotted(to_dict(cfg))
    missing = object()
    config = {
        key: (stored.get(key), given.get(key))
        for key in sorted(stored.keys() | given.keys())
        if key not in _WHERE_KEYS and stored.get(key, missing) != given.get(key, missing)
    }
    return SweepDifferences(params, config)


def record_resume_changes(paths: SweepPaths, cfg: HarpConfig, differences: SweepDifferences) -> None:
    """A resume allowed to change the base config: the directory's files say so from now on
    (``sweep.json`` keeps a log of the changes, export reads the new base config)."""
    info = json.loads(paths.read_text(SWEEP_FILE))
    info["base_config"] = to_dict(cfg)
    info.setdefault("resumed_with_changes", []).append(
        {"at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "changes": {k: list(v) for k, v in differences.config.items()}}
    )
    paths.write_text(json.dumps(info, indent=2, default=str) + "\n", SWEEP_FILE)
    paths.write_text(to_yaml(cfg), "base_config.yaml")


def directory_size(path: str | Path | SweepPaths) -> int:
    """Bytes under ``path`` (files only; symlinks not followed); a sweep's through its filesystem."""
    if isinstance(path, SweepPaths):
        return path.storage.size() if path.remote is not None else directory_size(path.root)
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def format_size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TiB"  # pragma: no cover


def read_sweep(sweep_dir: str | Path) -> tuple[HarpConfig, SearchSpace, SweepPaths]:
    """The base config and space a sweep directory (a path or a URI) was started with."""
    paths = open_sweep_dir(sweep_dir)
    try:
        text = paths.read_text(SWEEP_FILE)
    except FileNotFoundError:
        raise HarpError(f"{paths.where} is not a harp sweep directory (no {SWEEP_FILE}); pass the directory `harp sweep` printed") from None
    except OSError as exc:
        raise HarpError(f"cannot read {paths.uri(SWEEP_FILE)} ({str(exc).splitlines()[0]}); check the storage's credentials and endpoint") from exc
    info = json.loads(text)
    paths = recorded_driver_dir(paths, existing_only=True)
    cfg = from_dict(info["base_config"])
    space = parse_space(info.get("space") or {}, name=info.get("space_name") or cfg.sweep.name)
    return cfg, space, paths


__all__ = [
    "BEST_DIR",
    "REMOTE_FILE",
    "RESUMABLE_SWEEP_KEYS",
    "SWEEP_FILE",
    "SweepDifferences",
    "SweepPaths",
    "TRAIN_RUNS_DIR",
    "TRIALS_FILE",
    "TUNE_DIR",
    "check_sweep_dir",
    "check_sweep_name",
    "directory_size",
    "format_size",
    "mark_driver_dir",
    "open_sweep_dir",
    "read_sweep",
    "record_resume_changes",
    "recorded_driver_dir",
    "storage_url",
    "sweep_differences",
    "sweep_name",
    "sweep_paths",
    "train_runs_location",
    "tune_state_written",
    "write_sweep_files",
]
