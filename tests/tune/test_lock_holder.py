"""The refusal of a second sweep names the process that holds the directory's lock, also in the
moment after the holder took the lock and before it wrote who it is (the file then still names an
earlier holder, long gone): seen on CI as "in use by another process"."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time

import pytest

from harp.tune.lock import SweepLocked, lock_path, sweep_lock


def test_the_refusal_waits_for_the_new_holder_to_say_who_it_is(tmp_path):
    root = tmp_path / "sweep"
    root.mkdir()
    lock_path(root).write_text(json.dumps({"pid": 999_999_999, "host": socket.gethostname(), "started": "earlier"}))  # gone
    fd = os.open(lock_path(root), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # taken, not yet written

    def write_who() -> None:
        time.sleep(0.3)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}).encode(), 0)

    writer = threading.Thread(target=write_who)
    writer.start()
    try:
        with pytest.raises(SweepLocked, match=rf"is in use by pid {os.getpid()} on {socket.gethostname()} since now;"):
            with sweep_lock(root):
                pass
    finally:
        writer.join()
        os.close(fd)
