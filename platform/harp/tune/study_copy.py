"""Where a sweep's Optuna study lives, said in one line, and its copy beside a remote sweep.

The study is ``sweep.optuna_storage`` (an RDB every driver reaches: PostgreSQL on a cluster), or
else a SQLite file: in the sweep directory when that is a local or shared path, and on the driver
(``SweepPaths.root``) when the sweep directory is on an object store, where SQLite cannot live
(no file locks, no partial writes). Such a study is local to the machine that drives the sweep:
each run uploads a copy of it (``optuna.db`` in the sweep directory) when it stops, so a resume
on another machine, ``harp export`` and ``harp status`` elsewhere start from that copy. A
driver that is killed uploads nothing; on its own machine the file it left is newer than the copy
and is kept. ``optuna.db.synced`` in the driver's directory holds the digest of the copy this
machine last uploaded or downloaded: a copy in the bucket with another digest was uploaded by
another driver since, and a resume here takes it.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from harp.cluster.storage import redacted
from harp.config.schema import HarpConfig
from harp.tune.sweep_dir import SweepPaths, storage_url

log = logging.getLogger("harp.tune")

STUDY_COPY = "optuna.db"  # in a remote sweep directory
SYNCED_FILE = "optuna.db.synced"  # in the driver's own directory: the digest of the copy last synced
READ_COPY = "optuna.copy.db"  # in a reader's own directory: the copy it downloaded to read


def _uses_driver_sqlite(cfg: HarpConfig, paths: SweepPaths) -> bool:
    return paths.is_remote and not cfg.sweep.optuna_storage


def study_line(cfg: HarpConfig, paths: SweepPaths) -> str:
    """Where the study lives, in one line for a sweep's start (never a password)."""
    if cfg.sweep.optuna_storage:
        return f"study: {redacted(cfg.sweep.optuna_storage)} (sweep.optuna_storage)"
    if paths.is_remote:
        return (f"study: {storage_url(cfg, paths)} (local to this driver: set sweep.optuna_storage for a cluster; "
                f"a copy goes to {paths.uri(STUDY_COPY)} when the sweep stops)")
    return f"study: {storage_url(cfg, paths)} (in the sweep directory)"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _synced(paths: SweepPaths) -> str | None:
    try:
        return (paths.root / SYNCED_FILE).read_text().strip() or None
    except OSError:
        return None


def _mark_synced(paths: SweepPaths, digest: str) -> None:
    (paths.root / SYNCED_FILE).write_text(digest + "\n")


def upload_study_copy(cfg: HarpConfig, paths: SweepPaths) -> None:
    """Copy a remote sweep's driver-local SQLite study into its sweep directory (a warning, never
    an error: the sweep itself is done by now)."""
    if not _uses_driver_sqlite(cfg, paths) or not paths.optuna_db.is_file():
        return
    data = paths.optuna_db.read_bytes()
    try:
        paths.storage.write_bytes(data, STUDY_COPY)
    except OSError as exc:
        log.warning("the study's copy could not be uploaded to %s (%s); it stays in %s", paths.uri(STUDY_COPY), exc, paths.optuna_db)
        return
    _mark_synced(paths, _digest(data))


def fetch_study_copy(cfg: HarpConfig, paths: SweepPaths) -> None:
    """Before a remote sweep resumes on this driver: its study from the sweep directory's copy when
    this machine has none, or when another driver uploaded a newer one since this machine last
    synced (the local file unchanged since then). Call it holding the sweep's lock."""
    if not _uses_driver_sqlite(cfg, paths) or not paths.exists(STUDY_COPY):
        return
    remote = paths.storage.read_bytes(STUDY_COPY)
    digest, synced = _digest(remote), _synced(paths)
    if paths.optuna_db.is_file():
        if digest == synced:
            return  # the copy is this machine's own: the local file is as new or newer
        if _digest(paths.optuna_db.read_bytes()) != synced:
            log.warning("the study in %s and its copy in %s both changed since they were last synced: keeping the local one",
                        paths.optuna_db, paths.uri(STUDY_COPY))
            return
    paths.optuna_db.parent.mkdir(parents=True, exist_ok=True)
    paths.optuna_db.write_bytes(remote)
    _mark_synced(paths, digest)
    log.info("study: fetched %s into %s", paths.uri(STUDY_COPY), paths.optuna_db)


def set_aside_stale_study(cfg: HarpConfig, paths: SweepPaths) -> None:
    """Before a fresh remote sweep: a study this driver's directory still holds belongs to an
    earlier sweep at the same URI (its sweep directory has since been removed: a fresh sweep
    refuses one that holds a sweep), so it is renamed, and the new sweep's study starts empty."""
    if not _uses_driver_sqlite(cfg, paths):
        return
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (paths.optuna_db.name, SYNCED_FILE, READ_COPY):
        old = paths.root / name
        if old.exists():
            old.rename(old.with_name(f"{name}.old-{stamp}"))
            if name == paths.optuna_db.name:
                log.warning("%s held the study of an earlier sweep at %s: renamed to %s.old-%s", old, paths.where, name, stamp)


def readable_study_url(cfg: HarpConfig, paths: SweepPaths) -> str | None:
    """The study's URL for reading it (export, status), or None when there is none to read: the
    driver's own file when this machine drives the sweep, else the sweep directory's copy
    (downloaded beside it, never over a live study)."""
    if not cfg.sweep.optuna_storage and not paths.is_remote:
        return storage_url(cfg, paths) if paths.optuna_db.exists() else None
    if not _uses_driver_sqlite(cfg, paths) or paths.optuna_db.is_file():
        return storage_url(cfg, paths)
    try:
        if not paths.exists(STUDY_COPY):
            return None
        copy = paths.root / READ_COPY
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(paths.storage.read_bytes(STUDY_COPY))
    except OSError as exc:
        log.warning("the study's copy %s is not readable (%s)", paths.uri(STUDY_COPY), exc)
        return None
    return f"sqlite:///{Path(copy).resolve()}"


__all__ = ["STUDY_COPY", "fetch_study_copy", "readable_study_url", "set_aside_stale_study", "study_line", "upload_study_copy"]
