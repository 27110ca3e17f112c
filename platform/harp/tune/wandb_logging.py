"""Weights & Biases from the Tune level: one run per trial, grouped by sweep, plus a summary run.

Runs are opened by a Tune ``Callback`` in the driver, never inside Train workers (``setup_wandb``
inside Train V2 workers would open one run per rank). Run id = Tune trial id (a resumed trial
resumes its run), group = sweep name. Each run gets the trial's sampled parameters and the
resolved config, every per-epoch metric at ``step=epoch``, and when the trial ends the confusion
matrix of its best checkpoint on the validation split. A summary run carries the trials table
and the best config.

Mode (``wandb.mode``): ``auto`` is ``online`` when an API key is configured (``WANDB_API_KEY`` or
a netrc entry) and ``offline`` otherwise (runs land in ``<sweep>/wandb`` and ``wandb sync`` uploads
them later); ``disabled`` turns W&B off. The API key is read by wandb itself: harp never copies it
into a config, a log line or an export.
"""
from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from ray.tune import Callback

from harp.numbers import is_finite
from harp.tune.results import Confusion

if TYPE_CHECKING:
    import pandas as pd
    import wandb
    from ray.tune.experiment import Trial

log = logging.getLogger("harp.tune")

# Keys of a Tune result that are bookkeeping, not metrics worth a chart.
_SKIP = {
    "config", "trial_id", "experiment_id", "date", "timestamp", "pid", "hostname", "node_ip", "done",
    "time_this_iter_s", "time_since_restore", "iterations_since_restore", "checkpoint_dir_name",
    "should_checkpoint", "checkpoint_path", "experiment_tag", "training_iteration", "time_total_s",
}


def has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(auth and auth[2])


# The modes wandb.init takes; ``wandb.mode=auto`` resolves to one of the first two.
RunMode = Literal["online", "offline", "disabled"]


def resolve_mode(mode: str) -> RunMode:
    """auto -> online with an API key, offline without; the others as given."""
    if mode == "auto":
        return "online" if has_api_key() else "offline"
    return cast(RunMode, str(mode))  # the config allows no other value


def sync_hint(wandb_dir: Path) -> str:
    return f"wandb sync {wandb_dir}/wandb/offline-run-*  (after `wandb login`)"


def _scalars(result: Mapping[str, Any]) -> dict[str, float]:
    """The chartable numbers of a Tune result (booleans as 0/1; NaN and bookkeeping left out)."""
    out = {}
    for key, value in result.items():
        if key in _SKIP or key.startswith("config/"):
            continue
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and is_finite(value):
            out[key] = value
    return out


class WandbCallback(Callback):
    """One W&B run per Tune trial (id = trial id, group = sweep name), from the driver."""

    def __init__(
        self,
        *,
        sweep_name: str,
        project: str,
        entity: str | None,
        mode: str,
        directory: str | Path,
        base_config: Mapping[str, Any],
        confusion: Callable[[Trial], Confusion | None] | None = None,
    ) -> None:
        self.sweep_name = sweep_name
        self.project = project
        self.entity = entity
        self.mode = resolve_mode(mode)
        self.directory = Path(directory)
        self.base_config = dict(base_config)
        self.confusion = confusion
        self._runs: dict[str, wandb.Run] = {}

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def _open(self, trial: Trial) -> wandb.Run:
        import wandb

        run = self._runs.get(trial.trial_id)
        if run is not None:
            return run
        self.directory.mkdir(parents=True, exist_ok=True)
        params = {k: v for k, v in dict(trial.config).items()}
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            group=self.sweep_name,
            id=f"{self.sweep_name}-{trial.trial_id}",
            name=f"{trial.trial_id}",
            job_type="trial",
            dir=str(self.directory),
            mode=self.mode,
            resume="allow",
            reinit="create_new",
            config={"params": params, "harp": self.base_config, "trial_id": trial.trial_id},
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        self._runs[trial.trial_id] = run
        return run

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.enabled:
            try:
                self._open(trial)
            except Exception as exc:  # W&B must never stop a sweep
                log.warning("W&B: could not open a run for trial %s (%s)", trial.trial_id, exc)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any) -> None:
        if not self.enabled:
            return
        try:
            run = self._open(trial)
            metrics = _scalars(result)
            step = int(metrics.get("epoch", result.get("training_iteration", 0)))
            run.log(metrics, step=step)
        except Exception as exc:
            log.warning("W&B: logging trial %s failed (%s)", trial.trial_id, exc)

    def _finish(self, trial: Trial, *, failed: bool) -> None:
        run = self._runs.pop(trial.trial_id, None)
        if run is None:
            return
        try:
            if not failed and self.confusion is not None:
                found = self.confusion(trial)
                if found is not None:
                    names, matrix = found
                    import wandb

                    rows = [[names[i], names[j], int(matrix[i][j])] for i in range(len(names)) for j in range(len(names))]
                    run.log({"val_confusion": wandb.Table(columns=["actual", "predicted", "count"], data=rows)})
                    run.summary["val_confusion_matrix"] = [[int(v) for v in row] for row in matrix]
            run.summary["status"] = "error" if failed else "finished"
            run.finish(exit_code=1 if failed else 0)
        except Exception as exc:
            log.warning("W&B: closing the run of trial %s failed (%s)", trial.trial_id, exc)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.enabled:
            self._finish(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.enabled:
            self._finish(trial, failed=True)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        for trial_id in list(self._runs):
            run = self._runs.pop(trial_id)
            try:
                run.finish()
            except Exception:
                pass


def log_summary(
    *,
    sweep_name: str,
    project: str,
    entity: str | None,
    mode: str,
    directory: str | Path,
    trials: pd.DataFrame,
    best: Mapping[str, Any],
) -> str | None:
    """A summary run: the trials table (one row per trial) and the best config; returns its id."""
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    import wandb

    run = wandb.init(
        project=project,
        entity=entity,
        group=sweep_name,
        id=f"{sweep_name}-summary",
        name=f"{sweep_name}-summary",
        job_type="sweep-summary",
        dir=str(directory),
        mode=mode,
        resume="allow",
        reinit="create_new",
        config={"best": dict(best)},
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
    )
    frame = trials.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: v if isinstance(v, (str, int, float, type(None))) else str(v))
    run.log({"trials": wandb.Table(dataframe=frame)})
    for key, value in best.items():
        if isinstance(value, (int, float, str, bool)):
            run.summary[f"best/{key}"] = value
    run.finish()
    return run.id


__all__ = ["WandbCallback", "has_api_key", "log_summary", "resolve_mode", "sync_hint"]
