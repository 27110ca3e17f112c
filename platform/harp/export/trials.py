"""``trials.parquet``: one row per trial of a sweep (status, why it stopped, Optuna's verdict, its
parameters and every per-epoch metric as a list), for pandas and the W&B summary run."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harp.config.schema import HarpConfig
from harp.numbers import is_finite
from harp.tune.results import TrialRecord, optuna_trial_info
from harp.tune.space import SearchSpace
from harp.tune.sweep_dir import SweepPaths

if TYPE_CHECKING:
    import pandas as pd

# Per-epoch metrics trials.parquet keeps as lists (one value per epoch).
EPOCH_METRICS = (
    "train_loss", "val_loss", "val_top1", "val_top5", "lr", "clips_per_s", "data_wait_frac", "skipped_files",
)


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


__all__ = ["EPOCH_METRICS", "trials_frame"]
