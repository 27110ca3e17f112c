"""What a sweep directory holds right now, read without touching the sweep: its config and space,
its trials (Tune's experiment state, through ``harp.tune.results``), the Optuna study, what export
wrote, whether a process is running it, and its data set's unreadable videos.

A running sweep has some of these, a failed one others: every piece may be missing, and
``notes`` says which and why, so the report and ``harp status`` show what exists instead of failing.
Nothing here needs a Ray cluster or a lock: a second shell, or another machine on the same shared
storage, reads the same files.
"""
from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp.config.load import to_dict
from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.numbers import best_of, is_finite
from harp.tune.lock import is_locked, lock_holder
from harp.tune.results import TrialRecord, exported_confusion, load_study, load_trials, optuna_trial_info
from harp.tune.space import SearchSpace
from harp.tune.sweep_dir import SWEEP_FILE, TUNE_DIR, SweepPaths, read_sweep
from harp.tune.sweep_location import mirror_exports, tune_state_written
from harp.tune.trial import trial_config

if TYPE_CHECKING:
    import optuna
    import pandas as pd

log = logging.getLogger("harp.report")

# How trials are listed: running ones first, then the verdicts, those not started last.
STATE_ORDER = ("RUNNING", "PENDING", "PAUSED", "COMPLETE", "PRUNED", "FAIL", "TERMINATED", "INTERRUPTED", "NOT STARTED")


@dataclass(frozen=True)
class Activity:
    """Whether a process runs the sweep now (its lock), who, and when Tune last wrote its state."""

    running: bool
    holder: dict[str, Any]
    last_update: float | None  # epoch seconds of the newest experiment_state file

    def describe(self) -> str:
        if self.running:
            who = f"pid {self.holder.get('pid')} on {self.holder.get('host')}" if self.holder else "a live process"
            return f"running ({who}, since {self.holder.get('started', '?')})"
        return "not running"


@dataclass
class TrialRow:
    """One trial as the report and the status view show it."""

    record: TrialRecord
    number: int | None  # the trial's order in the sweep (Optuna's number + 1, else Tune's)
    state: str  # COMPLETE / PRUNED / FAIL from Optuna, else RUNNING / PENDING / ERROR ... from Tune
    stop_reason: str
    planned: int
    family: str
    best: float | None

    @property
    def trial_id(self) -> str:
        return self.record.trial_id


