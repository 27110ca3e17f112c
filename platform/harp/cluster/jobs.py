"""Ray Jobs through Ray's ``JobSubmissionClient``, every failure one line.

``connect`` finds the address (``--address``, else ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS``)
and the token (``harp.cluster.auth``), and turns Ray's failures into ``HarpError`` lines: an
address nobody answers at, a server that wants a token, a token it refuses, a job id it does not
know. The token travels only in the client's request headers; no message here contains it.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from harp.cluster.auth import TokenSource, client_headers, find_token, token_file_warning
from harp.errors import HarpError

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

ADDRESS_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")  # Ray's precedence
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
CONNECT_TIMEOUT_S = 5.0
TUNNEL_HINT = "is the cluster up and the dashboard tunnel open (`ray dashboard cluster.yaml`)?"


@dataclass
class Jobs:
    """A connected client, the address it talks to, and where its token came from."""

    client: JobSubmissionClient
    address: str
    token: TokenSource | None

    def _call(self, what: str, job_id: str | None, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            raise _one_line(exc, self.address, self.token, job_id=job_id, what=what) from exc

    def submit(self, entrypoint: str, runtime_env: dict[str, Any], metadata: dict[str, str], **options: Any) -> str:
        """Upload the working dir and start the job; returns its submission id."""
        return str(self._call("submit the job", None, lambda: self.client.submit_job(
            entrypoint=entrypoint, runtime_env=runtime_env, metadata=metadata, **options)))

    def info(self, job_id: str) -> JobDetails:
        return self._call("read the job", job_id, lambda: self.client.get_job_info(job_id))

    def list_jobs(self) -> list[JobDetails]:
        return list(self._call("list the jobs", None, self.client.list_jobs))

    def logs(self, job_id: str) -> str:
        return str(self._call("read the job's logs", job_id, lambda: self.client.get_job_logs(job_id)))

    def stop(self, job_id: str) -> bool:
        self.info(job_id)  # an unknown id is one line here, not Ray's HTTP error text
        return bool(self._call("stop the job", job_id, lambda: self.client.stop_job(job_id)))

    def follow(self, job_id: str, out: TextIO = sys.stdout) -> str:
        """Stream the job's logs until it ends; returns its final status."""
        self.info(job_id)

        async def _tail() -> None:
            async for chunk in self.client.tail_job_logs(job_id):
                out.write(chunk)
                out.flush()

        self._call("follow the job's logs", job_id, lambda: asyncio.run(_tail()))
        return str(self.info(job_id).status)


def resolve_address(address: str | None) -> str:
    """``--address``, else Ray's variables; must be the dashboard's http(s) URL."""
    chosen = address or next((os.environ[v] for v in ADDRESS_VARS if os.environ.get(v)), "")
    if not chosen:
        raise HarpError("no cluster address: pass --address http://127.0.0.1:8265 (after `ray dashboard cluster.yaml`) or set RAY_ADDRESS")
    parts = urlsplit(chosen)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HarpError(f"address {chosen!r}: give the dashboard's URL, e.g. http://127.0.0.1:8265 (the job server; not ray:// or a GCS address)")
    return chosen.rstrip("/")


@contextlib.contextmanager
def _only_this_address() -> Iterator[None]:
    """Ray's client lets RAY_ADDRESS override the address it is given: hide the variables while it is built."""
    saved = {v: os.environ.pop(v) for v in ADDRESS_VARS if v in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _reachable(address: str) -> None:
    parts = urlsplit(address)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__.replace("Error", "").lower() or "no answer"
        raise HarpError(f"cannot reach Ray's job server at {address} ({reason}): {TUNNEL_HINT}") from exc


def connect(address: str | None = None, *, warn: TextIO | None = sys.stderr) -> Jobs:
    """A ``JobSubmissionClient`` for the cluster, its token attached when one is configured."""
    url = resolve_address(address)
    source = find_token()
    warning = token_file_warning(source)
    if warning and warn is not None:
        print(warning, file=warn)
    _reachable(url)
    from ray.job_submission import JobSubmissionClient

    headers = client_headers(source)
    try:
        with _only_this_address():
            client = JobSubmissionClient(url, headers=headers)
    except Exception as exc:
        raise _one_line(exc, url, source, job_id=None, what="connect") from exc
    return Jobs(client, url, source)


def _one_line(exc: BaseException, address: str, token: TokenSource | None, *, job_id: str | None, what: str) -> HarpError:
    """Ray's exception -> one harp line (never the token: Ray's texts do not carry it, and only
    the first line of theirs is kept)."""
    from ray.exceptions import AuthenticationError

    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, AuthenticationError) or first.startswith(("Authentication required", "Authentication failed")):
        if token is None or first.startswith("Authentication required"):
            return HarpError(
                f"Ray's job server at {address} requires its token and none was sent: copy the head's token "
                "(`ray get-auth-token` there) to ~/.ray/auth_token (chmod 600) or point RAY_AUTH_TOKEN_PATH at it"
            )
        return HarpError(f"Ray's job server at {address} refused the token from {token.describe()}: it is not this cluster's token; "
                         "copy the head's current token (`ray get-auth-token` there)")
    if isinstance(exc, ConnectionError) or "Failed to connect" in first:
        return HarpError(f"cannot reach Ray's job server at {address}: {TUNNEL_HINT}")
    if "404" in first and job_id is not None:
        return HarpError(f"no job {job_id!r} on the cluster at {address}; `harp jobs list` shows the job ids")
    if "404" in first:
        return HarpError(f"{address} is not a Ray job server (it answered 404 to Ray's version check); give the dashboard's address, port 8265 by default")
    return HarpError(f"could not {what} on {address}: {first}")


__all__ = ["Jobs", "TERMINAL", "connect", "resolve_address"]
