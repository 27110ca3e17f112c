"""Tuner assembly: search space + base config -> a Ray Tune run in one sweep directory.

The sweep directory's layout is in ``harp.tune.sweep_dir``, Ray's start-up in
``harp.tune.ray_session``, the searcher in ``harp.tune.searcher``.

Ray 2.60 traps handled here: ASHA's ``time_attr`` is harp's own ``epoch``
(``training_iteration`` restarts at 1 after ``Tuner.restore``); TuneConfig's metric/mode stay
unset (they would overwrite a multi-objective searcher's lists); ``ray.tune.FailureConfig`` has a
finite ``max_failures``, and a deterministic harp error is not retried at all (the schedulers of
``harp.tune.failures``).

A sweep owns its directory: it runs under the directory's lock (``harp.tune.lock``), a fresh
sweep refuses a directory that holds one, ``resume=True`` restores the Tune state there (never
implicitly), and SIGINT/SIGTERM end ``Tuner.fit`` cleanly (``harp.tune.interrupt``): the outcome
says which signal, so the caller reports an interrupted sweep instead of a finished one.

A sweep directory on remote storage (``sweep.output_dir=s3://...``, ``harp.tune.sweep_dir``) is
Tune's ``storage_path`` + ``storage_filesystem``: results and checkpoints go there from the trial
processes themselves. Its lock is on the driver (an object store has none): it keeps a second
sweep on this machine out, not one driven from another machine. Its study is
``sweep.optuna_storage`` or a SQLite file on the driver, copied to the sweep directory when the
run stops (``harp.tune.study_copy``).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from harp.cluster.storage import check_writable
from harp.config.load import to_dict
from harp.config.schema import HarpConfig
from harp.errors import ConfigError
from harp.tune.checkpoint_repair import restore_missing_checkpoints
from harp.tune.checks import check_sweep
from harp.tune.failures import AshaFailFast, FifoFailFast, MedianFailFast
from harp.tune.interrupt import stop_on_signals
from harp.tune.lock import sweep_lock
from harp.tune.params import SearchSpace
from harp.tune.results import validation_confusion
from harp.tune.searcher import HarpOptunaSearch, parse_objectives
from harp.tune.study import make_storage
from harp.tune.study_copy import fetch_study_copy, set_aside_stale_study, upload_study_copy
from harp.tune.sweep_dir import (
    TUNE_DIR,
    SweepPaths,
    check_sweep_dir,
    mark_driver_dir,
    recorded_driver_dir,
    storage_url,
    sweep_name,
    sweep_paths,
    write_sweep_files,
)
from harp.tune.trial import forces_torchtrainer, harp_trial, trial_resources
from harp.tune.wandb_logging import WandbCallback

if TYPE_CHECKING:
    from ray.tune import Callback, ResultGrid
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.stopper import Stopper

log = logging.getLogger("harp.tune")


def build_trial_scheduler(cfg: HarpConfig, max_epochs: int) -> TrialScheduler:
    """Tune's trial scheduler for ``sweep.scheduler``: ASHA or the median rule stop poor trials
    early (counted in harp's ``epoch``), ``none`` runs every trial to the end; none of them
    retries a trial whose error a retry cannot fix (``harp.tune.failures``)."""
    sweep = cfg.sweep
    if sweep.scheduler == "asha":
        return AshaFailFast(
            time_attr="epoch",  # harp's own counter: training_iteration restarts at 1 after a restore
            metric=sweep.metric,
            mode=sweep.mode,
            max_t=max(1, int(max_epochs)),
            grace_period=max(1, min(sweep.grace_period, int(max_epochs))),
            reduction_factor=max(2, sweep.reduction_factor),
        )
    if sweep.scheduler == "median":
        return MedianFailFast(
            time_attr="epoch",
            metric=sweep.metric,
            mode=sweep.mode,
            grace_period=max(1, sweep.grace_period),
            min_samples_required=3,
        )
    return FifoFailFast()


def build_searcher(cfg: HarpConfig, space: SearchSpace, paths: SweepPaths, *, check_fresh: bool) -> HarpOptunaSearch:
    """The sweep's Optuna searcher; ``check_fresh`` refuses a study name already in a shared storage."""
    sweep = cfg.sweep
    objectives = parse_objectives(sweep.metric, sweep.mode, sweep.objectives)
    url = storage_url(cfg, paths)
    if check_fresh and sweep.optuna_storage:
        # One study per sweep: a fresh sweep must not append to an older study of the same name.
        import optuna

        try:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage=make_storage(url))]  # make_storage: the fresh-database race
        except ConfigError:
            raise
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