@dataclass
class SweepSnapshot:
    cfg: HarpConfig
    space: SearchSpace
    paths: SweepPaths
    info: dict[str, Any]
    records: list[TrialRecord]
    optuna_info: dict[str, dict[str, Any]]  # Tune trial id -> Optuna state, number, user attrs
    activity: Activity
    notes: list[str] = field(default_factory=list)
    _configs: dict[str, HarpConfig | None] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return str(self.cfg.sweep.name or self.paths.root.name)

    @property
    def metric(self) -> str:
        return str(self.cfg.sweep.metric)

    @property
    def mode(self) -> str:
        return str(self.cfg.sweep.mode)

    @property
    def objectives(self) -> list[str]:
        return [str(o).partition(":")[0] for o in self.cfg.sweep.objectives]

    @cached_property
    def param_keys(self) -> list[str]:
        """The sampled keys: the space's, else (a sweep started without its space file) the trials'."""
        if self.space.params:
            return list(self.space.keys)
        return list(dict.fromkeys(k for r in self.records for k in r.params))

    @cached_property
    def study(self) -> optuna.Study | None:
        return load_study(self.cfg, self.paths)

    @cached_property
    def rows(self) -> list[TrialRow]:
        rows = [self._row(r) for r in self.records]
        return sorted(rows, key=lambda row: (row.number is None, row.number or 0, row.trial_id))

    def _row(self, record: TrialRecord) -> TrialRow:
        info = self.optuna_info.get(record.trial_id, {})
        planned = int(record.params.get("train.epochs", self.cfg.train.epochs))
        number = int(info["number"]) + 1 if info.get("number") is not None else _tune_order(record)
        state = _state(str(info.get("state") or ""), record, self.activity.running)
        reason = f"error: {record.error}" if state == "FAIL" and record.error else str(info.get("stop_reason") or state.lower())
        resolved = self.trial_config(record)
        family = str(resolved.model.family if resolved is not None else record.params.get("model.family", self.cfg.model.family))
        return TrialRow(record, number, state, reason, planned, family, record.best_value(self.metric, self.mode))

    def trial_config(self, record: TrialRecord) -> HarpConfig | None:
        """The trial's resolved config (base + its sampled values), or None when it does not
        resolve (such a trial fails on its own; it is still shown)."""
        if record.trial_id not in self._configs:
            try:
                self._configs[record.trial_id] = trial_config(self._base, record.params)
            except Exception:
                self._configs[record.trial_id] = None
        return self._configs[record.trial_id]

    @cached_property
    def _base(self) -> dict[str, Any]:
        return to_dict(self.cfg)

    @cached_property
    def frame(self) -> pd.DataFrame | None:
        """trials.parquet's columns for the trials so far (export's ``trials_frame``)."""
        if not self.records:
            return None
        from harp.export.trials import trials_frame

        return trials_frame(self.records, self.cfg, self.space, self.paths)

    # -- what the trials add up to -------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Trials per state, in ``STATE_ORDER`` (running ones first, those not started last)."""
        out: dict[str, int] = {}
        for row in self.rows:
            out[row.state] = out.get(row.state, 0) + 1
        waiting = max(0, int(self.cfg.sweep.num_samples) - len(self.rows))
        if waiting:
            out["NOT STARTED"] = waiting
        rank = {state: i for i, state in enumerate(STATE_ORDER)}
        return dict(sorted(out.items(), key=lambda item: rank.get(item[0], len(rank))))

    def best_row(self) -> TrialRow | None:
        scored = [row for row in self.rows if row.best is not None]
        if not scored:
            return None
        best = best_of((row.best for row in scored), self.mode)
        return next(row for row in scored if row.best == best)

    def epochs(self) -> tuple[int, int]:
        """(epochs trained so far, the sweep's budget: every trial's planned epochs)."""
        spent = sum(row.record.epochs_done for row in self.rows)
        planned = [row.planned for row in self.rows]
        budget = sum(planned) + max(0, int(self.cfg.sweep.num_samples) - len(planned)) * int(self.cfg.train.epochs)
        return spent, budget

    def seconds_per_epoch(self) -> float | None:
        times = [float(h["time_this_iter_s"]) for row in self.rows for h in row.record.history if is_finite(h.get("time_this_iter_s"))]
        return statistics.median(times) if times else None

    def eta_seconds(self) -> float | None:
        """At most this long to the end (every unfinished trial trained to its planned epochs;
        ASHA usually stops some early), at ``max_concurrent_trials`` at a time."""
        per_epoch = self.seconds_per_epoch()
        if per_epoch is None:
            return None
        left = sum(max(0, row.planned - row.record.epochs_done) for row in self.rows if row.state in ("RUNNING", "PENDING", "PAUSED"))
        left += max(0, int(self.cfg.sweep.num_samples) - len(self.rows)) * int(self.cfg.train.epochs)
        return left * per_epoch / max(1, int(self.cfg.sweep.max_concurrent_trials))

    def failures(self) -> list[TrialRow]:
        return [row for row in self.rows if row.record.error]

    # -- what export wrote ----------------------------------------------------------------------
    def best_metrics(self) -> dict[str, Any] | None:
        return _read_json(self.paths.best / "metrics.json")

    def confusions(self) -> list[tuple[str, list[str], list[list[int]]]]:
        """(title, class names, matrix) of the exported best model, or of each study cell's."""
        found = []
        single = exported_confusion(self.paths.best)
        if single is not None:
            found.append(("best model (test split)", *single))
        elif self.paths.best.is_dir():
            for folder in sorted(p for p in self.paths.best.iterdir() if p.is_dir()):
                cell = exported_confusion(folder)
                if cell is not None:
                    found.append((f"cell {folder.name} (test split)", *cell))
        return found

    def table_files(self) -> tuple[Path | None, Path | None]:
        csv_path, md_path = self.paths.best / "table.csv", self.paths.best / "table.md"
        return (csv_path if csv_path.is_file() else None, md_path if md_path.is_file() else None)

    # -- the data ---------------------------------------------------------------------------------
    @cached_property
    def unreadable_videos(self) -> pd.DataFrame | None:
        """The manifest's rows with an error (path, label, error), or None without a manifest."""
        from harp.data.manifest import load_manifest, manifest_path

        try:
            df = load_manifest(manifest_path(self.cfg.data))
        except (HarpError, OSError, ValueError) as exc:
            self.notes.append(f"data manifest not readable here ({str(exc).splitlines()[0]})")
            return None
        return df.loc[df["error"] != "", ["path", "label", "error"]].reset_index(drop=True)


