"""Reading what a sweep produced: its trials, their errors, Optuna's verdicts and each trial's
best checkpoint. Export and the sweep runner (its W&B callback) both read through here.

A trial's best checkpoint comes from the run's own records, never from guessed paths:

- in-process (1-worker) trials: the Tune trial's checkpoint manager (``CheckpointConfig`` kept the
  best ``num_to_keep`` by the sweep metric);
- TorchTrainer (N-worker) trials: ``ray.train.Result.from_path(<the trial's Train run>)
  .get_best_checkpoint(metric, mode)``. The Train run's path is in the trial's ``train_run.json``
  (written by the trainable, read here): Tune's own ``Result.checkpoint`` is None in the
  Train-inside-Tune pattern, and its ``checkpoint_path`` metric is the latest checkpoint, not the best.

Ray is imported inside the functions: it takes seconds, and ``harp export --help`` should not.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.numbers import best_of, is_finite, signed
from harp.tune.sweep_dir import SweepPaths, storage_url

if TYPE_CHECKING:
    import ray.train
    from ray.tune.experiment import Trial

log = logging.getLogger("harp.tune")

TRAIN_RUN_FILE = "train_run.json"

# A confusion matrix and its class names (row = actual, column = predicted).
Confusion = tuple[list[str], list[list[int]]]


# ------------------------------------------------------------------------------------------
# the Train run of a multi-worker trial
# ------------------------------------------------------------------------------------------
def write_train_run(trial_dir: Path, storage_path: Path, name: str) -> None:
    """Record in a Tune trial's directory where its Ray Train run lives (``storage_path/name``)."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    pointer = {"storage_path": str(storage_path), "name": name, "path": str(storage_path / name)}
    (trial_dir / TRAIN_RUN_FILE).write_text(json.dumps(pointer))


def train_run_of(trial_dir: str | Path | None) -> Path | None:
    """The Ray Train run of a Tune trial, or None for an in-process trial."""
    file = Path(trial_dir) / TRAIN_RUN_FILE if trial_dir else None
    if file is not None and file.is_file():
        return Path(json.loads(file.read_text())["path"])
    return None


# ------------------------------------------------------------------------------------------
# trials
# ------------------------------------------------------------------------------------------
@dataclass
class TrialRecord:
    """One Tune trial as export needs it: parameters, status, per-epoch results, error, runs."""

    trial_id: str
    params: dict[str, Any]
    status: str
    path: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    train_run: Path | None = None
    trial: Trial | None = None

    def best_value(self, metric: str, mode: str) -> float | None:
        return best_of((row.get(metric) for row in self.history), mode)

    def best_epoch(self, metric: str, mode: str) -> int | None:
        """The first epoch that reached the best value (the one whose checkpoint is kept)."""
        best = self.best_value(metric, mode)
        for row in self.history:
            if is_finite(row.get(metric)) and float(row[metric]) == best:
                return int(row.get("epoch", 0))
        return None

    @property
    def epochs_done(self) -> int:
        return max((int(r.get("epoch", 0)) for r in self.history), default=0)


