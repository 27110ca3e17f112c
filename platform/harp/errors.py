"""One exception type for every user-facing error.

A ``HarpError`` carries a single line that names the problem and the fix; the CLI prints it
without a traceback. Everything else is a bug and keeps its traceback.

A ``HarpError`` is deterministic by default: the same config on the same data fails the same way
(too many undecodable videos, an unreadable pretrained file, a bad value), so a sweep does not
retry the trial that raised it (``harp.tune.failures``). ``RetryableError`` marks the failures a
retry from the last checkpoint may get past (a crashed or killed worker, a lost node).
"""
from __future__ import annotations


class HarpError(Exception):
    """A user-facing error: bad config, unknown model, corrupt video, missing weights, ..."""

    #: whether running the same trial again from its checkpoint may succeed
    retryable: bool = False


class ConfigError(HarpError):
    """A configuration value or key is wrong."""


class RetryableError(HarpError):
    """A failure outside the run's own inputs (a crashed worker process, a lost node): a sweep
    retries the trial from its last checkpoint, up to ``sweep.max_failures`` times."""

    retryable = True


def is_retryable(exc: BaseException) -> bool:
    """Whether a trial that raised ``exc`` is worth retrying: every failure except a
    deterministic ``HarpError`` (a crash, a killed actor, a bug that may be transient)."""
    return not isinstance(exc, HarpError) or exc.retryable
