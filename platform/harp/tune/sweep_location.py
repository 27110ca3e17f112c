"""Where a sweep directory lives: ``SweepPaths``, a local path or a location on remote storage.

``sweep.output_dir`` may be a URI (``s3://bucket/runs``, ``gs://...``: ``harp.cluster.storage``).
Then the sweep's files, ``tune/``, ``train_runs/``, ``trials.parquet`` and ``best/`` live there
and are read and written through its pyarrow filesystem, while what an object store cannot hold
stays in this driver's own directory for the sweep (``SweepPaths.root``: the SQLite study, the
lock, W&B's files, and ``remote.json`` saying where the sweep lives, so that directory names the
sweep too). A ``file://`` URI is a local path. ``SweepPaths.where`` is how the sweep is named to a
person (its URI or its path), ``SweepPaths.storage`` how it is reached. The layout itself, and
the files that say what the sweep is, are ``harp.tune.sweep_dir``'s.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp.cluster.storage import StorageLocation, driver_dir, is_uri, resolve_output_dir
from harp.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow.fs

SWEEP_FILE = "sweep.json"
TUNE_DIR = "tune"
TRAIN_RUNS_DIR = "train_runs"
BEST_DIR = "best"
TRIALS_FILE = "trials.parquet"
REMOTE_FILE = "remote.json"  # in a driver's own directory for a URI sweep: where the sweep lives


@dataclass(frozen=True)
class SweepPaths:
    """Where each part of one sweep lives (the layout in ``harp.tune.sweep_dir``).

    ``root`` is a local directory: the sweep directory itself, or for a sweep on remote storage
    (``remote``) this driver's own directory for it. The ``Path`` properties below are in ``root``;
    what lives in the sweep directory proper is reached through ``storage`` (``exists``,
    ``read_text``, ``write_text``, ``writing``, ``uri``), which is ``root`` itself for a local sweep."""

    root: Path
    remote: StorageLocation | None = None

    # -- where the sweep lives ----------------------------------------------------------------
    @cached_property
    def storage(self) -> StorageLocation:
        """The sweep directory proper: the remote location, or ``root`` on the local filesystem."""
        if self.remote is not None:
            return self.remote
        import pyarrow.fs

        return StorageLocation(pyarrow.fs.LocalFileSystem(), str(self.root), str(self.root))

    @property
    def is_remote(self) -> bool:
        return self.remote is not None

    @property
    def where(self) -> str:
        """The sweep directory as a person names it (``harp sweep --resume WHERE``): its URI or path."""
        return self.storage.value

    @property
    def name(self) -> str:
        return self.where.rstrip("/").rpartition("/")[2] if self.remote is not None else self.root.name

    @property
    def output_dir(self) -> str:
        """The ``sweep.output_dir`` the sweep directory is in."""
        return self.where.rstrip("/").rpartition("/")[0] if self.remote is not None else str(self.root.parent)

    @property
    def filesystem(self) -> pyarrow.fs.FileSystem:
        return self.storage.filesystem

    @property
    def tune_path(self) -> str:
        """Tune's experiment on ``filesystem`` (``Tuner.restore``, ``ExperimentAnalysis``)."""
        return self.storage.join(TUNE_DIR)

    def uri(self, *parts: str) -> str:
        """A part of the sweep directory as a person names it (``s3://bucket/runs/x/best``)."""
        return self.storage.uri(*parts)

    def describe(self) -> str:
        """The sweep directory for a sweep's start: where it lives, and this driver's own part."""
        if self.remote is None:
            return str(self.root)
        return f"{self.remote.value} ({type(self.remote.filesystem).__name__}; this driver's study, lock and W&B files in {self.root})"

    def exists(self, *parts: str) -> bool:
        return self.storage.exists(*parts)

    def read_text(self, *parts: str) -> str:
        return self.storage.read_text(*parts)

    def write_text(self, text: str, *parts: str) -> None:
        self.storage.write_text(text, *parts)

    def read_json(self, *parts: str) -> dict[str, Any] | None:
        """A JSON object in the sweep directory, or None when it is missing or unreadable."""
        try:
            return dict(json.loads(self.read_text(*parts)))
        except (OSError, ValueError, TypeError):
            return None

    @contextlib.contextmanager
    def writing(self, *parts: str) -> Iterator[Path]:
        """A local path to write a file or directory of the sweep directory at: the place itself
        for a local sweep; for a remote one a temporary path, copied over ``parts`` (what was there
        is replaced) when the block ends without an error, and removed in any case."""
        if self.remote is None:
            yield self.root.joinpath(*parts)
            return
        staging = Path(tempfile.mkdtemp(prefix="harp-upload-"))
        try:
            local = staging.joinpath(*parts)
            local.parent.mkdir(parents=True, exist_ok=True)
            yield local
            if local.exists():
                self.remote.delete(*parts)
                self.remote.upload(local, *parts)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -- the parts (local paths in ``root``) ---------------------------------------------------
    @property
    def tune(self) -> Path:
        return self.root / TUNE_DIR

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def wandb(self) -> Path:
        return self.root / "wandb"

    @property
    def train_runs(self) -> Path:
        return self.root / "train_runs"

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def trials(self) -> Path:
        return self.root / "trials.parquet"

    @property
    def sweep_file(self) -> Path:
        return self.root / SWEEP_FILE

    def has_tune_state(self) -> bool:
        return self.exists(TUNE_DIR, "tuner.pkl")


