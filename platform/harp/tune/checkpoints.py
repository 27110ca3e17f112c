"""A trial's checkpoints wherever they are: the pointer a multi-worker trial leaves to its Ray
Train run, the best checkpoint of a Train run or of Tune's own records, and a local directory to
read one from (a checkpoint on remote storage is downloaded for the block, then removed), and
the per-epoch history the checkpoints carry (to fill an epoch whose report the driver never
logged). ``harp.tune.results`` reads trials through these and re-exports them.

Ray is imported inside the functions: it takes seconds, and ``harp export --help`` should not.
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp.cluster.storage import StorageLocation
from harp.numbers import is_finite
from harp.tune.sweep_location import TRAIN_RUNS_DIR

if TYPE_CHECKING:
    import pyarrow.fs
    import ray.train
    from ray.tune.experiment import Trial

log = logging.getLogger("harp.tune")

TRAIN_RUN_FILE = "train_run.json"


# ------------------------------------------------------------------------------------------
# the Train run of a multi-worker trial
# ------------------------------------------------------------------------------------------
def write_train_run(trial_dir: Path, storage_path: str | Path, name: str) -> None:
    """Record in a Tune trial's directory where its Ray Train run lives (``storage_path/name``;
    ``storage_path`` a local path or a URI)."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    pointer = {"storage_path": str(storage_path), "name": name, "path": f"{str(storage_path).rstrip('/')}/{name}"}
    (trial_dir / TRAIN_RUN_FILE).write_text(json.dumps(pointer))


def read_text(filesystem: pyarrow.fs.FileSystem, path: str) -> str | None:
    try:
        with filesystem.open_input_stream(path) as stream:
            return bytes(stream.readall()).decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def checkpoint_histories(trial_dir: str, filesystem: pyarrow.fs.FileSystem) -> list[list[dict[str, Any]]]:
    """The per-epoch history each of a Tune trial's kept checkpoints carries (its ``history.json``,
    written beside the weights: ``harp.train.reproduce``), newest checkpoint first; [] when the
    trial keeps none (a multi-worker trial's are in its Train run) or they cannot be listed."""
    import pyarrow.fs

    from harp.train.reproduce import HISTORY_FILE

    try:
        infos = filesystem.get_file_info(pyarrow.fs.FileSelector(str(trial_dir).rstrip("/"), recursive=False))
    except (OSError, ValueError):
        return []
    folders = sorted((i.path for i in infos if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith("checkpoint_")), reverse=True)
    histories = []
    for folder in folders:
        text = read_text(filesystem, f"{folder}/{HISTORY_FILE}")
        try:
            rows = json.loads(text) if text else []
        except ValueError:
            continue
        if isinstance(rows, list):
            histories.append([row for row in rows if isinstance(row, dict)])
    return histories


def _epoch(row: dict[str, Any]) -> int:
    value = row.get("epoch")
    return int(value) if value is not None and is_finite(value) else 0


def with_checkpointed_epochs(history: list[dict[str, Any]], trial_dir: str, filesystem: pyarrow.fs.FileSystem) -> list[dict[str, Any]]:
    """``history`` with the epochs it lacks below its last one taken from the trial's checkpoints.

    A trial process killed after an epoch's checkpoint is on disk but before the driver has logged
    that epoch's report loses the report (Tune's result files are the driver's), while the retry
    resumes after that checkpoint: without this its history would skip the epoch. Each checkpoint
    carries every epoch of its run so far, so the row is read back from there, marked
    ``from_checkpoint``. Only a history with a gap reads the checkpoints."""
    have = {_epoch(row) for row in history} - {0}
    missing = set(range(1, max(have, default=0) + 1)) - have
    if not missing:
        return history
    filled = list(history)
    for rows in checkpoint_histories(trial_dir, filesystem):
        for row in rows:
            if _epoch(row) in missing:
                missing.discard(_epoch(row))
                filled.append({**row, "from_checkpoint": True})
    return sorted(filled, key=_epoch)


def local_fs() -> pyarrow.fs.FileSystem:
    import pyarrow.fs

    return pyarrow.fs.LocalFileSystem()


