"""``harp export SWEEP_DIR``: the best trial's best checkpoint -> test metrics -> ``best/``.

The best trial is the one with the best sweep metric over its epochs (the epoch whose checkpoint
is kept). Its best checkpoint comes from the run's own records, never from guessed paths:

- in-process (1-worker) trials: the Tune trial's checkpoint manager (``CheckpointConfig`` kept the
  best ``num_to_keep`` by the sweep metric), read through ``ray.tune.ExperimentAnalysis``;
- TorchTrainer (N-worker) trials: ``ray.train.Result.from_path(<trial's Train run>)
  .get_best_checkpoint(metric, mode)``; the Train run's path is in the trial's ``train_run.json``
  (Tune's own ``Result.checkpoint`` is None in the Train-inside-Tune pattern, and its
  ``checkpoint_path`` metric is the latest checkpoint, not the best).

Writes ``best/config.yaml`` (``harp train --config best/config.yaml`` retrains it),
``best/model.safetensors``, ``best/metrics.json`` (test split, multi-view protocol of ``eval.*``),
``best/confusion.png`` (+ ``confusion.csv``) and ``trials.parquet`` (one row per trial: params,
per-epoch metrics as lists, status, stop reason).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harp.errors import HarpError

log = logging.getLogger("harp.export")

EPOCH_METRICS = (
    "train_loss", "val_loss", "val_top1", "val_top5", "lr", "clips_per_s", "data_wait_frac", "skipped_files",
)


@dataclass
class TrialRecord:
    """Everything export needs about one Tune trial."""

    trial_id: str
    params: dict[str, Any]
    status: str
    path: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    train_run: Path | None = None
    trial: Any = None  # the ray.tune Trial object

    def best_value(self, metric: str, mode: str) -> float | None:
        values = [float(r[metric]) for r in self.history if _finite(r.get(metric))]
        if not values:
            return None
        return max(values) if mode == "max" else min(values)

    def best_epoch(self, metric: str, mode: str) -> int | None:
        best, epoch = self.best_value(metric, mode), None
        for row in self.history:
            if _finite(row.get(metric)) and float(row[metric]) == best:
                epoch = int(row.get("epoch", 0))
                break
        return epoch

    @property
    def epochs_done(self) -> int:
        return max((int(r.get("epoch", 0)) for r in self.history), default=0)


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _read_error(trial: Any) -> str | None:
    path = getattr(trial, "path", None)
    if not path:
        return None
    for name in ("error.txt", "error.pkl"):
        file = Path(path) / name
        if name.endswith(".txt") and file.is_file():
            lines = [ln for ln in file.read_text(errors="replace").splitlines() if ln.strip()]
            return lines[-1][:300] if lines else "error"
    return "error" if getattr(trial, "status", "") == "ERROR" else None


def load_trials(tune_dir: str | Path) -> tuple[Any, list[TrialRecord]]:
    """Read a Tune experiment directory into TrialRecords (no running Ray needed)."""
    from ray.tune import ExperimentAnalysis

    from harp.tune.trial import TRAIN_RUN_FILE

    tune_dir = Path(tune_dir)
    if not tune_dir.is_dir():
        raise HarpError(f"no Tune experiment in {tune_dir}; was the sweep started?")
    analysis = ExperimentAnalysis(str(tune_dir))
    frames = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        path = Path(trial.path) if getattr(trial, "path", None) else None
        frame = frames.get(trial.trial_id)
        history: list[dict[str, Any]] = []
        if frame is not None and len(frame):
            keep = [c for c in frame.columns if not c.startswith("config/")]
            history = frame[keep].to_dict("records")
            if "epoch" in frame.columns:
                history.sort(key=lambda r: r.get("epoch", 0))
        train_run = None
        if path and (path / TRAIN_RUN_FILE).is_file():
            train_run = Path(json.loads((path / TRAIN_RUN_FILE).read_text())["path"])
        records.append(
            TrialRecord(
                trial_id=trial.trial_id,
                params=dict(trial.config),
                status=str(trial.status),
                path=path,
                history=history,
                error=_read_error(trial) if trial.status == "ERROR" else None,
                train_run=train_run,
                trial=trial,
            )
        )
    return analysis, records


def tune_checkpoints(trial: Any) -> list[tuple[Any, dict[str, Any]]]:
    """The checkpoints Tune kept for an in-process trial, with their metrics."""
    manager = trial.run_metadata.checkpoint_manager
    return [(r.checkpoint, dict(r.metrics)) for r in manager.best_checkpoint_results]


def best_checkpoint(record: TrialRecord | Any, metric: str, mode: str) -> tuple[Path, dict[str, Any]] | None:
    """(directory, metrics) of a trial's best checkpoint by ``metric``, from the run's own records."""
    trial = record.trial if isinstance(record, TrialRecord) else record
    train_run = record.train_run if isinstance(record, TrialRecord) else _train_run_of(trial)
    candidates: list[tuple[Any, dict[str, Any]]]
    if train_run is not None:
        import ray.train

        try:
            result = ray.train.Result.from_path(str(train_run))
        except RuntimeError as exc:
            log.warning("trial %s: Train run %s unreadable (%s)", trial.trial_id, train_run, exc)
            return None
        best = result.get_best_checkpoint(metric, mode)
        if best is None:
            return None
        metrics = next((m for c, m in (result.best_checkpoints or []) if c.path == best.path), {})
        return Path(best.path), dict(metrics)
    candidates = [(c, m) for c, m in tune_checkpoints(trial) if _finite(m.get(metric))]
    if not candidates:
        return None
    sign = 1.0 if mode == "max" else -1.0
    # max() keeps the first of equal scores: the earliest epoch wins a tie
    checkpoint, metrics = max(candidates, key=lambda item: sign * float(item[1][metric]))
    return Path(checkpoint.path), metrics


def _train_run_of(trial: Any) -> Path | None:
    from harp.tune.trial import TRAIN_RUN_FILE

    path = getattr(trial, "path", None)
    file = Path(path) / TRAIN_RUN_FILE if path else None
    if file is not None and file.is_file():
        return Path(json.loads(file.read_text())["path"])
    return None


def trial_confusion(trial: Any, *, metric: str, mode: str) -> tuple[list[str], Any] | None:
    """Validation confusion matrix of a trial's best checkpoint (the W&B callback logs it)."""
    found = best_checkpoint(trial, metric, mode)
    if found is None:
        return None
    import tempfile

    from harp.evaluate import evaluate_checkpoint

    directory, _ = found
    with tempfile.TemporaryDirectory(prefix="harp-confusion-") as tmp:
        out = evaluate_checkpoint(directory, split="val", num_clips=1, num_crops=1, output_dir=tmp)
    matrix = out.get("confusion_matrix")
    names = list((out.get("per_class_accuracy") or {}).keys())
    if matrix is None or len(names) != len(matrix):
        return None
    return names, matrix