def tune_state_written(paths: SweepPaths) -> float | None:
    """When Tune last wrote the sweep's experiment state (``tune/experiment_state-*.json``), in
    seconds since the epoch, read through the sweep's filesystem; None before it first did."""
    import pyarrow
    import pyarrow.fs

    try:
        found = paths.filesystem.get_file_info(pyarrow.fs.FileSelector(paths.tune_path, allow_not_found=True))
    except (OSError, pyarrow.ArrowException):
        return None
    times = [info.mtime.timestamp() for info in found
             if info.base_name.startswith("experiment_state-") and info.base_name.endswith(".json") and info.mtime is not None]
    return max(times, default=None)


def sweep_paths(output_dir: str, name: str) -> SweepPaths:
    """The sweep directory ``output_dir/name``: a local path (made absolute), or a URI's filesystem
    location with this driver's own directory for it. Nothing is created or contacted."""
    location = resolve_output_dir(output_dir)
    if location.is_local:  # a path, or file:///...
        return SweepPaths(Path(location.path) / name)
    remote = location.child(name)
    return SweepPaths(driver_dir(remote), remote)


def open_sweep_dir(sweep_dir: str | Path) -> SweepPaths:
    """A sweep directory a person names (``--resume``, ``harp export``/``status``): a path, a URI,
    or a driver's own directory of a remote sweep (its ``remote.json`` says where the sweep is)."""
    text = str(sweep_dir)
    if is_uri(text):
        location = resolve_output_dir(text, key="the sweep directory")
        return SweepPaths(Path(location.path)) if location.is_local else SweepPaths(driver_dir(location), location)
    root = Path(text)
    pointer = root / REMOTE_FILE
    if not (root / SWEEP_FILE).exists() and pointer.is_file():
        return open_sweep_dir(str(json.loads(pointer.read_text())["uri"]))
    return SweepPaths(root)


def train_runs_location(sweep_dir: str) -> StorageLocation:
    """Where a sweep's multi-worker trials keep their Ray Train runs (``train_runs/``), for the trial
    process given the sweep directory as the tuner hands it (a path, or a URI): Ray Train's
    ``storage_path`` (``.path``) and ``storage_filesystem`` (``.filesystem``), and ``.value`` to record."""
    return open_sweep_dir(sweep_dir).storage.child(TRAIN_RUNS_DIR)


def recorded_driver_dir(paths: SweepPaths, *, existing_only: bool = False) -> SweepPaths:
    """A remote sweep keeps the driver directory it was started with (``driver_dir`` in its
    sweep.json), wherever it is resumed: Tune's restored searcher reopens the SQLite study at the
    path it was pickled with, so that is where this driver's study must be. ``existing_only``
    (a reader): only when that directory is on this machine."""
    if paths.remote is None:
        return paths
    recorded = (paths.read_json(SWEEP_FILE) or {}).get("driver_dir")
    if not recorded or Path(recorded) == paths.root or (existing_only and not Path(recorded).is_dir()):
        return paths
    return SweepPaths(Path(recorded), paths.remote)


def mark_driver_dir(paths: SweepPaths) -> None:
    """Make the driver's own directory of a remote sweep (it must exist before SQLite opens its
    study there) and record in it where the sweep lives."""
    if paths.remote is None:
        return
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        (paths.root / REMOTE_FILE).write_text(json.dumps({"uri": paths.remote.value}) + "\n")
    except OSError as exc:
        raise ConfigError(
            f"{paths.where}: cannot make this driver's directory for it, {paths.root} ({exc.strerror or exc}); a sweep keeps the "
            "one it was started with (sweep.json's driver_dir: its SQLite study is reopened there): run as a user who may create it, "
            "or set HARP_STATE_DIR for new sweeps and sweep.optuna_storage for a cluster"
        ) from exc


EXPORTED_WEIGHTS = (".safetensors", ".pt")  # what a reader of best/ does not download


def mirror_exports(paths: SweepPaths) -> None:
    """What export wrote to a remote sweep's ``best/``, without the weights, copied into this
    machine's own directory of it (``root/best``, which export itself never writes: it uploads),
    so the report reads the exported metrics, confusion matrices and table where a local sweep
    has them. Nothing for a local sweep; a storage error leaves the local copy out."""
    if paths.remote is None:
        return
    import pyarrow

    local = paths.root / BEST_DIR
    shutil.rmtree(local, ignore_errors=True)
    base = paths.remote.join(BEST_DIR) + "/"
    try:
        for info in paths.remote.files(BEST_DIR):
            if info.path.endswith(EXPORTED_WEIGHTS) or not info.path.startswith(base):
                continue
            target = local / info.path[len(base):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(paths.remote.read_bytes(BEST_DIR, info.path[len(base):]))
    except (OSError, pyarrow.ArrowException):
        shutil.rmtree(local, ignore_errors=True)


__all__ = [
    "BEST_DIR",
    "REMOTE_FILE",
    "SWEEP_FILE",
    "SweepPaths",
    "TRAIN_RUNS_DIR",
    "TRIALS_FILE",
    "TUNE_DIR",
    "mark_driver_dir",
    "mirror_exports",
    "open_sweep_dir",
    "recorded_driver_dir",
    "sweep_paths",
    "train_runs_location",
    "tune_state_written",
]
