"""``harp export SWEEP_DIR``: the best trial's best checkpoint -> test metrics -> ``best/``.

The best trial is the one with the best sweep metric over its epochs (the epoch whose checkpoint
is kept); trials and best checkpoints are read through ``harp.tune.results``.

Writes ``best/config.yaml`` (``harp train --config best/config.yaml`` retrains it),
``best/model.safetensors``, ``best/metrics.json`` (test split, multi-view protocol of ``eval.*``),
``best/confusion.png`` (+ ``confusion.csv``) and ``trials.parquet`` (one row per trial: params,
per-epoch metrics as lists, status, stop reason).
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp.config.load import to_dict, to_yaml
from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.numbers import is_finite, jsonable
from harp.tune.results import TrialRecord, best_trial_checkpoint, load_trials, optuna_trial_info, pick_best
from harp.tune.space import SearchSpace
from harp.tune.sweep_dir import SweepPaths, read_sweep
from harp.tune.trial import trial_config

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("harp.export")

# Per-epoch metrics trials.parquet keeps as lists (one value per epoch).
EPOCH_METRICS = (
    "train_loss", "val_loss", "val_top1", "val_top5", "lr", "clips_per_s", "data_wait_frac", "skipped_files",
)


# ------------------------------------------------------------------------------------------
# trials.parquet
# ------------------------------------------------------------------------------------------
def _stop_reason(record: TrialRecord, planned: int, optuna_attrs: Mapping[str, Any]) -> str:
    """Why a trial ended, in words: its error, Optuna's record, or what its epochs show."""
    if record.status == "ERROR":
        return f"error: {record.error or 'see the trial directory'}"
    if optuna_attrs.get("stop_reason"):
        return str(optuna_attrs["stop_reason"])
    if record.epochs_done >= planned:
        return "completed"
    if record.status == "TERMINATED":
        return f"stopped by the scheduler at epoch {record.epochs_done}/{planned}"
    return record.status.lower()


def trials_frame(records: list[TrialRecord], cfg: HarpConfig, space: SearchSpace, paths: SweepPaths) -> pd.DataFrame:
    """One row per trial: status, stop reason, Optuna state, best value, parameters, and each
    per-epoch metric as a list."""
    import pandas as pd

    metric, mode = cfg.sweep.metric, cfg.sweep.mode
    optuna_info = optuna_trial_info(cfg, paths)
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
            row[name] = [float(r[name]) if is_finite(r.get(name)) else None for r in record.history]
        rows.append(row)
    frame = pd.DataFrame(rows)
    # Mixed-type parameter columns (e.g. None and strings) stay strings for a stable schema.
    for column in frame.columns:
        if column.startswith("param.") and frame[column].map(type).nunique() > 2:
            frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    return frame


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
    from harp.train.checkpoint import read_config  # torch: not for `harp export --help`

    cfg, space, paths = read_sweep(sweep_dir)
    metric, mode = cfg.sweep.metric, cfg.sweep.mode
    records = load_trials(paths.tune)
    if not records:
        raise HarpError(f"sweep {paths.root} has no trials yet")
    frame = trials_frame(records, cfg, space, paths)
    frame.to_parquet(paths.trials, engine="pyarrow", index=False)

    best = pick_best(records, metric, mode)
    found = best_trial_checkpoint(best, metric, mode)
    if found is None:
        raise HarpError(f"trial {best.trial_id} kept no checkpoint; cannot export its weights")
    checkpoint_dir, checkpoint_metrics = found.path, found.metrics
    out = paths.best
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    resolved = trial_config(to_dict(cfg), best.params)
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
        from harp.evaluate import evaluate_checkpoint  # torch, as above

        clips = num_clips or trained.eval.num_clips
        crops = num_crops or trained.eval.num_crops
        eval_dir = out / "eval"
        test = evaluate_checkpoint(checkpoint_dir, split=trained.eval.split, num_clips=clips, num_crops=crops, output_dir=eval_dir)
        for name in ("confusion.png", "confusion.csv"):
            if (eval_dir / name).is_file():
                shutil.copyfile(eval_dir / name, out / name)
        test.pop("outputs", None)
        summary["test"] = jsonable(test)
        summary["protocol"] = {"split": trained.eval.split, "num_clips": clips, "num_crops": crops}
    (out / "metrics.json").write_text(json.dumps(jsonable(summary), indent=2, sort_keys=True) + "\n")
    summary["best_dir"] = str(out)
    if wandb_summary and cfg.wandb.mode != "disabled":
        _log_wandb_summary(cfg, paths, frame, summary)
    return summary


def _log_wandb_summary(cfg: HarpConfig, paths: SweepPaths, frame: pd.DataFrame, summary: Mapping[str, Any]) -> None:
    """The sweep's W&B summary run: the trials table and the best config (never fails an export)."""
    from harp.tune.wandb_logging import log_summary  # Ray and wandb: only when a summary is logged

    best = {**dict(summary["params"]), "trial_id": summary["trial_id"], "checkpoint_epoch": summary.get("checkpoint_epoch")}
    test = summary.get("test") or {}
    for key in ("top1", "top5", "mean_class_accuracy"):
        if isinstance(test.get(key), (int, float)):
            best[f"test_{key}"] = test[key]
    try:
        log_summary(sweep_name=cfg.sweep.name or paths.root.name, project=cfg.wandb.project, entity=cfg.wandb.entity, mode=cfg.wandb.mode,
                    directory=paths.root, trials=frame, best=best)
    except Exception as exc:
        log.warning("W&B summary run failed: %s", exc)


__all__ = ["EPOCH_METRICS", "export_sweep", "trials_frame"]
