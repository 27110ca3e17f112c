"""Reading what a sweep produced: its trials, their errors, Optuna's verdicts and each trial's
best checkpoint. Export and the sweep runner (its W&B callback) both read through here.

A trial's best checkpoint comes from the run's own records, never from guessed paths:

- in-process (1-worker) trials: the Tune trial's checkpoint manager (``CheckpointConfig`` kept the
  best ``num_to_keep`` by the sweep metric);
- TorchTrainer (N-worker) trials: ``ray.train.Result.from_path(<the trial's Train run>)
  .get_best_checkpoint(metric, mode)``. The Train run's path is in the trial's ``train_run.json``
  (written by the trainable, read here): Tune's own ``Result.checkpoint`` is None in the
  Train-inside-Tune pattern, and its ``checkpoint_path`` metric is the latest checkpoint, not the best.

A sweep directory on remote storage (``s3://...``) is read through its pyarrow filesystem: Tune's
``ExperimentAnalysis`` and ``ray.train.Result.from_path`` take it as ``storage_filesystem``, and a
checkpoint there is downloaded only to be read (``BestCheckpoint.local_directory``: Ray's
``Checkpoint.as_directory``, which removes the copy afterwards).

Ray is imported inside the functions: it takes seconds, and ``harp export --help`` should not.
"""
from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from harp.cluster.storage import StorageLocation, is_uri, redacted, resolve_output_dir
from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.numbers import best_of, is_finite, signed
from harp.train.val_confusion import VAL_CONFUSION, Confusion, parse_val_confusion
from harp.tune.checkpoints import (
    TRAIN_RUN_FILE,
    BestCheckpoint,
    best_train_run_checkpoint,
    local_fs,
    read_text,
    train_run_of,
    tune_checkpoints,
    with_checkpointed_epochs,
    write_train_run,
)
from harp.tune.study_copy import readable_study_url
from harp.tune.sweep_dir import TUNE_DIR, SweepPaths

if TYPE_CHECKING:
    import optuna
    from ray.tune.experiment import Trial

log = logging.getLogger("harp.tune")


# ------------------------------------------------------------------------------------------
# trials
# ------------------------------------------------------------------------------------------
FINAL_STATES = ("TERMINATED", "ERROR")  # Tune's statuses of a trial that will not run again


@dataclass
class TrialRecord:
    """One Tune trial as export needs it: parameters, status, per-epoch results, error, runs."""

    trial_id: str
    params: dict[str, Any]
    status: str
    path: Path | None  # the Tune trial's directory on the sweep's filesystem
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    train_run: str | None = None  # a multi-worker trial's Train run: a local path or a URI
    trial: Trial | None = None

    @property
    def ended(self) -> bool:
        """Completed, stopped early or failed: not paused, pending or cut off (a resume runs those on)."""
        return self.status in FINAL_STATES

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


