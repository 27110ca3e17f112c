"""The Ray Tune trainable: one trial = one training run of harp's loop.

- ``train.num_workers == 1``: the loop runs in-process in the Tune trial with the Tune session
  (no TorchTrainer start-up, ~20 s saved per trial on a laptop).
- ``train.num_workers > 1``: the trial starts its own ``TorchTrainer`` (Train V2) with data-parallel
  workers and forwards their rank-0 reports to Tune with ``TuneReportCallback``. The Train run's
  path is written to ``train_run.json`` in the Tune trial directory (``harp.tune.results``), so
  export finds the best checkpoint from the Train run's own results instead of guessing paths.

Cost objectives a multi-objective sweep asks for (``gflops``, ``mparams``, ``latency_ms``) are
measured once per trial and added to every report, so Optuna's NSGA-II can read them.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from harp.config.load import from_dict
from harp.config.schema import HarpConfig
from harp.tune.results import write_train_run
from harp.tune.space import apply_params
from harp.tune.sweep_dir import TUNE_DIR

log = logging.getLogger("harp.tune")

COST_METRICS = ("gflops", "mparams", "latency_ms")


def trial_config(base: Mapping[str, Any], params: Mapping[str, Any]) -> HarpConfig:
    """The resolved HarpConfig of a trial: the sweep's base config + the sampled parameters."""
    return apply_params(from_dict(dict(base)), params)


