"""Ray for the length of one sweep: a private local instance by default, or a named cluster.

Ray 2.60 traps handled here: ``ray.init(address="local")`` with its own temp dir so nothing
attaches to another user's Ray; the dashboard on 127.0.0.1 on a free port, because its State API
is what lets Ray Train release the placement groups of ASHA-stopped TorchTrainer trials (without
it a sweep hangs).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

from harp.config.schema import HarpConfig
from harp.errors import HarpError


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def ray_session(cfg: HarpConfig, *, num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[None]:
    """Start (or attach to) Ray for one sweep and shut it down afterwards.

    ``local`` starts a private instance: own temp dir, dashboard bound to 127.0.0.1 on a free port.
    Any other address (``auto``, ``ray://host:10001``) attaches to that cluster. A Ray already
    initialised in this process is used as it is and left running.
    """
    import ray  # seconds to import: only the commands that start Ray pay it

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Every epoch checkpoints (exact resume), so Tune's "snapshotting triggered multiple times" warning
    # would repeat through the whole sweep: the snapshots are wanted, the warning is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    address = cfg.sweep.ray_address or "local"
    temp_dir = None
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address == "local":
        temp_dir = tempfile.mkdtemp(prefix="harp-ray-", dir="/tmp")
        kwargs.update(
            address="local",
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=_free_port(),
            _temp_dir=temp_dir,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except Exception as exc:
        raise HarpError(f"could not start Ray at sweep.ray_address={address!r}: {str(exc).splitlines()[0]}") from exc
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


__all__ = ["ray_session"]
