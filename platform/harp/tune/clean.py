"""Removing the checkpoints a finished sweep no longer needs (``harp clean``).

While a sweep runs, each trial keeps its best checkpoints by the sweep metric plus its latest (a
crashed or interrupted trial resumes from the latest), and a multi-worker trial's Train run keeps
its own. Once every trial has ended, only each trial's best checkpoint is still read (export,
``harp evaluate``, W&B's confusion matrix); the rest is most of a sweep directory's size.

Never touched: a sweep that is running (its directory lock is held), an unfinished sweep (an
interrupted trial resumes from its latest checkpoint), the best checkpoint of any trial, and a
trial's checkpoints when its best one cannot be told (no finite value of the sweep metric).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harp.errors import HarpError
from harp.train.checkpoint_staging import STAGING
from harp.tune.lock import sweep_lock
from harp.tune.results import TrialRecord, best_trial_checkpoint, load_trials
from harp.tune.sweep_dir import directory_size, read_sweep


@dataclass
class CleanReport:
    """What ``clean_sweep`` removed (or would remove, on a dry run) and kept."""

    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    freed_bytes: int = 0
    size_before: int = 0
    size_after: int = 0


def trial_checkpoints(record: TrialRecord) -> list[Path]:
    """Every checkpoint directory of a trial: its Tune trial directory's, and its Train run's, with
    the staging folder of a Train worker killed while it saved (a half-written checkpoint)."""
    found: list[Path] = []
    for folder in (record.path, record.train_run):
        if folder is not None and Path(folder).is_dir():
            found += sorted(p for p in Path(folder).glob("checkpoint_*") if p.is_dir())
    if record.train_run is not None and (Path(record.train_run) / STAGING).is_dir():
        found.append(Path(record.train_run) / STAGING)
    return found


def clean_sweep(sweep_dir: str | Path, *, dry_run: bool = False) -> CleanReport:
    """Remove every checkpoint but each trial's best from a finished sweep; refuse a running or
    unfinished one with one line."""
    cfg, _, paths = read_sweep(sweep_dir)
    metric, mode = cfg.sweep.metric, cfg.sweep.mode
    with sweep_lock(paths.root, purpose="clean"):
        records = load_trials(paths.tune)
        ended = [r for r in records if r.ended]
        if len(ended) < len(records) or len(records) < cfg.sweep.num_samples:
            raise HarpError(
                f"sweep {paths.root} is not finished ({len(ended)} of {cfg.sweep.num_samples} trials ended): "
                f"its trials resume from their latest checkpoints; finish it with `harp sweep --resume {paths.root}` first"
            )
        report = CleanReport(size_before=directory_size(paths.root))
        for record in records:
            checkpoints = trial_checkpoints(record)
            best = best_trial_checkpoint(record, metric, mode)
            if best is None:
                report.kept += checkpoints  # the best cannot be told: keep them all
                continue
            keep = best.path.resolve()
            for checkpoint in checkpoints:
                if checkpoint.resolve() == keep:
                    report.kept.append(checkpoint)
                    continue
                report.removed.append(checkpoint)
                report.freed_bytes += directory_size(checkpoint)
                if not dry_run:
                    shutil.rmtree(checkpoint)
        report.size_after = report.size_before - report.freed_bytes if dry_run else directory_size(paths.root)
    return report


__all__ = ["CleanReport", "clean_sweep", "trial_checkpoints"]