@dataclass
class SweepOutcome:
    """What ``run_sweep`` returns: the sweep's name and directory, Tune's results, whether it was
    restored, and the signal that stopped it (None when it ran to its end)."""

    name: str
    paths: SweepPaths
    results: ResultGrid
    restored: bool
    interrupted: int | None = None


def prepare_sweep(cfg: HarpConfig, space: SearchSpace) -> tuple[HarpConfig, SweepPaths]:
    """Check the space and metrics, fill in the sweep name (and grid size) and return the sweep
    directory (``sweep.output_dir/sweep.name``, never outside ``sweep.output_dir``). A remote one
    is checked to be writable (a missing bucket or a refused credential is one line now) and gets
    its directory on this driver (when resumed, the one it was started with)."""
    check_sweep(cfg, space)
    name = sweep_name(cfg, space)
    cfg.sweep.name = name
    if cfg.sweep.searcher == "grid":
        points = len(space.grid_points())
        if cfg.sweep.num_samples != points:
            log.info("grid search: %d combinations (sweep.num_samples=%d ignored)", points, cfg.sweep.num_samples)
        cfg.sweep.num_samples = points
    paths = sweep_paths(cfg.sweep.output_dir, name)
    if paths.remote is not None:
        check_writable(paths.remote)
        paths = recorded_driver_dir(paths)
        mark_driver_dir(paths)
    return cfg, paths


def can_resume(paths: SweepPaths) -> bool:
    """Whether the sweep directory holds Tune state to restore (local or remote storage)."""
    return Tuner.can_restore(paths.tune_path, storage_filesystem=paths.filesystem)


def run_sweep(
    cfg: HarpConfig,
    space: SearchSpace,
    *,
    raw_space: dict[str, Any] | None = None,
    resume: bool = False,
    verbose: int = 1,
    extra_callbacks: Sequence[Callback] = (),
    stop: Stopper | dict[str, Any] | None = None,
) -> SweepOutcome:
    """Run the sweep, or with ``resume`` continue the one in its directory; Ray must already be
    initialised (see ``ray_session``). Raises ConfigError when the directory does not fit
    (a fresh sweep where one exists, a resume where none does) and SweepLocked when another
    process runs it."""
    cfg, paths = prepare_sweep(cfg, space)
    name = str(cfg.sweep.name)
    if paths.remote is not None:
        log.warning("%s is on %s: its lock (%s) keeps a second sweep on this machine out, not one driven from another machine",
                    paths.where, type(paths.filesystem).__name__, paths.root)
    with sweep_lock(paths.root):
        check_sweep_dir(paths, resume=resume, restorable=can_resume(paths))
        searcher = None
        if resume:
            log.info("resuming sweep %s from %s", name, paths.uri(TUNE_DIR))
            fetch_study_copy(cfg, paths)
            restore_missing_checkpoints(paths)  # a killed driver's state can name a checkpoint already deleted
        else:
            set_aside_stale_study(cfg, paths)
            searcher = build_searcher(cfg, space, paths, check_fresh=True)  # a bad study fails before any file is written
            write_sweep_files(cfg, space, paths, raw_space or {})
        base = to_dict(cfg)
        trainable = tune.with_resources(
            tune.with_parameters(harp_trial, base=base, sweep_dir=paths.where),  # a path, or the URI the trial reaches its storage by
            # A function of the trial's config returning a resource dict: Tune's Trial converts it
            # (Ray's annotation names only PlacementGroupFactory results). It lives in harp.tune.trial,
            # which the trial processes import anyway; from here they would import this module, the
            # searcher and Optuna just to unpickle it.
            partial(trial_resources, workers=cfg.train.num_workers, cpus=cfg.sweep.cpus_per_trial, gpus=cfg.sweep.gpus_per_trial),  # type: ignore[arg-type]
        )
        try:
            with stop_on_signals() as interrupted:
                if searcher is None:
                    tuner = Tuner.restore(paths.tune_path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                          storage_filesystem=paths.filesystem if paths.is_remote else None)
                else:
                    tuner = _new_tuner(cfg, space, paths, trainable, searcher, base, extra_callbacks, stop, verbose)
                with _no_tensorboard_logger():
                    results = tuner.fit()
        finally:
            upload_study_copy(cfg, paths)
        return SweepOutcome(name, paths, results, resume, interrupted.signum)