# ------------------------------------------------------------------------------------------
# trials.parquet
# ------------------------------------------------------------------------------------------
def _stop_reason(record: TrialRecord, planned: int, optuna_attrs: Mapping[str, Any]) -> str:
    if record.status == "ERROR":
        return f"error: {record.error or 'see the trial directory'}"
    if optuna_attrs.get("stop_reason"):
        return str(optuna_attrs["stop_reason"])
    if record.epochs_done >= planned:
        return "completed"
    if record.status == "TERMINATED":
        return f"stopped by the scheduler at epoch {record.epochs_done}/{planned}"
    return record.status.lower()


def _optuna_attrs(cfg: Any, paths: Any) -> dict[str, dict[str, Any]]:
    """tune trial id -> Optuna state, number and user attrs (empty when the study is unreachable)."""
    from harp.tune.tuner import storage_url

    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=cfg.sweep.name, storage=storage_url(cfg, paths))
    except Exception as exc:
        log.warning("Optuna study not readable (%s); trials.parquet goes without Optuna states", exc)
        return {}
    out = {}
    for t in study.get_trials(deepcopy=False):
        tid = t.user_attrs.get("tune_trial_id")
        if tid:
            out[tid] = {"state": t.state.name, "number": t.number, **t.user_attrs}
    return out


