"""Where a sweep trial's time goes: harp's own functions timed in every process that runs them.

``install()`` wraps harp's trial, loop and session functions with timers that append
``{"phase", "t0", "t1", "pid", "trial"}`` lines to the JSON-lines file named by ``$HARP_PHASE_LOG``.
``bench/sweep_overhead.py`` installs it in its own process (the plain loop, the driver's W&B
callback) and, through Ray's ``worker_process_setup_hook``, in every Ray worker (the Tune trial
actor and the TorchTrainer workers), so one file holds each trial's phases on one clock.
``breakdown()`` turns the file and the driver's trial start/end times into a per-trial table.

Only timing wrappers are added; every wrapped function runs unchanged.
"""
from __future__ import annotations

import functools
import json
import os
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

LOG_ENV = "HARP_PHASE_LOG"
_lock = threading.Lock()
_state: dict[str, Any] = {"trial": ""}

# (module, attribute, phase) for module-level functions; (module, class, method, phase) for methods.
FUNCTIONS = (
    ("harp.tune.trial", "harp_trial", "trial function"),
    ("harp.tune.trial", "trial_config", "config resolution"),
    ("harp.train.loop", "apply_runtime", "runtime settings"),
    ("harp.train.loop", "current_environment", "runtime settings"),
    ("harp.train.loop", "resolve_run", "manifest load"),
    ("harp.train.loop", "open_datasets", "datasets + loaders"),
    ("harp.train.loop", "build_loader", "datasets + loaders"),
    ("harp.train.loop", "build_model", "model build"),
    ("harp.train.loop", "build_optimizer", "model build"),
    ("harp.train.loop", "_train_epoch", "train epochs"),
    ("harp.train.loop", "_validate", "validation"),
    ("harp.train.loop", "save_checkpoint", "checkpoint + report"),
    ("harp.train.loop", "write_environment", "checkpoint + report"),
    ("harp.train.loop", "write_history", "checkpoint + report"),
    ("harp.train.loop", "train_loop", "loop"),
    ("harp.train.ray_train", "run_torch_trainer", "TorchTrainer run"),
)
METHODS = (
    ("harp.train.sessions", "TuneSession", "resume_checkpoint", "resume check"),
    ("harp.train.sessions", "_RayReportingSession", "report", "checkpoint + report"),
    ("harp.train.sessions", "LocalSession", "report", "checkpoint + report"),
    ("harp.train.sessions", "RayTrainSession", "__init__", "train worker session"),
    ("harp.train.sessions", "RayTrainSession", "prepare_model", "DDP prepare"),
    ("harp.tune.wandb_logging", "WandbCallback", "on_trial_start", "W&B (driver)"),
    ("harp.tune.wandb_logging", "WandbCallback", "on_trial_result", "W&B (driver)"),
    ("harp.tune.wandb_logging", "WandbCallback", "on_trial_complete", "W&B (driver)"),
    ("harp.tune.wandb_logging", "WandbCallback", "on_experiment_end", "W&B (driver)"),
)


def record(phase: str, t0: float, t1: float, **extra: Any) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = json.dumps({"phase": phase, "t0": t0, "t1": t1, "pid": os.getpid(), "trial": _state["trial"], **extra})
    with _lock, open(path, "a") as handle:
        handle.write(line + "\n")


def _timed(fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
    if getattr(fn, "_harp_phase", None):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if phase == "trial function":
            try:
                import ray.tune

                _state["trial"] = ray.tune.get_context().get_trial_id() or ""
            except Exception:  # noqa: BLE001 - outside Tune
                _state["trial"] = ""
        t0 = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            record(phase, t0, time.time())

    wrapper._harp_phase = phase  # type: ignore[attr-defined]
    return wrapper


class _FirstBatch:
    """An iterator that times its first ``next`` (the first batch of an epoch)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.first = inner, True

    def __iter__(self) -> _FirstBatch:
        return self

    def __next__(self) -> Any:
        if not self.first:
            return next(self.inner)
        self.first = False
        t0 = time.time()
        try:
            return next(self.inner)
        finally:
            record("first batch", t0, time.time())


def install() -> None:
    """Wrap harp's functions in this process (idempotent); a Ray ``worker_process_setup_hook``."""
    import importlib

    for module_name, attr, phase in FUNCTIONS:
        module = importlib.import_module(module_name)
        setattr(module, attr, _timed(getattr(module, attr), phase))
    for module_name, cls_name, attr, phase in METHODS:
        cls = getattr(importlib.import_module(module_name), cls_name)
        if attr in cls.__dict__:
            setattr(cls, attr, _timed(cls.__dict__[attr], phase))
    loop = importlib.import_module("harp.train.loop")
    if not getattr(loop._iterate, "_harp_phase", None):
        original = loop._iterate

        def iterate(loader: Any) -> Any:
            return _FirstBatch(original(loader))

        iterate._harp_phase = "first batch"  # type: ignore[attr-defined]
        loop._iterate = iterate


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def breakdown(events: Iterable[dict[str, Any]], starts: dict[str, float], ends: dict[str, float]) -> dict[str, list[float]]:
    """Seconds per phase for each trial (phase -> one value per trial, in trial order).

    ``starts``/``ends``: the driver's on_trial_start / on_trial_complete times per trial id. Phases
    of the TorchTrainer workers carry no trial id: they are assigned to the trial whose
    [start, end] holds them (trials run one at a time). Derived rows: actor start (driver start ->
    trial function entered), TorchTrainer start-up (run_torch_trainer entered -> first worker's loop
    entered), teardown (trial function returned -> driver saw the trial complete)."""
    per: dict[str, dict[tuple[str, int], float]] = defaultdict(lambda: defaultdict(float))
    entry: dict[str, float] = {}
    exit_: dict[str, float] = {}
    trainer_start: dict[str, float] = {}
    loop_start: dict[str, float] = {}
    ordered = sorted(starts, key=starts.get)  # type: ignore[arg-type]
    for event in events:
        trial = event.get("trial") or next((t for t in ordered if starts[t] <= event["t0"] <= ends.get(t, float("inf"))), "")
        if trial not in starts:
            continue
        phase = event["phase"]
        if phase == "trial function":
            entry[trial], exit_[trial] = event["t0"], event["t1"]
        elif phase == "TorchTrainer run":
            trainer_start[trial] = event["t0"]
        elif phase == "loop":
            loop_start[trial] = min(loop_start.get(trial, float("inf")), event["t0"])
        else:  # summed per process; the slowest process of an N-worker trial is its critical path
            per[trial][(phase, event["pid"])] += event["t1"] - event["t0"]
    out: dict[str, list[float]] = defaultdict(list)
    for trial in ordered:
        if trial in entry:  # a Tune trial (a plain run has no trial function around its loop)
            out["actor start (driver -> trial function)"].append(entry[trial] - starts[trial])
        if trial in trainer_start and trial in loop_start:
            out["TorchTrainer start-up (-> first worker loop)"].append(loop_start[trial] - trainer_start[trial])
        slowest: dict[str, float] = defaultdict(float)
        for (phase, _pid), value in per[trial].items():
            slowest[phase] = max(slowest[phase], value)
        for phase, value in slowest.items():
            out[phase].append(value)
        if trial in exit_:
            out["teardown (trial function -> driver complete)"].append(ends.get(trial, exit_[trial]) - exit_[trial])
        out["trial total (driver start -> complete)"].append(ends.get(trial, exit_.get(trial, starts[trial])) - starts[trial])
    return dict(out)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
