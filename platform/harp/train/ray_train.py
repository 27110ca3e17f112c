"""Run the loop data-parallel on Ray Train (V2): ``run_torch_trainer(cfg, ...) -> ray.train.Result``.

One ``TorchTrainer`` per run: ``train.num_workers`` workers, DDP over gloo on CPU and NCCL on
GPU, each worker running ``harp.train.loop.train_loop`` with a ``RayTrainSession``. The run keeps
the best checkpoints by the sweep metric (``CheckpointConfig`` num_to_keep + score attribute:
with recency-only retention the best one may already be deleted), and fails after a FINITE
number of worker and controller failures (Ray's ``controller_failure_limit`` defaults to
unlimited, and worker-group start-up timeouts count against it: a run that can never get its GPUs
would retry forever).

Starting a TorchTrainer costs ~20 s on 2 cores: single-worker runs should use the loop in-process
(``LocalSession`` / ``TuneSession``) instead; ``harp train`` and the sweep trainable do.

Ray itself is imported inside the functions that use it: it takes seconds to import.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harp.config.load import from_dict, to_dict
from harp.config.schema import HarpConfig
from harp.data.manifest import ensure_manifest
from harp.errors import HarpError, RetryableError, is_retryable
from harp.train.loop import train_loop
from harp.train.run import micro_batch_size
from harp.train.sessions import RayTrainSession

if TYPE_CHECKING:
    import pyarrow.fs

log = logging.getLogger("harp.train")

DEFAULT_NUM_TO_KEEP = 2
# How often Ray Train's controller polls its workers (Ray's default: 2 s). A worker's report waits
# in a one-slot queue until the next poll takes it, so with the default every epoch shorter than
# 2 s after the first blocks up to 2 s in ``report``, the result reaches Tune (and ASHA) up to 2 s
# late, and the run ends up to 2 s after its last epoch. harp polls every 0.5 s unless the
# environment says otherwise (a few cheap RPCs per worker and second).
POLL_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
POLL_INTERVAL_S = "0.5"


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker entry point: rebuild the config, run THE loop with a Ray Train session."""
    _quiet_report_lines(config.get("log_level", "INFO"))
    train_loop(from_dict(config["cfg"]), RayTrainSession())


def _quiet_report_lines(level: str) -> None:
    """Ray 2.60 logs every report's full metrics at INFO on a logger named after its *file*, which
    LoggingConfig(log_level) does not reach: a wall of logs per epoch. Raise that logger's level,
    and the one of Train's "Checkpoint successfully created at: ..." line (one per epoch and worker)."""
    try:
        from ray.train.v2._internal.execution import context, storage
    except ImportError:  # pragma: no cover - other Ray versions
        return
    logging.getLogger(context.__file__).setLevel(level)
    logging.getLogger(storage.__name__).setLevel(level)


def gpus_available() -> bool:
    """Whether the Ray cluster this process is connected to (or this machine) has a GPU."""
    import ray

    if ray.is_initialized():
        return ray.cluster_resources().get("GPU", 0) > 0
    return torch.cuda.is_available()


def scaling_config(cfg: HarpConfig, resources_per_worker: dict[str, float] | None = None):
    import ray.train

    if cfg.train.use_gpu is not None:
        use_gpu = bool(cfg.train.use_gpu)
    elif resources_per_worker is not None:  # a sweep trial: GPUs only when sweep.gpus_per_trial gave it some
        use_gpu = resources_per_worker.get("GPU", 0) > 0
    else:
        use_gpu = gpus_available()
    kwargs: dict[str, Any] = {"num_workers": cfg.train.num_workers, "use_gpu": use_gpu}
    if resources_per_worker:
        kwargs["resources_per_worker"] = dict(resources_per_worker)
    return ray.train.ScalingConfig(**kwargs)


