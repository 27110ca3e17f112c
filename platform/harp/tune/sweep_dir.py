"""The sweep directory: its layout, and the files that say what the sweep is.

``<sweep.output_dir>/<sweep.name>``::

    sweep.json        what this sweep is: name, space file, resolved base config (export reads it)
    base_config.yaml  the resolved base config (harp config --config reads it)
    space.yaml        a copy of the search-space file
    optuna.db         the Optuna study (SQLite) unless sweep.optuna_storage names another database
    tune/             Ray Tune's experiment (trials, checkpoints of in-process trials, state)
    train_runs/       one Ray Train run per multi-worker trial (their checkpoints)
    wandb/            W&B runs (offline ones are synced with `wandb sync`)
    trials.parquet, best/   written by export

The sweep runner writes it, export and ``--resume`` read it: one module, so both agree.
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harp.config.load import from_dict, to_dict, to_yaml
from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.tune.space import SearchSpace, parse_space

SWEEP_FILE = "sweep.json"
TUNE_DIR = "tune"


@dataclass(frozen=True)
class SweepPaths:
    """Where each part of one sweep lives (the layout above)."""

    root: Path

    @property
    def tune(self) -> Path:
        return self.root / TUNE_DIR

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def wandb(self) -> Path:
        return self.root / "wandb"

    @property
    def train_runs(self) -> Path:
        return self.root / "train_runs"

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def trials(self) -> Path:
        return self.root / "trials.parquet"

    @property
    def sweep_file(self) -> Path:
        return self.root / SWEEP_FILE

    def has_tune_state(self) -> bool:
        return (self.tune / "tuner.pkl").exists()


def sweep_name(cfg: HarpConfig, space: SearchSpace) -> str:
    """``sweep.name``, or the space's name and the start time."""
    if cfg.sweep.name:
        return cfg.sweep.name
    return f"{space.name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def storage_url(cfg: HarpConfig, paths: SweepPaths) -> str:
    """The Optuna storage: ``sweep.optuna_storage``, or SQLite in the sweep directory."""
    return cfg.sweep.optuna_storage or f"sqlite:///{paths.optuna_db.resolve()}"


def write_sweep_files(cfg: HarpConfig, space: SearchSpace, paths: SweepPaths, raw_space: dict[str, Any]) -> None:
    """``sweep.json``, ``base_config.yaml`` and ``space.yaml`` of a fresh sweep."""
    paths.root.mkdir(parents=True, exist_ok=True)
    info = {
        "name": cfg.sweep.name,
        "space_name": space.name,
        "space_file": str(space.path) if space.path else None,
        "space": raw_space,
        "base_config": to_dict(cfg),
        "study_name": cfg.sweep.name,
        "optuna_storage": "sqlite:///optuna.db" if not cfg.sweep.optuna_storage else "<sweep.optuna_storage>",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    paths.sweep_file.write_text(json.dumps(info, indent=2, default=str) + "\n")
    (paths.root / "base_config.yaml").write_text(to_yaml(cfg))
    if space.path is not None and Path(space.path).is_file():
        shutil.copyfile(space.path, paths.root / "space.yaml")


def read_sweep(sweep_dir: str | Path) -> tuple[HarpConfig, SearchSpace, SweepPaths]:
    """The base config and space a sweep directory was started with."""
    paths = SweepPaths(Path(sweep_dir))
    if not paths.sweep_file.is_file():
        raise HarpError(f"{sweep_dir} is not a harp sweep directory (no {SWEEP_FILE}); pass the directory `harp sweep` printed")
    info = json.loads(paths.sweep_file.read_text())
    cfg = from_dict(info["base_config"])
    space = parse_space(info.get("space") or {}, name=info.get("space_name") or cfg.sweep.name)
    return cfg, space, paths


__all__ = ["SWEEP_FILE", "SweepPaths", "TUNE_DIR", "read_sweep", "storage_url", "sweep_name", "write_sweep_files"]
