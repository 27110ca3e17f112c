"""optuna-dashboard, the real server, for the tests that read a sweep's study through it: started on
127.0.0.1 (a free port) over a storage argument (a SQLAlchemy URL or a journal file), answered
through its own HTTP API, stopped on exit. Imported as ``dashboard_server`` (pytest puts ``tests/``
on ``sys.path``)."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cluster.servers import free_port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def running_dashboard(storage: str, timeout: float = 60) -> Iterator[str]:
    """The base URL of optuna-dashboard serving ``storage``, once its API answers."""
    port = free_port()
    exe = Path(sys.executable).with_name("optuna-dashboard")
    process = subprocess.Popen([str(exe), storage, "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                get_json(f"{base}/api/meta")
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "optuna-dashboard did not start"
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
