"""Polling for what a real process will do (a checkpoint on disk, a trial's first report), shared by
the reliability, report and cluster tests. pytest puts ``tests/`` on ``sys.path`` for the test
packages beneath it, so they import this as ``waiting``."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import psutil


def wait_for(
    condition: Callable[[], Any],
    process: subprocess.Popen | None = None,
    *,
    timeout: float = 240,
    what: str = "",
    poll: float = 0.5,
    fail: bool = True,
) -> Any:
    """Poll ``condition`` every ``poll`` seconds until it is truthy (its value is returned); fail
    when the process ends first, or at the timeout (or return None there when ``fail`` is False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (exit {process.returncode}) before {what}")
        time.sleep(poll)
    if fail:
        raise AssertionError(f"timed out waiting for {what}")
    return None


def tune_trial_process(parent: int | None = None) -> psutil.Process | None:
    """The Ray worker process running a Tune trial (it retitles itself ``ray::ImplicitFunc...``)
    among the descendants of ``parent`` (this process by default), or None when none runs now."""
    for process in psutil.Process(parent).children(recursive=True):
        try:
            if process.cmdline()[:1] and process.cmdline()[0].startswith("ray::ImplicitFunc"):
                return process
        except psutil.NoSuchProcess:
            continue
    return None
