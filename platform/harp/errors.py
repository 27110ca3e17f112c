"""One exception type for every user-facing error.

A ``HarpError`` carries a single line that names the problem and the fix; the CLI prints it
without a traceback. Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class HarpError(Exception):
    """A user-facing error: bad config, unknown model, corrupt video, missing weights, ..."""


class ConfigError(HarpError):
    """A configuration value or key is wrong."""
