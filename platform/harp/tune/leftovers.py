"""What a killed harp driver leaves behind, found and ended by the next sweep.

A driver that dies without ``ray.shutdown()`` (SIGKILL, OOM killer) leaves processes of its
private Ray instance running (the dashboard agent and runtime-env agent ignore SIGTERM and keep
their ports open) and its temporary directory ``/tmp/harp-ray-*`` (logs, sockets, and, since
Ray's processes get ``TMPDIR`` inside it, checkpoint copies and ``harp-ckpt-*`` folders).

Each local session records itself: ``harp-session.json`` in its temporary directory says which
driver (pid, process start time, host, user) owns it, and every process Ray starts for it carries
``HARP_RAY_SESSION=<that directory>`` in its environment; those that retitle themselves
(``ray::DashboardAgent``: Linux then shows neither their command line nor their environment)
hold the session's log files open. ``end_leftovers`` ends only sessions of this
user and host whose recorded driver is gone (a reused pid has another start time): their
processes are asked to stop, killed when they do not, and the directory is removed. A session
without the record (another tool's, or one still starting) is never touched.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("harp.tune")

SESSION_ENV = "HARP_RAY_SESSION"
SESSION_FILE = "harp-session.json"
TEMP_PREFIX = "harp-ray-"
TEMP_ROOT = Path("/tmp")  # short: Ray's socket paths live under it (108-byte limit)


def record_session(temp_dir: Path) -> None:
    """Write the record that lets a later sweep tell whether this session's driver is gone."""
    import psutil

    me = psutil.Process()
    info = {"driver_pid": me.pid, "driver_started": me.create_time(), "host": socket.gethostname(), "uid": os.getuid()}
    (temp_dir / SESSION_FILE).write_text(json.dumps(info))


def _driver_alive(info: dict[str, Any]) -> bool:
    import psutil

    try:
        process = psutil.Process(int(info["driver_pid"]))
        return abs(process.create_time() - float(info["driver_started"])) < 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, KeyError, ValueError, TypeError):
        return False
    except psutil.AccessDenied:
        return True


def dead_sessions(root: Path = TEMP_ROOT) -> list[Path]:
    """Temporary directories of this user's harp sessions on this host whose driver is gone."""
    found = []
    for temp_dir in sorted(root.glob(f"{TEMP_PREFIX}*")):
        try:
            if temp_dir.stat().st_uid != os.getuid():
                continue
            info = json.loads((temp_dir / SESSION_FILE).read_text())
        except (OSError, ValueError):
            continue  # not recorded: another tool's, or a session still starting
        if info.get("host") != socket.gethostname() or info.get("uid") != os.getuid():
            continue
        if not _driver_alive(info):
            found.append(temp_dir)
    return found


def _belongs(process: Any, wanted: set[str]) -> bool:
    """Whether a process was started for one of the ``wanted`` sessions: by its environment, or,
    for the processes that retitle themselves (``setproctitle`` overwrites the environment Linux
    shows: Ray's agents, the dashboard's modules), by the session's log files they hold open."""
    if process.environ().get(SESSION_ENV) in wanted:
        return True
    prefixes = tuple(f"{folder}/" for folder in wanted)
    return any(f.path.startswith(prefixes) for f in process.open_files())


def session_processes(temp_dirs: Iterable[Path]) -> list[Any]:
    """Live processes started for these sessions."""
    import psutil

    wanted = {str(d) for d in temp_dirs}
    if not wanted:
        return []
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.pid != os.getpid() and _belongs(process, wanted):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


@dataclass
class Leftovers:
    """What ``end_leftovers`` ended: the dead sessions' directories and their processes."""

    directories: list[Path] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.directories or self.processes)


def end_leftovers(root: Path = TEMP_ROOT, *, grace_s: float = 3.0) -> Leftovers:
    """End the processes and remove the temporary directories of dead harp sessions."""
    import psutil

    temp_dirs = dead_sessions(root)
    processes = session_processes(temp_dirs)
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:  # Ray's agents ignore SIGTERM
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    for temp_dir in temp_dirs:
        shutil.rmtree(temp_dir, ignore_errors=True)
    ended = Leftovers(temp_dirs, [p.pid for p in processes])
    if ended:
        log.warning(
            "ended %d leftover process(es) and removed %d temporary folder(s) of harp sessions whose driver died: %s",
            len(ended.processes), len(ended.directories), ", ".join(map(str, ended.directories)),
        )
    return ended


__all__ = ["Leftovers", "SESSION_ENV", "SESSION_FILE", "TEMP_PREFIX", "TEMP_ROOT", "dead_sessions", "end_leftovers", "record_session", "session_processes"]