def _state(optuna_state: str, record: TrialRecord, sweep_running: bool) -> str:
    """A trial's state as a person means it. Optuna's verdict is written the moment a trial ends
    (the searcher tells the study before Tune moves on); Tune's status is from its last periodic
    state file, so a trial it still calls PENDING may have trained for a while: with epochs
    reported it is RUNNING, and in a sweep no process runs any more it is INTERRUPTED."""
    if optuna_state in ("COMPLETE", "PRUNED", "FAIL"):
        return optuna_state
    if record.status == "ERROR":
        return "FAIL"
    if record.status == "TERMINATED":
        return record.status
    if not sweep_running:
        return "INTERRUPTED"
    return "RUNNING" if record.history else record.status


def _tune_order(record: TrialRecord) -> int | None:
    """Tune's order of a trial, from its directory name (``harp_trial_<id>_<n>_<params>``)."""
    if record.path is None:
        return None
    head = record.path.name.split(f"{record.trial_id}_", 1)[-1].split("_", 1)[0]
    return int(head) if head.isdigit() else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def activity(paths: SweepPaths) -> Activity:
    last = tune_state_written(paths)  # through the sweep's filesystem (a URI sweep's too)
    try:  # the lock is in paths.root: for a URI sweep, this machine's own directory of it
        running = is_locked(paths.root)
    except OSError:
        running = False
    return Activity(running, lock_holder(paths.root) if running else {}, last)


def read_snapshot(sweep_dir: str | Path) -> SweepSnapshot:
    """Everything the sweep directory holds now (a HarpError only when it is no sweep directory)."""
    cfg, space, paths = read_sweep(sweep_dir)
    info = paths.read_json(SWEEP_FILE) or {}
    notes: list[str] = []
    records: list[TrialRecord] = []
    if paths.exists(TUNE_DIR):
        # A trial that has not reported yet is normal in a running sweep: not a warning here.
        quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            records = load_trials(paths)
        except Exception as exc:  # Tune writing its state this very moment, or none yet
            notes.append(f"Tune's trial state not readable yet ({str(exc).splitlines()[0][:200]})")
        finally:
            quiet.setLevel(level)
    else:
        notes.append("no trials yet (the sweep has not started Tune)")
    mirror_exports(paths)  # a URI sweep: what export wrote (no weights) into paths.best, where the report reads it
    optuna_info = optuna_trial_info(cfg, paths) if paths.optuna_db.exists() or cfg.sweep.optuna_storage or paths.is_remote else {}
    state = activity(paths)
    if paths.is_remote and not state.running:
        notes.append(f"{paths.where} is on remote storage: 'running' sees a driver on this machine only")
    return SweepSnapshot(cfg, space, paths, info, records, optuna_info, state, notes)


def age(seconds_since_epoch: float | None) -> str:
    if seconds_since_epoch is None:
        return "never"
    return duration(max(0.0, time.time() - seconds_since_epoch)) + " ago"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


__all__ = ["STATE_ORDER", "Activity", "SweepSnapshot", "TrialRow", "activity", "age", "duration", "read_snapshot"]
