"""SIGINT and SIGTERM stop a sweep the way Tune stops on its own Ctrl-C: the loop ends after the
current step, the experiment state is written one last time, the trial actors are stopped (their
per-epoch checkpoints are on disk) and ``Tuner.fit`` returns, so Ray shuts down in order and
``harp sweep --resume`` continues where it stopped.

Ray 2.60 details handled here: Tune installs its own SIGINT handler (not for SIGTERM, which
``ray.init`` turns into ``sys.exit``); both are replaced for the length of the sweep
(``TUNE_DISABLE_SIGINT_HANDLER``), and the stop is requested through the SIGUSR1 handler Tune
installs for the length of ``tune.run`` (its public "stop the experiment" signal), called
directly rather than re-raised. Before Tune's loop starts (or after it ended) a signal raises
``SweepInterrupted`` instead, and a second signal while the sweep is stopping stops waiting.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"


class SweepInterrupted(BaseException):
    """A sweep stopped by a signal outside Tune's loop (a BaseException, as KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class StopRequest:
    """The first stop signal received (None while none came)."""

    signum: int | None = None

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum


def _tune_stop_handler() -> Any:
    """Tune's "stop the experiment" handler while ``tune.run`` is looping, else None."""
    handler = signal.getsignal(signal.SIGUSR1)
    return handler if callable(handler) else None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a clean stop of the sweep for the block; yields what was received.

    Only the main thread can own signal handlers; elsewhere the block runs with the process's
    handlers as they are."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if request.signum is not None:  # the second signal: stop waiting for a clean end
            raise SweepInterrupted(signum)
        request.signum = signum
        tune_stop = _tune_stop_handler()
        if tune_stop is None:
            raise SweepInterrupted(signum)
        tune_stop(signal.SIGUSR1, frame)

    previous = {signum: signal.getsignal(signum) for signum in (*SIGNALS, signal.SIGUSR1)}
    previous_env = os.environ.get(_TUNE_SIGINT_ENV)
    os.environ[_TUNE_SIGINT_ENV] = "1"
    # Until Tune installs its own, SIGUSR1 is ignored: a stale handler of an earlier tune.run in
    # this process would otherwise be taken for a running loop (and SIG_DFL would kill us).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    for signum in SIGNALS:
        signal.signal(signum, on_signal)
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if previous_env is None:
            os.environ.pop(_TUNE_SIGINT_ENV, None)
        else:
            os.environ[_TUNE_SIGINT_ENV] = previous_env


__all__ = ["SIGNALS", "StopRequest", "SweepInterrupted", "stop_on_signals"]