def trials_frame(records: list[TrialRecord], cfg: Any, space: Any, paths: Any) -> Any:
    import pandas as pd

    metric, mode = cfg.sweep.metric, cfg.sweep.mode
    optuna_info = _optuna_attrs(cfg, paths)
    param_keys = list(space.keys) if space.params else sorted({k for r in records for k in r.params})
    rows = []
    for record in records:
        info = optuna_info.get(record.trial_id, {})
        planned = int(record.params.get("train.epochs", cfg.train.epochs))
        row: dict[str, Any] = {
            "trial_id": record.trial_id,
            "status": record.status,
            "stop_reason": _stop_reason(record, planned, info),
            "optuna_number": info.get("number"),
            "optuna_state": info.get("state"),
            "epochs_done": record.epochs_done,
            "epochs_planned": planned,
            f"best_{metric}": record.best_value(metric, mode),
            "best_epoch": record.best_epoch(metric, mode),
            "train_workers": int(record.params.get("train.num_workers", cfg.train.num_workers)),
            "error": record.error,
        }
        for key in param_keys:
            value = record.params.get(key)
            row[f"param.{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
        row["epoch"] = [int(r.get("epoch", 0)) for r in record.history]
        for name in EPOCH_METRICS + tuple(o.partition(":")[0] for o in cfg.sweep.objectives):
            row[name] = [float(r[name]) if _finite(r.get(name)) else None for r in record.history]
        rows.append(row)
    frame = pd.DataFrame(rows)
    # Mixed-type parameter columns (e.g. None and strings) stay strings for a stable schema.
    for column in frame.columns:
        if column.startswith("param.") and frame[column].map(type).nunique() > 2:
            frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    return frame


def pick_best(records: list[TrialRecord], metric: str, mode: str) -> TrialRecord:
    scored = [(r.best_value(metric, mode), r) for r in records]
    scored = [(v, r) for v, r in scored if v is not None]
    if not scored:
        raise HarpError(f"no trial reported '{metric}'; nothing to export (see the trial errors in the sweep directory)")
    sign = 1.0 if mode == "max" else -1.0
    return max(scored, key=lambda item: sign * item[0])[1]


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------
def export_sweep(
    sweep_dir: str | Path,
    *,
    evaluate: bool = True,
    num_clips: int | None = None,
    num_crops: int | None = None,
    wandb_summary: bool = True,
) -> dict[str, Any]:
    """Write ``trials.parquet`` and ``best/`` for a finished (or interrupted) sweep; returns a summary."""
    from harp.config.load import to_yaml
    from harp.train.checkpoint import read_config
    from harp.tune.trial import trial_config
    from harp.tune.tuner import read_sweep

    cfg, space, paths = read_sweep(sweep_dir)
    metric, mode = cfg.sweep.metric, cfg.sweep.mode
    _, records = load_trials(paths.tune)
    if not records:
        raise HarpError(f"sweep {paths.root} has no trials yet")
    frame = trials_frame(records, cfg, space, paths)
    frame.to_parquet(paths.trials, engine="pyarrow", index=False)

    best = pick_best(records, metric, mode)
    found = best_checkpoint(best, metric, mode)
    if found is None:
        raise HarpError(f"trial {best.trial_id} kept no checkpoint; cannot export its weights")
    checkpoint_dir, checkpoint_metrics = found
    out = paths.best
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    resolved = trial_config(_as_dict(cfg), best.params)
    trained = read_config(checkpoint_dir) if (checkpoint_dir / "config.yaml").is_file() else resolved
    (out / "config.yaml").write_text(to_yaml(trained))
    shutil.copyfile(checkpoint_dir / "model.safetensors", out / "model.safetensors")

    summary: dict[str, Any] = {
        "sweep": cfg.sweep.name,
        "trial_id": best.trial_id,
        "params": best.params,
        "checkpoint": str(checkpoint_dir),
        "checkpoint_epoch": checkpoint_metrics.get("epoch"),
        f"val_{metric}" if not metric.startswith("val_") else metric: checkpoint_metrics.get(metric),
        "val": {k: checkpoint_metrics.get(k) for k in ("val_top1", "val_top5", "val_loss", "epoch") if k in checkpoint_metrics},
        "trials": len(records),
        "trials_parquet": str(paths.trials),
    }
    if evaluate:
        from harp.evaluate import evaluate_checkpoint

        clips = num_clips or trained.eval.num_clips
        crops = num_crops or trained.eval.num_crops
        eval_dir = out / "eval"
        test = evaluate_checkpoint(checkpoint_dir, split=trained.eval.split, num_clips=clips, num_crops=crops, output_dir=eval_dir)
        for name in ("confusion.png", "confusion.csv"):
            if (eval_dir / name).is_file():
                shutil.copyfile(eval_dir / name, out / name)
        test.pop("outputs", None)
        summary["test"] = _jsonable(test)
        summary["protocol"] = {"split": trained.eval.split, "num_clips": clips, "num_crops": crops}
    (out / "metrics.json").write_text(json.dumps(_jsonable(summary), indent=2, sort_keys=True) + "\n")
    summary["best_dir"] = str(out)
    if wandb_summary and cfg.wandb.mode != "disabled":
        _log_wandb_summary(cfg, paths, frame, summary)
    return summary


def _log_wandb_summary(cfg: Any, paths: Any, frame: Any, summary: Mapping[str, Any]) -> None:
    """The sweep's W&B summary run: the trials table and the best config (never fails an export)."""
    from harp.tune.wandb_logging import log_summary

    best = {**dict(summary["params"]), "trial_id": summary["trial_id"], "checkpoint_epoch": summary.get("checkpoint_epoch")}
    test = summary.get("test") or {}
    for key in ("top1", "top5", "mean_class_accuracy"):
        if isinstance(test.get(key), (int, float)):
            best[f"test_{key}"] = test[key]
    try:
        log_summary(sweep_name=cfg.sweep.name, project=cfg.wandb.project, entity=cfg.wandb.entity, mode=cfg.wandb.mode,
                    directory=paths.root, trials=frame, best=best)
    except Exception as exc:
        log.warning("W&B summary run failed: %s", exc)


def _as_dict(cfg: Any) -> dict[str, Any]:
    from harp.config.load import to_dict

    return to_dict(cfg)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = ["TrialRecord", "best_checkpoint", "export_sweep", "load_trials", "pick_best", "trial_confusion", "trials_frame"]
