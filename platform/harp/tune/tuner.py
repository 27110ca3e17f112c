"""Tuner assembly: search space + base config -> a Ray Tune run in one sweep directory.

Sweep directory (``<sweep.output_dir>/<sweep.name>``)::

    sweep.json        what this sweep is: name, space file, resolved base config (export reads it)
    base_config.yaml  the resolved base config (harp config --config reads it)
    space.yaml        a copy of the search-space file
    optuna.db         the Optuna study (SQLite) unless sweep.optuna_storage names another database
    tune/             Ray Tune's experiment (trials, checkpoints of in-process trials, state)
    train_runs/       one Ray Train run per multi-worker trial (their checkpoints)
    wandb/            W&B runs (offline ones are synced with `wandb sync`)
    trials.parquet, best/   written by export

Ray 2.60 traps handled here: ``ray.init(address="local")`` by default with its own temp dir and
the dashboard on 127.0.0.1 (its State API lets Ray Train release the placement groups of
ASHA-stopped TorchTrainer trials; without it a sweep hangs); ASHA's ``time_attr`` is harp's own
``epoch`` (``training_iteration`` restarts at 1 after ``Tuner.restore``); TuneConfig's metric/mode
stay unset (they would overwrite a multi-objective searcher's lists); ``ray.tune.FailureConfig``
has a finite ``max_failures``; a sweep directory with Tune state is restored, not restarted.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harp.config.load import from_dict, to_dict, to_yaml
from harp.config.schema import HarpConfig
from harp.errors import ConfigError, HarpError
from harp.tune.searcher import HarpOptunaSearch, parse_objectives
from harp.tune.space import SearchSpace, parse_space

log = logging.getLogger("harp.tune")

SWEEP_FILE = "sweep.json"
TUNE_DIR = "tune"


@dataclass(frozen=True)
class SweepPaths:
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
    if cfg.sweep.name:
        return cfg.sweep.name
    return f"{space.name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def storage_url(cfg: HarpConfig, paths: SweepPaths) -> str:
    return cfg.sweep.optuna_storage or f"sqlite:///{paths.optuna_db.resolve()}"


def write_sweep_files(cfg: HarpConfig, space: SearchSpace, paths: SweepPaths, raw_space: dict[str, Any]) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    info = {
        "name": cfg.sweep.name,
        "space_name": space.name,
        "space_file": str(space.path) if space.path else None,
        "space": raw_space,
        "base_config": to_dict(cfg),
        "study_name": cfg.sweep.name,
        "optuna_storage": "sqlite:///optuna.db" if not cfg.sweep.optuna_storage else "<sweep.optuna_storage>",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
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


# ------------------------------------------------------------------------------------------
# Ray
# ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def ray_session(cfg: HarpConfig, *, num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[None]:
    """Start (or attach to) Ray for one sweep and shut it down afterwards.

    ``local`` starts a private instance: own temp dir, dashboard bound to 127.0.0.1 on a free port.
    Any other address (``auto``, ``ray://host:10001``) attaches to that cluster.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Every epoch checkpoints (exact resume), so Tune's "snapshotting triggered multiple times" warning
    # would repeat through the whole sweep: the snapshots are wanted, the warning is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    address = cfg.sweep.ray_address or "local"
    temp_dir = None
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address == "local":
        temp_dir = tempfile.mkdtemp(prefix="harp-ray-", dir="/tmp")
        kwargs.update(
            address="local",
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=_free_port(),
            _temp_dir=temp_dir,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except Exception as exc:
        raise HarpError(f"could not start Ray at sweep.ray_address={address!r}: {str(exc).splitlines()[0]}") from exc
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# Tune pieces
# ------------------------------------------------------------------------------------------
def build_scheduler(cfg: HarpConfig, max_epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    sweep = cfg.sweep
    if sweep.scheduler == "asha":
        return ASHAScheduler(
            time_attr="epoch",  # harp's own counter: training_iteration restarts at 1 after a restore
            metric=sweep.metric,
            mode=sweep.mode,
            max_t=max(1, int(max_epochs)),
            grace_period=max(1, min(sweep.grace_period, int(max_epochs))),
            reduction_factor=max(2, sweep.reduction_factor),
        )
    if sweep.scheduler == "median":
        return MedianStoppingRule(
            time_attr="epoch",
            metric=sweep.metric,
            mode=sweep.mode,
            grace_period=max(1, sweep.grace_period),
            min_samples_required=3,
        )
    return FIFOScheduler()


def build_searcher(cfg: HarpConfig, space: SearchSpace, paths: SweepPaths, *, check_fresh: bool) -> HarpOptunaSearch:
    sweep = cfg.sweep
    objectives = parse_objectives(sweep.metric, sweep.mode, sweep.objectives)
    url = storage_url(cfg, paths)
    if check_fresh and sweep.optuna_storage:
        # One study per sweep: a fresh sweep must not append to an older study of the same name.
        import optuna

        try:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage=url)]
        except Exception as exc:
            raise ConfigError(f"sweep.optuna_storage: cannot open the study database ({str(exc).splitlines()[0]})") from exc
        if sweep.name in names:
            raise ConfigError(
                f"an Optuna study named '{sweep.name}' already exists in sweep.optuna_storage; "
                "pick a new sweep.name (or resume that sweep from its directory)"
            )
    return HarpOptunaSearch(
        space,
        objectives=objectives,
        storage_url=url,
        study_name=str(sweep.name),
        sampler=sweep.searcher,
        seed=sweep.seed,
        num_samples=sweep.num_samples,
        planned_epochs=cfg.train.epochs,
    )


def trial_resources(config: dict[str, Any], *, workers: int, cpus: float, gpus: float) -> dict[str, float]:
    """Resources of one Tune trial (a function of its sampled config).

    A 1-worker trial trains in its own process: it reserves the trial's CPUs/GPUs. A multi-worker
    trial's process only drives a TorchTrainer whose workers reserve the CPUs/GPUs themselves
    (``cpus_per_trial``/``gpus_per_trial`` split across them), so it asks for nothing."""
    workers = int(config.get("train.num_workers", workers))
    if workers > 1:
        # Ray refuses an empty bundle; a token amount of memory reserves nothing that matters.
        return {"cpu": 0.0, "gpu": 0.0, "memory": float(2**20)}
    return {"cpu": float(cpus), "gpu": float(gpus)}


def _confusion_for(metric: str, mode: str) -> Any:
    from functools import partial

    from harp.export import trial_confusion

    return partial(trial_confusion, metric=metric, mode=mode)


@dataclass
class SweepOutcome:
    name: str
    paths: SweepPaths
    results: Any  # ray.tune.ResultGrid
    restored: bool


def prepare_sweep(cfg: HarpConfig, space: SearchSpace) -> tuple[HarpConfig, SweepPaths]:
    """Fill in the sweep name (and grid size) and return the sweep directory."""
    name = sweep_name(cfg, space)
    cfg.sweep.name = name
    if cfg.sweep.searcher == "grid":
        points = len(space.grid_points())
        if cfg.sweep.num_samples != points:
            log.info("grid search: %d combinations (sweep.num_samples=%d ignored)", points, cfg.sweep.num_samples)
        cfg.sweep.num_samples = points
    root = Path(cfg.sweep.output_dir) / name
    return cfg, SweepPaths(root.resolve() if "://" not in cfg.sweep.output_dir else root)


def run_sweep(
    cfg: HarpConfig,
    space: SearchSpace,
    *,
    raw_space: dict[str, Any] | None = None,
    verbose: int = 1,
    extra_callbacks: tuple = (),
    stop: Any = None,
) -> SweepOutcome:
    """Run (or resume) the sweep; Ray must already be initialised (see ``ray_session``)."""
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

    from harp.tune.trial import harp_trial
    from harp.tune.wandb_logging import WandbCallback

    cfg, paths = prepare_sweep(cfg, space)
    restored = paths.has_tune_state()
    if restored:
        log.info("resuming sweep %s from %s", cfg.sweep.name, paths.tune)
    else:
        write_sweep_files(cfg, space, paths, raw_space or {})
    base = to_dict(cfg)
    from functools import partial

    trainable = tune.with_resources(
        tune.with_parameters(harp_trial, base=base, sweep_dir=str(paths.root)),
        partial(trial_resources, workers=cfg.train.num_workers, cpus=cfg.sweep.cpus_per_trial, gpus=cfg.sweep.gpus_per_trial),
    )
    if restored:
        tuner = Tuner.restore(str(paths.tune), trainable=trainable, resume_unfinished=True, resume_errored=True)
        return SweepOutcome(cfg.sweep.name, paths, tuner.fit(), True)

    searcher = build_searcher(cfg, space, paths, check_fresh=True)
    max_epochs = int(space.max_value("train.epochs", cfg.train.epochs))
    callbacks = [
        WandbCallback(
            sweep_name=cfg.sweep.name,
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            mode=cfg.wandb.mode,
            directory=paths.root,
            base_config=base,
            confusion=_confusion_for(cfg.sweep.metric, cfg.sweep.mode),
        ),
        *extra_callbacks,
    ]
    tuner = Tuner(
        trainable,
        tune_config=TuneConfig(
            # metric/mode deliberately unset: the searcher and scheduler carry their own
            search_alg=searcher,
            scheduler=build_scheduler(cfg, max_epochs),
            num_samples=cfg.sweep.num_samples,
            max_concurrent_trials=cfg.sweep.max_concurrent_trials,
            reuse_actors=False,
        ),
        run_config=RunConfig(
            name=TUNE_DIR,
            storage_path=str(paths.root),
            checkpoint_config=CheckpointConfig(
                num_to_keep=2,
                checkpoint_score_attribute=cfg.sweep.metric,
                checkpoint_score_order=cfg.sweep.mode,
            ),
            failure_config=FailureConfig(max_failures=max(0, cfg.sweep.max_failures), fail_fast=False),
            callbacks=callbacks,
            stop=stop,
            verbose=verbose,  # Tune's status table (trial, status, epoch, metrics), not a wall of logs
            log_to_file=True,
        ),
    )
    return SweepOutcome(cfg.sweep.name, paths, tuner.fit(), False)


__all__ = [
    "SweepOutcome",
    "SweepPaths",
    "build_scheduler",
    "build_searcher",
    "prepare_sweep",
    "ray_session",
    "read_sweep",
    "run_sweep",
    "storage_url",
    "sweep_name",
    "trial_resources",
    "write_sweep_files",
]
