"""Run the service: a private Ray (``harp.tune.ray_session``: own temp dir, everything on
127.0.0.1), Serve's HTTP proxy on the host and port asked for, the deployment, and a clean
shutdown of all of it on Ctrl-C or SIGTERM."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from harp.errors import HarpError
from harp.serve.app import ServiceSettings, build_application
from harp.serve.model_loading import resolve_weights
from harp.train.checkpoint import read_model_card
from harp.tune.ray_session import ray_session

log = logging.getLogger("harp.serve")
APP_NAME = "harp"


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    use_gpu: bool | None = None  # None: when the Ray cluster has GPUs
    ray_address: str = "local"


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM ends the service as Ctrl-C does (a process manager's stop is a clean shutdown)."""

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _teardown_guard() -> Iterator[Callable[[], None]]:
    """Yields ``hold``: from its call to the end of the block, Ctrl-C and SIGTERM are ignored, so a
    second Ctrl-C cannot cut Serve's and Ray's shutdown short (it would strand their processes)."""
    saved: dict[int, Any] = {}

    def hold() -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                saved[sig] = signal.signal(sig, signal.SIG_IGN)

    try:
        yield hold
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def check_port_free(host: str, port: int) -> None:
    """Refuse a taken port before Ray starts (Serve's proxy would only retry in its log)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the proxy binds: old connections in TIME_WAIT do not count
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise HarpError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --port or --host") from exc


@contextlib.contextmanager
def running_service(settings: ServiceSettings, options: ServeOptions) -> Iterator[str]:
    """Start Ray and the service; yield its URL; tear both down on exit."""
    import ray
    from ray import serve

    if options.replicas < 1:
        raise HarpError(f"--replicas {options.replicas}: serve at least one replica")
    weights = resolve_weights(settings.model).resolve()  # a bad --model fails here, in one line, before Ray starts
    card = read_model_card(weights)
    settings = dataclasses.replace(settings, model=str(weights))  # replicas may run in another directory
    check_port_free(options.host, options.port)
    cfg = dataclasses.replace(card.config, sweep=dataclasses.replace(card.config.sweep, ray_address=options.ray_address))
    # Enough CPU slots for every replica on a private instance (a small machine may oversubscribe).
    cpus = max(os.cpu_count() or 1, options.replicas) if options.ray_address == "local" else None
    with _teardown_guard() as hold, ray_session(cfg, num_cpus=cpus):
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        if options.use_gpu and not gpus:
            raise HarpError("--gpu but the Ray cluster has no GPU; drop --gpu to serve on CPUs")
        per_replica = min(1.0, gpus / options.replicas) if gpus and options.use_gpu is not False else 0.0
        if per_replica == 0.0:
            settings = dataclasses.replace(settings, device="cpu")
        try:
            serve.start(http_options={"host": options.host, "port": options.port})
            serve.run(build_application(settings, replicas=options.replicas, gpus_per_replica=per_replica), name=APP_NAME, route_prefix="/")
        except Exception as exc:
            with contextlib.suppress(Exception):
                serve.shutdown()
            raise HarpError(f"could not start the service on {options.host}:{options.port}: {str(exc).splitlines()[0][:300]}") from exc
        try:
            yield f"http://{options.host}:{options.port}/"
        finally:
            hold()  # until Ray is down too
            with contextlib.suppress(Exception):
                serve.shutdown()


def serve_forever(settings: ServiceSettings, options: ServeOptions, *, announce: Callable[[str], None] = print) -> None:
    """Run the service until Ctrl-C or SIGTERM, then shut Serve and Ray down."""
    # After Ray's start: ray.init installs its own SIGTERM handler (a bare sys.exit), which this replaces
    with running_service(settings, options) as url, _stop_on_sigterm():
        announce(url)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            log.info("stopping the service")


__all__ = ["APP_NAME", "ServeOptions", "check_port_free", "running_service", "serve_forever"]
