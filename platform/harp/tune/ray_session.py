"""Ray for the length of one sweep: a private local instance by default, or a named cluster.

A local instance is private to the sweep and this machine:

- ``ray.init(address="local")`` with its own temporary directory inside harp's
  ``/tmp/harp-ray-*`` (mode 0700: Ray makes its own directories world-writable, and its logs may
  name paths and settings), so nothing attaches to another user's Ray and no one else reads it;
- every server binds to 127.0.0.1 (GCS, raylet, object manager, worker gRPC, dashboard and its
  agent, runtime-env agent, metrics export): Ray 2.60 binds them to the node's address, which
  it resolves to the machine's routable IP unless Ray runs as a single-node (non-cluster)
  instance, its macOS/Windows default. That is what ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` says
  to the processes Ray starts, and ``ray_constants.ENABLE_RAY_CLUSTER`` to this one, which
  imported Ray already;
- the dashboard on 127.0.0.1 on a free port: its State API is what lets Ray Train release the
  placement groups of ASHA-stopped TorchTrainer trials (without it a sweep hangs);
- no credentials in Ray's runtime environments: Tune copies the driver's ``AWS_*`` variables into
  each trial actor's runtime env, which the runtime-env agent logs in plain text; a local
  instance's processes inherit the driver's environment anyway, so that copy is switched off;
- Ray's processes get ``TMPDIR`` inside the session directory and ``HARP_RAY_SESSION`` naming
  it, so whatever they leave (checkpoint copies, ``harp-ckpt-*``) goes with the directory, and a
  later sweep finds and ends the session if its driver is killed (``harp.tune.leftovers``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.tune.leftovers import SESSION_ENV, TEMP_PREFIX, TEMP_ROOT, end_leftovers, record_session

# Environment variables never copied into a Ray runtime env (Tune's ENV_VARS_TO_PROPAGATE).
SECRET_ENV_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")
_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray 2.60 turns token authentication on for every new local instance and says so in a warning
# ("Token authentication is enabled for this Ray cluster ..."), from this module's logger, whose
# only other message (authentication off) is not for a new local instance. Setting RAY_AUTH_MODE
# would skip the warning but also Ray's refresh of the config it already read at import.
_TOKEN_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` for the block (the processes ray.init starts inherit it)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _single_node_addresses() -> Iterator[None]:
    """Ray resolves this node's address to 127.0.0.1 (so every server binds there) while starting."""
    import ray._private.ray_constants as ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _environment({_SINGLE_NODE_ENV: "0"}):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Logger ``name`` at ERROR for the block."""
    logger = logging.getLogger(name)
    saved = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(saved)


@contextlib.contextmanager
def _no_secret_propagation() -> Iterator[None]:
    """Keep ``SECRET_ENV_VARS`` out of the runtime env Tune gives each trial actor."""
    from ray.tune.execution import class_cache

    propagated = class_cache.ENV_VARS_TO_PROPAGATE
    removed = {name for name in SECRET_ENV_VARS if name in propagated}
    propagated.difference_update(removed)
    try:
        yield
    finally:
        propagated.update(removed)


@contextlib.contextmanager
def _keeping_sigterm_handler() -> Iterator[None]:
    """This process's SIGTERM handler (harp's clean stop), as it was before the block, after it.

    Ray changes it both ways: ``ray.init`` installs its own (a bare ``sys.exit``), and Ray 2.60's
    ``ray.shutdown`` puts SIGTERM back to the kernel's default underneath Python (measured:
    ``signal.getsignal`` still names the handler, but the next SIGTERM kills the process), which
    killed ``harp sweep`` on a SIGTERM while the best trial was tested instead of stopping it
    cleanly. Installing the handler again after either restores it."""
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, sigterm if sigterm is not None else signal.SIG_DFL)


def _init(kwargs: dict[str, Any]) -> None:
    import ray

    with _keeping_sigterm_handler():
        try:
            ray.init(**kwargs)
        except Exception as exc:
            raise HarpError(f"could not start Ray at sweep.ray_address={kwargs.get('address')!r}: {str(exc).splitlines()[0]}") from exc


def shutdown_ray() -> None:
    """``ray.shutdown()``, keeping this process's SIGTERM handler (see ``_keeping_sigterm_handler``)."""
    import ray

    with _keeping_sigterm_handler():
        ray.shutdown()


@contextlib.contextmanager
def ray_session(cfg: HarpConfig, *, num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[None]:
    """Start (or attach to) Ray for one sweep and shut it down afterwards.

    ``local`` starts a private instance (see the module docstring), after ending what sessions
    of killed drivers left behind. Any other address (``auto``, ``ray://host:10001``) attaches to
    that cluster. A Ray already initialised in this process is used as it is and left running.
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
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address != "local":
        _init({**kwargs, "address": address})
        try:
            yield
        finally:
            shutdown_ray()
        return

    end_leftovers()
    tempfile.gettempdir()  # this process keeps its own temporary directory; Ray's processes get TMPDIR below
    temp_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=TEMP_ROOT))
    try:
        record_session(temp_dir)
        scratch = temp_dir / "tmp"
        scratch.mkdir()
        kwargs.update(
            address="local",
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=_free_port(),
            # Ray makes its temporary directory world-writable (0777), again whenever a process
            # starts: it lives inside harp's own, which stays 0700 (mkdtemp's mode)
            _temp_dir=str(temp_dir / "ray"),
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
        with _no_secret_propagation():
            with _single_node_addresses(), _environment({SESSION_ENV: str(temp_dir), "TMPDIR": str(scratch)}), _quiet_logger(_TOKEN_SETUP_LOGGER):
                _init(kwargs)
            try:
                yield
            finally:
                shutdown_ray()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


__all__ = ["SECRET_ENV_VARS", "ray_session", "shutdown_ray"]