def reuses_trial_processes(cfg: HarpConfig, space: SearchSpace) -> bool:
    """Whether the sweep's trials run one after another in kept trial processes (Tune's actor reuse).

    A fresh trial process costs seconds before training starts (Ray starts a Python worker, which
    imports torch and harp and builds its first model); with reuse a finished or stopped trial's
    process takes the next trial with the same resources. That is safe for in-process (1-worker)
    trials: ``train_loop`` sets everything process-wide a run depends on at its start (seeds,
    torch threads, the deterministic switches: ``harp.train.reproduce.apply_runtime``), so a trial
    in a kept process trains exactly as in a fresh one (tests/tune/test_actor_reuse.py). Multi-worker
    trials keep a fresh process each: theirs only drives a TorchTrainer, whose worker group is
    started per trial anyway, and its shutdown could outlast Tune's wait for the reset."""
    if forces_torchtrainer():
        return False
    return int(space.max_value("train.num_workers", cfg.train.num_workers)) <= 1


_NO_AUTO_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


@contextmanager
def _no_tensorboard_logger() -> Iterator[None]:
    """Tune without its TensorBoard logger, for this fit only: nothing of harp reads its event
    files, and with it Tune prints a ``tensorboard --logdir`` hint at a temporary folder. Tune adds
    its default loggers (CSV, JSON, TensorBoard) when the fit starts unless this variable is set,
    so it is set around the fit and restored after (set for the whole process, it left other Tune
    runs there, Ray Train's own among them, without any result files). The sweep's CSV and JSON
    result files come from the callbacks ``_new_tuner`` gives it, which a restore unpickles."""
    before = os.environ.get(_NO_AUTO_LOGGERS)
    os.environ[_NO_AUTO_LOGGERS] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_NO_AUTO_LOGGERS, None)
        else:
            os.environ[_NO_AUTO_LOGGERS] = before


def _new_tuner(
    cfg: HarpConfig,
    space: SearchSpace,
    paths: SweepPaths,
    trainable: Any,
    searcher: HarpOptunaSearch,
    base: dict[str, Any],
    extra_callbacks: Sequence[Callback],
    stop: Stopper | dict[str, Any] | None,
    verbose: int,
) -> Tuner:
    max_epochs = int(space.max_value("train.epochs", cfg.train.epochs))
    callbacks = [
        CSVLoggerCallback(),  # progress.csv and result.json, which harp reads (not Tune's defaults: _no_tensorboard_logger)
        JsonLoggerCallback(),
        WandbCallback(
            sweep_name=str(cfg.sweep.name),
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            mode=cfg.wandb.mode,
            directory=paths.root,
            base_config=base,
            confusion=partial(validation_confusion, metric=cfg.sweep.metric, mode=cfg.sweep.mode),
        ),
        *extra_callbacks,
    ]
    return Tuner(
        trainable,
        tune_config=TuneConfig(
            # metric/mode deliberately unset: the searcher and scheduler carry their own
            search_alg=searcher,
            scheduler=build_trial_scheduler(cfg, max_epochs),
            num_samples=cfg.sweep.num_samples,
            max_concurrent_trials=cfg.sweep.max_concurrent_trials,
            reuse_actors=reuses_trial_processes(cfg, space),
        ),
        run_config=RunConfig(
            name=TUNE_DIR,
            storage_path=paths.storage.path,
            storage_filesystem=paths.filesystem if paths.is_remote else None,  # a local path: Ray's own LocalFileSystem
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


__all__ = ["SweepOutcome", "build_searcher", "build_trial_scheduler", "can_resume", "prepare_sweep", "run_sweep"]
