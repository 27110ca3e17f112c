"""Helpers for the reliability tests: tiny sweeps run as real `harp sweep` processes (signalled,
killed, run twice at once), and what such a process leaves on the machine (its process tree,
listening sockets, Ray's temporary directory).

Every sweep here is as small as still proves its point: the shared 4-class synthetic data set,
two optimiser steps per epoch, 1-4 epochs, one trial at a time."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from sweep_spaces import tiny_space
from waiting import wait_for  # noqa: F401  (re-exported: the tests import it from here)

SECRET = "harp-test-secret-0d5a7c1e9b"  # an AWS key value that must never reach a file


def harp(*args: str) -> list[str]:
    return [sys.executable, "-m", "harp.cli", *args]


def write_space(path: Path, data: dict[str, Any], output_dir: Path, name: str, *, epochs: int = 2, num_samples: int = 2,
                params: dict[str, Any] | None = None, **sweep: Any) -> Path:
    """A tiny search space file (the sweep settings a test needs on top of the shared defaults;
    two optimiser steps per epoch)."""
    space = tiny_space(data, output_dir, name, epochs=epochs, num_samples=num_samples, params=params,
                       config={"train.max_steps_per_epoch": 2}, description="reliability test", **sweep)
    path.write_text(yaml.safe_dump(space))
    return path


@pytest.fixture
def sweep_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a sweep process: its own TMPDIR (to see what it leaves there) and an AWS
    secret (to see that it stays out of Ray's files)."""
    scratch = tmp_path / "user-tmp"
    scratch.mkdir()
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch), "AWS_SECRET_ACCESS_KEY": SECRET}


@pytest.fixture
def tiny_data(synthetic_config, synthetic_manifest) -> dict[str, Any]:
    from harp.config.load import to_dict

    return to_dict(synthetic_config)["data"]


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A `harp` process in its own process group (a terminal's Ctrl-C signals the whole group)."""
    handle = open(log, "w")  # noqa: SIM115 - closed when the process is waited for (finish)
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> tuple[int, str]:
    """Wait for a started process; its exit code and output."""
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()
        raise
    return code, log.read_text()


def checkpoints(trial_dir: Path) -> list[Path]:
    return sorted(p for p in trial_dir.glob("checkpoint_*") if (p / "metrics.json").is_file())


def trial_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((sweep_dir / "tune").glob("harp_trial_*"))


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and every descendant (Ray's agents are children of its raylet)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def listening_addresses(processes: list[psutil.Process]) -> set[tuple[str, int, str]]:
    """(address, port, process name) of every socket these processes listen on."""
    pids = {p.pid: p for p in processes}
    found = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            try:
                name = pids[conn.pid].name()
            except psutil.NoSuchProcess:
                name = "?"
            found.add((conn.laddr.ip, conn.laddr.port, name))
    return found


def ray_temp_dir(processes: list[psutil.Process]) -> Path | None:
    """The temporary directory of the Ray instance these processes run (from its raylet's
    ``--session_dir``, which works whatever harp records)."""
    for process in processes:
        try:
            for arg in process.cmdline():
                if arg.startswith("--session_dir="):
                    return Path(arg.split("=", 1)[1]).parent
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def is_loopback(address: str) -> bool:
    return address in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "localhost")


def alive(processes: list[tuple[int, float]]) -> list[int]:
    """The (pid, start time) pairs whose process still runs (not a zombie, not a reused pid)."""
    found = []
    for pid, started in processes:
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - started) < 1.0 and process.status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.NoSuchProcess:
            continue
    return found
