"""One sweep per directory: an exclusive ``fcntl.flock`` on ``<sweep dir>/.harp-sweep.lock``.

The kernel drops a ``flock`` when the process holding it dies (SIGKILL, OOM, power cut of a
container), so a dead driver never leaves a stale lock to clean up by hand. The file also says
who holds it (pid, host, command, start time) so the second ``harp sweep`` can say which process
to wait for. The descriptor is not inherited across ``exec`` (Python's default), so Ray's own
processes, which outlive a SIGKILLed driver for a while, never keep it.

A ``flock`` conflicts between two opens of the file even inside one process, so a test can hold
a sweep's lock in-process; ``sweep_lock`` itself is re-entrant (the command takes it before
starting Ray, ``run_sweep`` again around the run). Directories on object stores (``s3://...``) cannot be locked: a sweep
there runs without a lock, with a warning.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from harp.errors import HarpError

log = logging.getLogger("harp.tune")

LOCK_FILE = ".harp-sweep.lock"

_held: dict[Path, int] = {}  # sweep directories this process holds -> nesting depth


class SweepLocked(HarpError):
    """Another live process holds the sweep directory's lock."""


def lock_path(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / LOCK_FILE


def lock_holder(sweep_dir: str | Path) -> dict[str, Any]:
    """What the lock file says about its last holder (empty when unknown)."""
    try:
        return dict(json.loads(lock_path(sweep_dir).read_text() or "{}"))
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


def _current_holder(root: Path, wait: float = 2.0) -> dict[str, Any]:
    """Who holds the lock now, as its file says. A process that has just taken the lock writes who
    it is a moment later, so until then the file is empty or still names an earlier holder: one
    that is no longer alive on this host is not taken for the holder, and the file is read again
    (every 50 ms, for up to ``wait`` seconds) before saying "another process"."""
    deadline = time.monotonic() + wait
    while True:
        holder = lock_holder(root)
        if holder and (holder.get("host") != socket.gethostname() or _alive(holder.get("pid"))):
            return holder
        if time.monotonic() >= deadline:
            return {}
        time.sleep(0.05)


def _alive(pid: Any) -> bool:
    """Whether ``pid`` runs on this host (also another user's: psutil counts a refused signal as alive)."""
    try:
        return psutil.pid_exists(int(pid))
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def sweep_lock(sweep_dir: str | Path, *, purpose: str = "runs") -> Iterator[None]:
    """Hold the sweep directory's lock for the block; raise ``SweepLocked`` at once when a live
    process holds it. ``purpose`` words the refusal ("runs", "is being cleaned")."""
    if "://" in str(sweep_dir):
        log.warning("%s is not a local directory: the sweep runs without a directory lock", sweep_dir)
        yield
        return
    root = Path(sweep_dir).resolve()
    if root in _held:
        _held[root] += 1
        try:
            yield
        finally:
            _held[root] -= 1
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(root), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepLocked(
                f"sweep {root} is in use by {_describe(_current_holder(root))}; wait for it to end "
                "(or stop it), or pick another sweep.name"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "purpose": purpose,
            "command": " ".join(sys.argv)[:500],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        _held[root] = 1
        try:
            yield
        finally:
            del _held[root]
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def is_locked(sweep_dir: str | Path) -> bool:
    """Whether a live process holds the sweep directory's lock right now."""
    path = lock_path(sweep_dir)
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


__all__ = ["LOCK_FILE", "SweepLocked", "is_locked", "lock_holder", "lock_path", "sweep_lock"]