def train_run_of(trial_dir: str | Path | None, filesystem: pyarrow.fs.FileSystem | None = None,
                 sweep: StorageLocation | None = None) -> str | None:
    """The Ray Train run of a Tune trial (a local path or a URI), or None for an in-process trial.
    ``trial_dir`` is on ``filesystem`` (local by default); given the ``sweep`` directory, the run
    is looked for in its ``train_runs/`` first (where the trial put it, wherever the sweep has
    been moved to since), else where the trial recorded it."""
    if not trial_dir:
        return None
    text = read_text(filesystem or local_fs(), f"{str(trial_dir).rstrip('/')}/{TRAIN_RUN_FILE}")
    if text is None:
        return None
    pointer = json.loads(text)
    if sweep is not None and sweep.exists(TRAIN_RUNS_DIR, pointer["name"]):
        return sweep.uri(TRAIN_RUNS_DIR, pointer["name"])
    return str(pointer["path"])


# ------------------------------------------------------------------------------------------
# best checkpoints
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BestCheckpoint:
    """A run's best checkpoint and the metrics reported with it. ``path`` is the directory on its
    filesystem (local, or e.g. ``bucket/runs/x/tune/<trial>/checkpoint_000002`` in S3);
    ``local_directory()`` gives a directory that can be read either way."""

    path: Path
    metrics: dict[str, Any]
    checkpoint: ray.train.Checkpoint | None = None

    @property
    def is_local(self) -> bool:
        import pyarrow.fs

        return self.checkpoint is None or isinstance(self.checkpoint.filesystem, pyarrow.fs.LocalFileSystem)

    def describe(self) -> str:
        """The checkpoint as a person names it: a path, or a URI on remote storage."""
        filesystem = self.checkpoint.filesystem if self.checkpoint is not None else None
        if self.is_local or filesystem is None:
            return str(self.path)
        scheme = {"gcs": "gs"}.get(filesystem.type_name, filesystem.type_name)
        return f"{scheme}://{self.path.as_posix()}"

    def read_file(self, name: str) -> str | None:
        """One small file of the checkpoint, read where it lies (nothing else downloaded), or None."""
        filesystem = self.checkpoint.filesystem if self.checkpoint is not None else local_fs()
        return read_text(filesystem, (self.path / name).as_posix())

    @contextlib.contextmanager
    def local_directory(self) -> Iterator[Path]:
        """The checkpoint as a local directory for the block: itself when local, else a download
        that is removed when the block ends (Ray's ``Checkpoint.as_directory``)."""
        if self.is_local or self.checkpoint is None:
            yield self.path
            return
        with self.checkpoint.as_directory() as directory:
            yield Path(directory)


def best_train_run_checkpoint(run: ray.train.Result | str | Path, metric: str, mode: str,
                              filesystem: pyarrow.fs.FileSystem | None = None) -> BestCheckpoint | None:
    """The best checkpoint of a Ray Train run (a ``Result``, or its directory: a path, a URI, or a
    path on ``filesystem``) by ``metric``, not its latest; None when it kept none or its directory
    is unreadable."""
    import ray.train

    if isinstance(run, (str, Path)):
        try:
            run = ray.train.Result.from_path(str(run), storage_filesystem=filesystem)
        except (RuntimeError, OSError) as exc:
            log.warning("Train run %s unreadable (%s)", run, exc)
            return None
    best = run.get_best_checkpoint(metric, mode)
    if best is None:
        return None
    metrics = next((m for c, m in (run.best_checkpoints or []) if c.path == best.path), {})
    return BestCheckpoint(Path(best.path), dict(metrics), best)


def tune_checkpoints(trial: Trial) -> list[tuple[ray.train.Checkpoint, dict[str, Any]]]:
    """The checkpoints Tune kept for an in-process trial, with their metrics."""
    manager = trial.run_metadata.checkpoint_manager
    if manager is None:
        return []
    return [(r.checkpoint, dict(r.metrics)) for r in manager.best_checkpoint_results if r.checkpoint is not None]


__all__ = [
    "BestCheckpoint",
    "TRAIN_RUN_FILE",
    "best_train_run_checkpoint",
    "checkpoint_histories",
    "read_text",
    "train_run_of",
    "with_checkpointed_epochs",
    "tune_checkpoints",
    "write_train_run",
]
