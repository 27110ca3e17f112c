"""Ray's token authentication, seen from a client (``harp submit``, ``harp jobs``).

Ray (>= 2.52) protects its dashboard, Jobs API and GCS with one static bearer token when
``RAY_AUTH_MODE=token``. Ray looks for the token, highest precedence first, in ``RAY_AUTH_TOKEN``
(the value), ``RAY_AUTH_TOKEN_PATH`` (a file) and ``~/.ray/auth_token``; Ray's own loader reads it
here, so harp and ``ray job submit`` agree on which token is sent.

The token is never printed, logged or written by harp: errors name where it came from (the
variable or the file), never its value. A token file that others can read is a warning: anyone
with it can run code on the cluster.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from harp.errors import HarpError

AUTH_MODE_VAR = "RAY_AUTH_MODE"
TOKEN_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"


def default_token_path() -> Path:
    """Where ``ray get-auth-token --generate`` writes the token (Ray's default file)."""
    return Path.home() / ".ray" / "auth_token"


@dataclass(frozen=True)
class TokenSource:
    """Where the client's token comes from: a variable or a file (never the token itself)."""

    kind: str  # TOKEN_VAR, TOKEN_PATH_VAR or "default file"
    path: Path | None = None

    def describe(self) -> str:
        if self.kind == TOKEN_VAR:
            return f"${TOKEN_VAR}"
        return f"{self.path} (${TOKEN_PATH_VAR})" if self.kind == TOKEN_PATH_VAR else f"{self.path}"


def find_token() -> TokenSource | None:
    """The token Ray would use, by Ray's precedence; None when there is none.

    A ``RAY_AUTH_TOKEN_PATH`` that names a missing or empty file is an error here (Ray's loader
    treats it as fatal and would abort the process)."""
    env = os.environ
    if env.get(TOKEN_VAR, "").strip():
        return TokenSource(TOKEN_VAR)
    named = env.get(TOKEN_PATH_VAR, "")
    if named:
        path = Path(named).expanduser()
        try:
            readable = bool(path.read_text().strip())
        except OSError as exc:
            raise HarpError(f"${TOKEN_PATH_VAR}={named}: cannot read the token file ({exc.strerror}); fix the path or unset it") from exc
        if not readable:
            raise HarpError(f"${TOKEN_PATH_VAR}={named}: the token file is empty; copy the cluster's token into it (see cluster.yaml)")
        return TokenSource(TOKEN_PATH_VAR, path)
    path = default_token_path()
    try:
        if path.is_file() and path.read_text().strip():
            return TokenSource("default file", path)
    except OSError:
        return None
    return None


def readable_by_others(path: Path) -> bool:
    """Whether users other than the owner may read ``path`` (group or world read bit)."""
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def token_file_warning(source: TokenSource | None) -> str | None:
    """One warning line when the token's file is readable by others than its owner."""
    if source is None or source.path is None or not source.path.exists():
        return None
    if not readable_by_others(source.path):
        return None
    mode = stat.S_IMODE(source.path.stat().st_mode)
    return (
        f"warning: Ray's token file {source.path} is readable by other users (mode {mode:o}): anyone who reads it can run code "
        f"on the cluster; run: chmod 600 {source.path}"
    )


def client_headers(source: TokenSource | None) -> dict[str, str]:
    """The HTTP headers that carry the token to Ray's job server (empty without a token, or when
    ``RAY_AUTH_MODE`` says ``disabled``).

    The client runs in token mode (``RAY_AUTH_MODE=token`` is set for this process, as Ray's CLI
    expects) and Ray's own loader reads the token, so it is found exactly where ``ray job`` finds it.
    """
    if source is None or os.environ.get(AUTH_MODE_VAR, "").lower() == "disabled":
        return {}
    os.environ[AUTH_MODE_VAR] = "token"
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]  # Ray's C++ loader, as `ray job submit` uses

    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()  # the variables may have changed since the last call in this process
    return dict(loader.get_token_for_http_header(ignore_auth_mode=True))


__all__ = [
    "AUTH_MODE_VAR",
    "TOKEN_PATH_VAR",
    "TOKEN_VAR",
    "TokenSource",
    "client_headers",
    "default_token_path",
    "find_token",
    "readable_by_others",
    "token_file_warning",
]
