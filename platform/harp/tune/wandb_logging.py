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
import math
import netrc
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from ray.tune import Callback

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


def resolve_mode(mode: str) -> str:
    """auto -> online with an API key, offline without; the others as given."""
    if mode == "auto":
        return "online" if has_api_key() else "offline"
    return mode


def sync_hint(wandb_dir: Path) -> str:
    return f"wandb sync {wandb_dir}/wandb/offline-run-*  (after `wandb login`)"


def _scalars(result: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in result.items():
        if key in _SKIP or key.startswith("config/"):
            continue
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
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
        confusion: Callable[[Any], tuple[list[str], Any] | None] | None = None,
    ) -> None:
        self.sweep_name = sweep_name
        self.project = project
        self.entity = entity
        self.mode = resolve_mode(mode)
        self.directory = Path(directory)
        self.base_config = dict(base_config)
        self.confusion = confusion
        self._runs: dict[str, Any] = {}

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def _open(self, trial: Any) -> Any:
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

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.enabled:
            try:
                self._open(trial)
            except Exception as exc:  # W&B must never stop a sweep
                log.warning("W&B: could not open a run for trial %s (%s)", trial.trial_id, exc)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if not self.enabled:
            return
        try:
            run = self._open(trial)
            metrics = _scalars(result)
            step = int(metrics.get("epoch", result.get("training_iteration", 0)))
            run.log(metrics, step=step)
        except Exception as exc:
            log.warning("W&B: logging trial %s failed (%s)", trial.trial_id, exc)

    def _finish(self, trial: Any, *, failed: bool) -> None:
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

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.enabled:
            self._finish(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.enabled:
            self._finish(trial, failed=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
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
    trials: Any,
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


def _log_records(path: Path) -> Any:
    """Records of a ``.wandb`` file (W&B's LevelDB-style log: 7-byte header, 32 KiB blocks)."""
    data = Path(path).read_bytes()
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - (pos % block)
        if left < 7:
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """What an offline W&B run holds: ``{"history": [row per log call], "summary": {...}, "config": {...}}``.

    Reads the run's ``.wandb`` file directly (no network, no wandb service), so tests and users can
    check what a sweep logged before `wandb sync`."""
    import json as _json

    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb file in {run_dir}")
    out: dict[str, Any] = {"history": [], "summary": {}, "config": {}}

    def key_of(item: Any) -> str:
        return item.key or "/".join(item.nested_key)

    for raw in _log_records(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {key_of(i): _json.loads(i.value_json) for i in record.history.item}
            if not any(k.startswith("_wandb") for k in row) or len(row) > 2:
                out["history"].append(row)
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][key_of(item)] = _json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][key_of(item)] = _json.loads(item.value_json)
    return out


__all__ = ["WandbCallback", "has_api_key", "log_summary", "read_offline_run", "resolve_mode", "sync_hint"]