# "harp.models.pretrained.PretrainedError: cannot read ..." -> "cannot read ..."
_QUALIFIED_ERROR = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt)(?:\([^)]*\))?: ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def root_cause(exc: BaseException) -> BaseException:
    """The exception a trainable raised, out of Ray's ``RayTaskError`` wrapper (``.cause``)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def error_line(error: BaseException | str | None) -> str | None:
    """One line saying what went wrong: a harp error's own message, another exception's type and
    message; for the text of Tune's ``error.txt``, its last exception line. Never Ray's
    ``ray::ImplicitFunc.train() (pid=...)`` header, a module path or terminal colour codes."""
    if error is None:
        return None
    if isinstance(error, BaseException):
        cause = root_cause(error)
        text = _ANSI.sub("", str(cause)).strip()
        if isinstance(cause, HarpError):
            return text.splitlines()[0] if text else type(cause).__name__
        if cause is not error or not text.startswith("ray::"):
            first = text.splitlines()[0] if text else ""
            return f"{type(cause).__name__}: {first}" if first else type(cause).__name__
        error = text
    lines = [_ANSI.sub("", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Failure #", "Traceback", "File ", "^"))]
    exception_lines = [line for line in lines if _QUALIFIED_ERROR.match(line)]
    line = exception_lines[-1] if exception_lines else (lines[-1] if lines else "error")
    qualified = _QUALIFIED_ERROR.match(line)
    if qualified and ("harp." in qualified.group(0) or "HarpError" in qualified.group(0)):
        return line[qualified.end():]
    return line


def trial_exception(trial: Trial) -> BaseException | None:
    """A trial's latest error as Tune pickled it (``error.pkl``): the driver's copy of the trial
    directory while the sweep runs (written before storage is synced), else the one in storage."""
    import ray.cloudpickle

    exc: Any = None
    try:
        path = trial.pickled_error_file
        if path and Path(path).is_file():
            with open(path, "rb") as handle:
                exc = ray.cloudpickle.load(handle)
        else:
            exc = trial.get_pickled_error()
    except Exception:  # an error class this process cannot import: error.txt still tells
        return None
    return exc if isinstance(exc, BaseException) else None


def trial_error(trial: Trial) -> str | None:
    """A trial's latest error in one line (its pickled exception, else ``error.txt``, read through
    the trial's storage filesystem), or None when it never failed. A trial waiting for a retry has one too."""
    line = error_line(trial_exception(trial))
    if line:
        return line[:300]
    path = getattr(trial, "path", None)
    storage = getattr(trial, "storage", None)
    filesystem = getattr(storage, "storage_filesystem", None) or local_fs()
    text = read_text(filesystem, f"{str(path).rstrip('/')}/error.txt") if path else None
    if text is not None:
        return (error_line(text) or "error")[:300]
    return "error" if trial.status == "ERROR" else None


def _tune_experiment(source: SweepPaths | str | Path) -> tuple[StorageLocation, StorageLocation]:
    """(Tune's experiment directory, the sweep directory holding it) for a sweep or a tune dir."""
    if isinstance(source, SweepPaths):
        return source.storage.child(TUNE_DIR), source.storage
    text = str(source).rstrip("/")
    if is_uri(text):
        tune = resolve_output_dir(text, key="the Tune experiment")
    else:
        path = Path(text).resolve()
        tune = StorageLocation(local_fs(), str(path), str(path))
    parent_path, parent_value = tune.path.rpartition("/")[0], tune.value.rpartition("/")[0]
    return tune, StorageLocation(tune.filesystem, parent_path, parent_value)


