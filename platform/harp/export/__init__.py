"""``harp export SWEEP_DIR``: what a finished (or interrupted) sweep found -> ``trials.parquet``
and ``best/``.

Without ``sweep.group_by`` the sweep's one best trial is tested and exported to ``best/``
(``harp.export.single``). With it, the sweep is a study with a table: each cell's best trial
(chosen on that cell's validation split) is (optionally refit and) tested once, into
``best/<cell>/``, and ``best/table.csv`` + ``best/table.md`` hold the table laid out as
``sweep.table`` says (``harp.export.study``, ``harp.export.table``). Trials and best checkpoints
are read through ``harp.tune.results``.

A sweep directory on remote storage (``s3://...``) is read through its filesystem, its best
checkpoints are downloaded only to be read (and the copies removed), and ``trials.parquet`` and
``best/`` are written locally and uploaded over the old ones (``SweepPaths.writing``).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.export.cells import StudyLayout, study_layout
from harp.export.single import export_best
from harp.export.trials import EPOCH_METRICS, trials_frame
from harp.numbers import jsonable
from harp.tune.results import TrialRecord, load_trials
from harp.tune.space import SearchSpace
from harp.tune.sweep_dir import BEST_DIR, TRIALS_FILE, SweepPaths, mark_driver_dir, read_sweep

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("harp.export")


def export_sweep(
    sweep_dir: str | Path,
    *,
    evaluate: bool = True,
    num_clips: int | None = None,
    num_crops: int | None = None,
    wandb_summary: bool = True,
    group_by: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write ``trials.parquet`` and ``best/`` for a sweep; returns a summary.

    The summary always has ``trial_id``, ``params``, ``checkpoint_epoch``, ``val``, ``trials``,
    ``trials_parquet`` and ``best_dir`` (and ``test``/``protocol`` when evaluated). For a study
    (``sweep.group_by``, or ``group_by`` given here for a sweep that declared none) there is no
    one best trial: those keys are empty and ``cells``, ``table_csv``, ``table_md`` and ``table``
    (the Markdown) hold the result.
    """
    cfg, space, paths = read_sweep(sweep_dir)
    if group_by is not None:
        cfg.sweep.group_by = list(group_by)
    layout = study_layout(cfg)  # a bad group_by fails before anything is written
    records = load_trials(paths)
    if not records:
        raise HarpError(f"sweep {paths.where} has no trials yet")
    frame = trials_frame(records, cfg, space, paths)
    with paths.writing(TRIALS_FILE) as trials_file:
        frame.to_parquet(trials_file, engine="pyarrow", index=False)
    with paths.writing(BEST_DIR) as best_dir:
        if layout is None:
            summary = export_best(cfg, paths, records, best_dir=best_dir, evaluate=evaluate, num_clips=num_clips, num_crops=num_crops)
        else:
            summary = _export_study(cfg, layout, space, paths, records, best_dir=best_dir, evaluate=evaluate, num_clips=num_clips, num_crops=num_crops)
    summary["best_dir"] = paths.uri(BEST_DIR)
    if wandb_summary and cfg.wandb.mode != "disabled":
        _log_wandb_summary(cfg, paths, frame, summary)
    return summary


def _export_study(cfg: HarpConfig, layout: StudyLayout, space: SearchSpace, paths: SweepPaths, records: list[TrialRecord],
                  *, best_dir: Path, **how: Any) -> dict[str, Any]:
    from harp.export.study import export_cells  # torch (evaluation, FLOP counts): not for `harp export --help`
    from harp.export.table import TABLE_CSV, TABLE_MD, ordered_cells, write_table

    layout, cells = export_cells(cfg, layout, paths, records, best_dir=best_dir, **how)
    cells = ordered_cells(cells, layout, space)
    _, _, markdown = write_table(cells, layout, cfg, space, best_dir, evaluated=bool(how.get("evaluate")))
    return {
        "sweep": cfg.sweep.name,
        "trial_id": None,
        "params": {},
        "checkpoint": None,
        "checkpoint_epoch": None,
        "val": {},
        "trials": len(records),
        "trials_parquet": paths.uri(TRIALS_FILE),
        "group_by": list(layout.keys),
        "cells": [jsonable({**vars(c), "views": c.views}) for c in cells],
        "table_csv": paths.uri(BEST_DIR, TABLE_CSV),
        "table_md": paths.uri(BEST_DIR, TABLE_MD),
        "table": markdown,
    }


def _log_wandb_summary(cfg: HarpConfig, paths: SweepPaths, frame: pd.DataFrame, summary: Mapping[str, Any]) -> None:
    """The sweep's W&B summary run: the trials table and the best config, or each cell's result
    for a study (never fails an export)."""
    from harp.tune.wandb_logging import log_summary  # Ray and wandb: only when a summary is logged

    best: dict[str, Any] = {**dict(summary["params"]), "trial_id": summary["trial_id"], "checkpoint_epoch": summary.get("checkpoint_epoch")}
    test = summary.get("test") or {}
    for key in ("top1", "top5", "mean_class_accuracy"):
        if isinstance(test.get(key), (int, float)):
            best[f"test_{key}"] = test[key]
    for cell in summary.get("cells") or ():
        best[f"{cell['name']}/trial_id"] = cell.get("trial_id")
        for key in ("top1", "top5", "mean_class_accuracy"):
            if isinstance((cell.get("test") or {}).get(key), (int, float)):
                best[f"{cell['name']}/test_{key}"] = cell["test"][key]
    try:
        mark_driver_dir(paths)  # a remote sweep: the summary run's local files, and its pointer to the sweep
        log_summary(sweep_name=cfg.sweep.name or paths.name, project=cfg.wandb.project, entity=cfg.wandb.entity, mode=cfg.wandb.mode,
                    directory=paths.root, trials=frame, best=best)
    except Exception as exc:
        log.warning("W&B summary run failed: %s", exc)


__all__ = ["EPOCH_METRICS", "StudyLayout", "export_sweep", "study_layout", "trials_frame"]