def run_torch_trainer(
    cfg: HarpConfig,
    *,
    storage_path: str | Path,
    name: str,
    storage_filesystem: pyarrow.fs.FileSystem | None = None,
    callbacks: Sequence[Any] = (),
    max_failures: int | None = None,
    controller_failure_limit: int = 1,
    num_to_keep: int | None = DEFAULT_NUM_TO_KEEP,
    resources_per_worker: dict[str, float] | None = None,
    raise_on_failure: bool = True,
    log_level: str = "WARNING",
):
    """Build and fit the TorchTrainer for ``cfg``; returns the ``ray.train.Result``.

    The run lives in ``storage_path/name``: calling this again with the same name resumes from
    that run's latest checkpoint (Ray Train V2 restores a run found in its storage).
    ``storage_path`` is a local path, a URI (``s3://bucket/runs/x/train_runs``: pyarrow resolves
    it from the environment), or a path on ``storage_filesystem`` (a sweep directory's filesystem):
    the workers write their checkpoints there themselves.
    ``max_failures`` defaults to ``sweep.max_failures``; both limits must be finite (>= 0).
    ``raise_on_failure``: a failed run raises HarpError with Ray's reason (otherwise the Result
    carries it in ``.error``). ``log_level`` quiets Ray Train's own per-report INFO lines
    (progress comes from callbacks: Tune's table, or ``harp train``'s epoch lines).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    max_failures = cfg.sweep.max_failures if max_failures is None else max_failures
    if max_failures < 0 or controller_failure_limit < 0:
        raise HarpError(
            f"max_failures={max_failures}, controller_failure_limit={controller_failure_limit}: both must be finite (>= 0), "
            "or a run that can never start (e.g. no free GPU) retries forever"
        )
    micro_batch_size(cfg, cfg.train.num_workers)  # a bad batch split fails here, not after ~20 s of start-up
    # Synthesise / index once here, not concurrently in every worker.
    ensure_manifest(cfg.data, progress=False)
    scaling = scaling_config(cfg, resources_per_worker)
    os.environ.setdefault(POLL_INTERVAL_ENV, POLL_INTERVAL_S)  # Ray passes it on to the controller it starts
    # Train V2's configs take logging_config and controller_failure_limit; the annotations mypy finds are Train V1's.
    run_config = ray.train.RunConfig(  # type: ignore[call-arg]
        name=name,
        storage_path=str(storage_path),
        storage_filesystem=storage_filesystem,
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=num_to_keep,
            checkpoint_score_attribute=cfg.sweep.metric,
            checkpoint_score_order=cfg.sweep.mode,
        ),
        failure_config=ray.train.FailureConfig(max_failures=max_failures, controller_failure_limit=controller_failure_limit),  # type: ignore[call-arg]
        callbacks=list(callbacks) or None,
        logging_config=ray.train.LoggingConfig(log_level=log_level),
    )
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": to_dict(cfg), "log_level": log_level},
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=scaling,
        run_config=run_config,
    )
    log.info("starting a TorchTrainer with %d workers (%s) in %s/%s", cfg.train.num_workers, "GPU" if scaling.use_gpu else "CPU", storage_path, name)
    try:
        result = trainer.fit()
    except Exception as exc:  # ray.train.TrainingFailedError and friends
        if raise_on_failure:
            raise _run_failure(name, exc) from exc
        raise
    error = getattr(result, "error", None)
    if raise_on_failure and error is not None:
        raise _run_failure(name, error)
    return result


def _run_failure(name: str, exc: BaseException) -> HarpError:
    """The error a failed run raises: a worker's own deterministic ``HarpError`` (the same
    config fails the same way: not worth a retry) as it is, anything else (a killed or crashed
    worker, a lost node) as a ``RetryableError`` with Ray's reason."""
    cause = _harp_cause(exc)
    if cause is not None and not is_retryable(cause):
        return HarpError(f"training run {name} failed: {cause}")
    return RetryableError(f"training run {name} failed: {_reason(exc)}")


def _harp_cause(exc: BaseException) -> HarpError | None:
    """The ``HarpError`` a worker raised, found in Train's ``worker_failures`` (rank -> error,
    a user error wrapped with its traceback) or along the exception chain."""
    candidates: list[BaseException] = [exc]
    failures = getattr(exc, "worker_failures", None) or {}
    candidates += list(failures.values())
    seen: set[int] = set()
    while candidates:
        node = candidates.pop(0)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, HarpError):
            return node
        # UserExceptionWithTraceback keeps the worker's exception as _base_exc (no public accessor)
        candidates += [getattr(node, "_base_exc", None), getattr(node, "cause", None), node.__cause__, node.__context__]  # type: ignore[list-item]
    return None


def _reason(exc: BaseException) -> str:
    """The innermost useful line of a Ray failure (the worker's own exception when there is one)."""
    seen: set[int] = set()
    node: BaseException | None = exc
    last = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        last = node
        node = node.__cause__ or node.__context__
    text = str(last).strip().splitlines()
    lines = [line for line in text if line.strip()]
    for line in reversed(lines):
        if "HarpError" in line or "Error" in line:
            return line.strip()
    return lines[-1].strip() if lines else type(last).__name__