def load_trials(source: SweepPaths | str | Path) -> list[TrialRecord]:
    """Read a sweep's Tune experiment (its ``SweepPaths``, or the ``tune/`` directory as a path or
    a URI) into TrialRecords, through the sweep's filesystem (no running Ray needed)."""
    from ray.tune import ExperimentAnalysis

    tune, sweep = _tune_experiment(source)
    try:
        started = tune.exists()
    except OSError as exc:
        raise HarpError(f"cannot read {tune.value} ({str(exc).splitlines()[0]}); check the storage's credentials and endpoint") from exc
    if not started:
        raise HarpError(f"no Tune experiment in {tune.value}; was the sweep started?")
    analysis = ExperimentAnalysis(tune.path, storage_filesystem=tune.filesystem)
    frames = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        path = Path(trial.path) if trial.path else None
        frame = frames.get(trial.trial_id)
        history: list[dict[str, Any]] = []
        if frame is not None and len(frame):
            keep = [c for c in frame.columns if not c.startswith("config/")]
            history = [{str(k): v for k, v in row.items()} for row in frame[keep].to_dict("records")]
            if "epoch" in frame.columns:
                # one row per epoch: a trial resumed from an older checkpoint than its last report
                # reports some epochs again (the later report is the one its checkpoints match)
                by_epoch = {row.get("epoch", 0): row for row in history}
                history = [by_epoch[epoch] for epoch in sorted(by_epoch)]
                if trial.path:
                    history = with_checkpointed_epochs(history, trial.path, tune.filesystem)
        records.append(
            TrialRecord(
                trial_id=trial.trial_id,
                params=dict(trial.config),
                status=str(trial.status),
                path=path,
                history=history,
                error=trial_error(trial),
                train_run=train_run_of(trial.path, tune.filesystem, sweep),
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


CellT = TypeVar("CellT", bound=Hashable)


def group_trials(records: Iterable[TrialRecord], cell_of: Callable[[TrialRecord], CellT]) -> dict[CellT, list[TrialRecord]]:
    """Trials by the cell ``cell_of`` puts them in (a study's data set x family, ...), cells in
    the order their first trial appears, trials in their own order: each cell is ranked on its own,
    so validation scores of different cells are never compared."""
    cells: dict[CellT, list[TrialRecord]] = {}
    for record in records:
        cells.setdefault(cell_of(record), []).append(record)
    return cells


def optuna_trial_info(cfg: HarpConfig, paths: SweepPaths) -> dict[str, dict[str, Any]]:
    """Tune trial id -> Optuna state, number and user attrs (empty when the study is unreachable)."""
    study = load_study(cfg, paths)
    if study is None:
        log.warning("no Optuna study readable for %s; trials.parquet goes without Optuna states", paths.where)
        return {}
    out = {}
    for t in study.get_trials(deepcopy=False):
        tid = t.user_attrs.get("tune_trial_id")
        if tid:
            out[tid] = {"state": t.state.name, "number": t.number, **t.user_attrs}
    return out


def load_study(cfg: HarpConfig, paths: SweepPaths) -> optuna.Study | None:
    """The sweep's Optuna study, or None when its storage holds none (yet) or cannot be opened."""
    import optuna

    from harp.tune.study import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = readable_study_url(cfg, paths)
    if url is None:
        return None
    try:
        return optuna.load_study(study_name=str(cfg.sweep.name), storage=make_storage(url))
    except KeyError as exc:  # the database is there, the study not yet (a sweep starting)
        log.debug("Optuna study %s not in %s yet (%s)", cfg.sweep.name, redacted(url), exc)
    except Exception as exc:  # a database that cannot be opened or read, no driver for it
        log.warning("the Optuna study %s in %s is not readable (%s: %s)", cfg.sweep.name, redacted(url), type(exc).__name__, exc)
    return None


def param_importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """Each parameter's importance for the first objective (summing to 1), and how it was computed
    (no importances, and why, with too few trials). Optuna's PED-ANOVA (Watanabe et al., IJCAI
    2023; condPED-ANOVA for conditional parameters): no scikit-learn. It reads COMPLETE trials, so
    PRUNED ones enter a copy of the study with their best reported value (what ASHA stopped says
    something about its parameters too); multi-objective studies have no intermediate values, so
    their PRUNED trials are left out."""
    import optuna

    state = optuna.trial.TrialState
    multi = len(study.directions) > 1
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    copy = optuna.create_study(directions=study.directions)
    for trial in study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED)):
        if trial.state == state.COMPLETE:
            copy.add_trial(trial)
        elif not multi and trial.intermediate_values:
            values = trial.intermediate_values.values()
            value = max(values) if maximize else min(values)
            copy.add_trial(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions, value=value))
    count = len(copy.trials)
    what = "PED-ANOVA over COMPLETE" + (" trials" if multi else " and PRUNED trials (a pruned trial counts with its best reported value)")
    if count < 4:
        return {}, f"{what}: needs at least 4 such trials, the study has {count}"
    quantile = min(0.5, max(0.1, 2.0 / count))  # at least two trials in the top quantile
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
    first = (lambda t: -t.values[0]) if maximize else (lambda t: t.values[0])  # PED-ANOVA: lower is better
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = optuna.importance.get_param_importances(copy, evaluator=evaluator, target=first, normalize=False)
    total = sum(raw.values())
    scores = {name: value / total for name, value in raw.items()} if total > 0 else {name: 0.0 for name in raw}
    return scores, f"{what}, {count} trials, top {quantile:.0%} vs all"