def trial_error(trial: Trial) -> str | None:
    """The last line of an errored trial's ``error.txt`` (what went wrong, in one line)."""
    path = getattr(trial, "path", None)
    file = Path(path) / "error.txt" if path else None
    if file is not None and file.is_file():
        lines = [ln for ln in file.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "error"
    return "error" if trial.status == "ERROR" else None


def load_trials(tune_dir: str | Path) -> list[TrialRecord]:
    """Read a Tune experiment directory into TrialRecords (no running Ray needed)."""
    from ray.tune import ExperimentAnalysis

    tune_dir = Path(tune_dir)
    if not tune_dir.is_dir():
        raise HarpError(f"no Tune experiment in {tune_dir}; was the sweep started?")
    analysis = ExperimentAnalysis(str(tune_dir))
    frames = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        path = Path(trial.path) if trial.path else None
        frame = frames.get(trial.trial_id)
        history: list[dict[str, Any]] = []
        if frame is not None and len(frame):
            keep = [c for c in frame.columns if not c.startswith("config/")]
            history = frame[keep].to_dict("records")
            if "epoch" in frame.columns:
                history.sort(key=lambda r: r.get("epoch", 0))
        records.append(
            TrialRecord(
                trial_id=trial.trial_id,
                params=dict(trial.config),
                status=str(trial.status),
                path=path,
                history=history,
                error=trial_error(trial) if trial.status == "ERROR" else None,
                train_run=train_run_of(path),
                trial=trial,
            )
        )
    return records


def pick_best(records: list[TrialRecord], metric: str, mode: str) -> TrialRecord:
    """The trial with the best ``metric`` over its epochs (the first of equals)."""
    scored = [(r.best_value(metric, mode), r) for r in records]
    scored = [(v, r) for v, r in scored if v is not None]
    if not scored:
        raise HarpError(f"no trial reported '{metric}'; nothing to export (see the trial errors in the sweep directory)")
    return max(scored, key=lambda item: signed(item[0], mode))[1]


def optuna_trial_info(cfg: HarpConfig, paths: SweepPaths) -> dict[str, dict[str, Any]]:
    """Tune trial id -> Optuna state, number and user attrs (empty when the study is unreachable)."""
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


# ------------------------------------------------------------------------------------------
# best checkpoints
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BestCheckpoint:
    """A run's best checkpoint directory and the metrics reported with it."""

    path: Path
    metrics: dict[str, Any]


def best_train_run_checkpoint(run: ray.train.Result | str | Path, metric: str, mode: str) -> BestCheckpoint | None:
    """The best checkpoint of a Ray Train run (a ``Result`` or its directory) by ``metric``,
    not its latest; None when it kept none or its directory is unreadable."""
    import ray.train

    if isinstance(run, (str, Path)):
        try:
            run = ray.train.Result.from_path(str(run))
        except RuntimeError as exc:
            log.warning("Train run %s unreadable (%s)", run, exc)
            return None
    best = run.get_best_checkpoint(metric, mode)
    if best is None:
        return None
    metrics = next((m for c, m in (run.best_checkpoints or []) if c.path == best.path), {})
    return BestCheckpoint(Path(best.path), dict(metrics))


def tune_checkpoints(trial: Trial) -> list[tuple[ray.train.Checkpoint, dict[str, Any]]]:
    """The checkpoints Tune kept for an in-process trial, with their metrics."""
    manager = trial.run_metadata.checkpoint_manager
    if manager is None:
        return []
    return [(r.checkpoint, dict(r.metrics)) for r in manager.best_checkpoint_results if r.checkpoint is not None]


def best_trial_checkpoint(trial: TrialRecord | Trial, metric: str, mode: str) -> BestCheckpoint | None:
    """A Tune trial's best checkpoint by ``metric``: its Train run's, or the one Tune kept."""
    if isinstance(trial, TrialRecord):
        train_run, tune_trial = trial.train_run, trial.trial
    else:
        train_run, tune_trial = train_run_of(getattr(trial, "path", None)), trial
    if train_run is not None:
        return best_train_run_checkpoint(train_run, metric, mode)
    if tune_trial is None:
        return None
    candidates = [(c, m) for c, m in tune_checkpoints(tune_trial) if is_finite(m.get(metric))]
    if not candidates:
        return None
    # max() keeps the first of equal scores: the earliest epoch wins a tie
    checkpoint, metrics = max(candidates, key=lambda item: signed(item[1][metric], mode))
    return BestCheckpoint(Path(checkpoint.path), metrics)


def validation_confusion(trial: TrialRecord | Trial, *, metric: str, mode: str) -> Confusion | None:
    """The validation confusion matrix of a trial's best checkpoint (the W&B callback logs it)."""
    best = best_trial_checkpoint(trial, metric, mode)
    if best is None:
        return None
    import tempfile

    from harp.evaluate import evaluate_checkpoint  # torch: only when a trial ends

    with tempfile.TemporaryDirectory(prefix="harp-confusion-") as tmp:
        out = evaluate_checkpoint(best.path, split="val", num_clips=1, num_crops=1, output_dir=tmp)
    matrix = out.get("confusion_matrix")
    names = list((out.get("per_class_accuracy") or {}).keys())
    if matrix is None or len(names) != len(matrix):
        return None
    return names, matrix


__all__ = [
    "BestCheckpoint",
    "Confusion",
    "TRAIN_RUN_FILE",
    "TrialRecord",
    "best_train_run_checkpoint",
    "best_trial_checkpoint",
    "load_trials",
    "optuna_trial_info",
    "pick_best",
    "train_run_of",
    "trial_error",
    "tune_checkpoints",
    "validation_confusion",
]