def measure_costs(cfg: HarpConfig, names: Sequence[str]) -> dict[str, float]:
    """Static costs of the trial's model: GFLOPs and M params per clip, and forward latency (ms)."""
    wanted = [n for n in names if n in COST_METRICS]
    if not wanted:
        return {}
    import torch

    from harp.models.registry import resolve

    num_classes = cfg.model.num_classes or _num_classes(cfg)
    out: dict[str, float] = {}
    if "gflops" in wanted or "mparams" in wanted:
        from harp.models.flops import measure

        cost = measure(cfg.model, num_classes)
        out["gflops"] = float(cost.gflops)
        out["mparams"] = float(cost.mparams)
    if "latency_ms" in wanted:
        resolved = resolve(cfg.model, num_classes)
        device = torch.device("cuda") if torch.cuda.is_available() and cfg.train.use_gpu is not False else torch.device("cpu")
        model = resolved.spec.build(resolved.args).to(device).eval()
        clip = torch.zeros(1, 3, resolved.frames, resolved.frame_size, resolved.frame_size, device=device)
        with torch.no_grad():
            model(clip)
            times = []
            for _ in range(5):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                model(clip)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        out["latency_ms"] = 1000.0 * sorted(times)[len(times) // 2]
    return {k: v for k, v in out.items() if k in wanted}


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


def _num_classes(cfg: HarpConfig) -> int:
    from harp.data.manifest import class_names, ensure_manifest, load_manifest

    return len(class_names(load_manifest(ensure_manifest(cfg.data))))


def _extra_objectives(base: Mapping[str, Any]) -> list[str]:
    return [str(o).partition(":")[0] for o in (base.get("sweep", {}).get("objectives") or [])]


def storage_trial_dir(sweep_dir: str, trial_dir: str) -> Path | None:
    """The trial's directory in Tune's storage (``<sweep>/tune/<trial>``, where its checkpoints
    are) when that is a local path. ``get_trial_dir()`` is the driver's staging copy of the trial
    directory, which has the same name."""
    if "://" in sweep_dir:
        return None
    return Path(sweep_dir) / TUNE_DIR / Path(trial_dir).name


# Ray's INFO line for every checkpoint a trial persists ("Checkpoint successfully created at: ..."):
# harp checkpoints every epoch, so it is one line per trial and epoch on the driver's terminal.
_PER_CHECKPOINT_LOGGERS = ("ray.train._internal.storage",)
_THREAD_TIMEOUT_ENV = "TUNE_FUNCTION_THREAD_TIMEOUT_S"


def quiet_trial_process(trainable: Callable[..., None]) -> Callable[..., None]:
    """The trainable without the noise of its trial process, and with its real errors.

    Tune redirects a trial's ``sys.stdout``/``sys.stderr`` to a ``Tee`` of the process's own
    stream and the trial's log file, and closes that file when the trial stops. A logging
    handler created during the trial binds the ``Tee`` (``import torch`` in the trial registers
    36 such handlers), and ``logging.shutdown`` at process exit flushes each one into the closed
    file: Tune's ``Tee`` logs "ValueError when calling 'flush'" for every one. So torch is
    imported first with the process's own streams in place (its handlers never see the ``Tee``,
    however the trial ends: ASHA stops a trial while its function still runs), and on a normal
    way out any other handler bound to the ``Tee`` is pointed back at the process's own stream.
    Ray's per-checkpoint INFO line is raised to WARNING for the trial."""

    @functools.wraps(trainable)
    def run(*args: Any, **kwargs: Any) -> None:
        for name in _PER_CHECKPOINT_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        with _own_streams():
            import torch  # noqa: F401  - registers its loggers' stream handlers: bound to the real stderr
        try:
            trainable(*args, **kwargs)
        finally:
            release_redirected_handlers()

    return run


@contextlib.contextmanager
def _own_streams() -> Iterator[None]:
    """``sys.stdout``/``sys.stderr`` for the block: the streams Tune's ``Tee`` redirects wrap."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (getattr(stream, "stream1", stream) for stream in saved)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def release_redirected_handlers() -> int:
    """Point every logging handler whose stream is the current (redirected) ``sys.stdout`` or
    ``sys.stderr`` at the stream that redirect wraps (Tune's ``Tee.stream1``, else the process's
    own); returns how many were moved."""
    own = {id(sys.stdout): sys.__stdout__, id(sys.stderr): sys.__stderr__}
    redirected = {id(s): getattr(s, "stream1", own[id(s)]) for s in (sys.stdout, sys.stderr) if s is not sys.__stdout__ and s is not sys.__stderr__}
    moved = 0
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):  # a PlaceHolder has none
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in redirected:
                handler.setStream(redirected[id(handler.stream)])
                moved += 1
    return moved


def forces_torchtrainer() -> bool:
    """``HARP_FORCE_TORCHTRAINER=1`` (bench/sweep_overhead.py) runs even 1-worker trials through a
    TorchTrainer, to measure the start-up that in-process trials avoid."""
    return os.environ.get("HARP_FORCE_TORCHTRAINER") == "1"


_trials_in_this_process = 0


def _announce(trial_id: str, params: Mapping[str, Any]) -> None:
    """The trial's first console line (its ``stdout`` file, the W&B run's console): which trial,
    with what, in which process. Ray prints its actor line only when a process starts, so a trial in
    a kept process (actor reuse) would otherwise have an empty console."""
    global _trials_in_this_process
    _trials_in_this_process += 1
    shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    print(f"harp trial {trial_id} (process {os.getpid()}, its trial {_trials_in_this_process}): {shown}", flush=True)


@quiet_trial_process
def harp_trial(config: dict[str, Any], *, base: dict[str, Any], sweep_dir: str) -> None:
    """The function trainable Tune runs (bind ``base`` and ``sweep_dir`` with tune.with_parameters)."""
    import ray.tune

    # A kept trial process (Tune's actor reuse, harp.tune.tuner.reuses_trial_processes) takes the
    # next trial only once this one's thread has ended; Tune waits 2 s for that by default, and a
    # trial stopped by ASHA still closes its loaders, so a loaded machine could miss it and turn a
    # healthy trial into an error. Read by Tune in this process when it resets it for the next trial.
    os.environ.setdefault(_THREAD_TIMEOUT_ENV, "60")
    context = ray.tune.get_context()
    _announce(context.get_trial_id(), config)
    cfg = trial_config(base, config)
    extras = measure_costs(cfg, _extra_objectives(base))
    if cfg.train.num_workers <= 1 and not forces_torchtrainer():
        from harp.train import TuneSession, train_loop

        class _Session(TuneSession):
            def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
                super().report({**metrics, **extras}, checkpoint_dir)

        train_loop(cfg, _Session(cfg, trial_dir=storage_trial_dir(sweep_dir, context.get_trial_dir())))
        return

    from ray.tune.integration.ray_train import TuneReportCallback

    from harp.train.ray_train import run_torch_trainer

    class _Forward(TuneReportCallback):
        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            super().after_report(run_context, [{**metrics[0], **extras}, *metrics[1:]], checkpoint)

    storage = Path(sweep_dir) / "train_runs"
    name = context.get_trial_id()
    write_train_run(Path(context.get_trial_dir()), storage, name)
    workers = cfg.train.num_workers
    per_worker = {"CPU": max(0.01, cfg.sweep.cpus_per_trial / workers)}
    if cfg.sweep.gpus_per_trial > 0:
        per_worker["GPU"] = cfg.sweep.gpus_per_trial / workers
    # One retry layer, Tune's: the Train run itself does not retry (max_failures=0), it raises a
    # worker's deterministic HarpError as it is (Tune then does not retry the trial either) and a
    # crash as a RetryableError (Tune retries the trial, which resumes this Train run by its name).
    run_torch_trainer(cfg, storage_path=str(storage), name=name, callbacks=[_Forward()], resources_per_worker=per_worker, max_failures=0)


__all__ = [
    "COST_METRICS", "forces_torchtrainer", "harp_trial", "measure_costs", "quiet_trial_process", "release_redirected_handlers", "storage_trial_dir",
    "trial_config", "trial_resources",
]