def pareto_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The Pareto front of a multi-objective study (Optuna's ``best_trials``); [] otherwise."""
    if len(study.directions) < 2:
        return []
    return list(study.best_trials)


# ------------------------------------------------------------------------------------------
# best checkpoints (BestCheckpoint and the Train run's and Tune's own: harp.tune.checkpoints)
# ------------------------------------------------------------------------------------------
def best_trial_checkpoint(trial: TrialRecord | Trial, metric: str, mode: str) -> BestCheckpoint | None:
    """A Tune trial's best checkpoint by ``metric``: its Train run's, or the one Tune kept."""
    if isinstance(trial, TrialRecord):
        train_run, tune_trial = trial.train_run, trial.trial
    else:
        storage = getattr(trial, "storage", None)
        train_run, tune_trial = train_run_of(getattr(trial, "path", None), getattr(storage, "storage_filesystem", None)), trial
    if train_run is not None:
        return best_train_run_checkpoint(train_run, metric, mode)
    if tune_trial is None:
        return None
    candidates = [(c, m) for c, m in tune_checkpoints(tune_trial) if is_finite(m.get(metric))]
    if not candidates:
        return None
    # max() keeps the first of equal scores: the earliest epoch wins a tie
    checkpoint, metrics = max(candidates, key=lambda item: signed(item[1][metric], mode))
    return BestCheckpoint(Path(checkpoint.path), metrics, checkpoint)


def validation_confusion(trial: TrialRecord | Trial, *, metric: str, mode: str) -> Confusion | None:
    """The validation confusion matrix of a trial's best checkpoint (the W&B callback logs it):
    the one the loop counted while validating (``val_confusion.json``); a checkpoint from before
    harp wrote that file is evaluated on the val split instead."""
    best = best_trial_checkpoint(trial, metric, mode)
    if best is None:
        return None
    text = best.read_file(VAL_CONFUSION)
    if text is not None:
        return parse_val_confusion(text)
    import tempfile

    from harp.evaluate import evaluate_checkpoint  # torch: only for an old checkpoint

    with tempfile.TemporaryDirectory(prefix="harp-confusion-") as tmp, best.local_directory() as checkpoint_dir:
        out = evaluate_checkpoint(checkpoint_dir, split="val", num_clips=1, num_crops=1, output_dir=tmp)
    matrix = out.get("confusion_matrix")
    names = list((out.get("per_class_accuracy") or {}).keys())
    if matrix is None or len(names) != len(matrix):
        return None
    return names, matrix


def exported_confusion(folder: Path) -> Confusion | None:
    """The test confusion matrix export wrote for a model (``best/`` or a study cell's folder):
    its ``metrics.json`` holds evaluate's matrix and per-class accuracies (in class order)."""
    try:
        test = json.loads((folder / "metrics.json").read_text()).get("test") or {}
    except (OSError, ValueError):
        return None
    names, matrix = list(test.get("per_class_accuracy") or {}), test.get("confusion_matrix")
    return (names, [[int(v) for v in row] for row in matrix]) if matrix and len(names) == len(matrix) else None


__all__ = [
    "BestCheckpoint",
    "Confusion",
    "TRAIN_RUN_FILE",
    "TrialRecord",
    "best_train_run_checkpoint",
    "best_trial_checkpoint",
    "error_line",
    "exported_confusion",
    "group_trials",
    "load_study",
    "load_trials",
    "optuna_trial_info",
    "param_importances",
    "pareto_trials",
    "pick_best",
    "root_cause",
    "train_run_of",
    "trial_error",
    "trial_exception",
    "tune_checkpoints",
    "validation_confusion",
    "write_train_run",
]
