"""Where a sweep's W&B runs go: online, offline or nowhere, decided once per sweep, and which
folders W&B may write.

``wandb.mode=auto`` is ``online`` when an API key is configured (``WANDB_API_KEY``, or a netrc
entry for the W&B host) and ``offline`` otherwise. A key alone does not make W&B reachable: with a
key but no network, ``wandb.init`` waits ``init_timeout`` (90 s) for every trial and then writes
nothing, and with a malformed key it logs nothing at all. So before the first run of a sweep
``check_online`` asks the W&B API once (a GraphQL ``viewer`` query, a few seconds at most): a key
W&B's own format check rejects, an unreachable host or a refused key make the whole sweep
``offline``, with one line saying why. The verdict is kept for the life of the process, so the
export's summary run and the end-of-sweep message (``resolve_mode``) agree with the trials.

Everything W&B writes for a sweep stays in ``<sweep>/wandb``: its runs (``WANDB_DIR``), the
artifact staging of tables (``WANDB_DATA_DIR``), its cache (``WANDB_CACHE_DIR``) and downloaded
artifacts (``WANDB_ARTIFACT_DIR``), never ``~/.cache``, ``~/.local/share`` or ``/tmp``
(``sweep_wandb_dirs``). The API key is read where W&B reads it and never copied anywhere.
"""
from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import logging
import netrc
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

log = logging.getLogger("harp.tune")

DEFAULT_BASE_URL = "https://api.wandb.ai"
CHECK_TIMEOUT_S = 5.0

# The modes wandb.init takes; ``wandb.mode=auto`` resolves to one of the first two.
RunMode = Literal["online", "offline", "disabled"]

# (base URL, key) -> why W&B is not usable online (None: it is), once per process.
_verdicts: dict[tuple[str, str], str | None] = {}


def base_url() -> str:
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def api_key() -> str | None:
    """The API key wandb would use: ``WANDB_API_KEY``, else the netrc entry of the W&B host."""
    key = os.environ.get("WANDB_API_KEY")
    if key:
        return key
    host = urllib.parse.urlsplit(base_url()).hostname or "api.wandb.ai"
    try:
        auth = netrc.netrc().authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return None
    return auth[2] if auth and auth[2] else None


def has_api_key() -> bool:
    return api_key() is not None


def _key_problem(key: str) -> str | None:
    """W&B's own format check of an API key (a sentence), or None when the format is fine (or this
    wandb has no such check: the request below still finds a refused key)."""
    try:
        from wandb.sdk.lib.wbauth.validation import check_api_key
    except ImportError:  # wandb releases before the wbauth module
        return None
    return check_api_key(key)


def _ask_viewer(url: str, key: str, timeout: float) -> str | None:
    """One authenticated GraphQL query; None when W&B answers with a user for the key."""
    token = base64.b64encode(f"api:{key}".encode()).decode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/graphql",
        data=json.dumps({"query": "query { viewer { id } }"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
        method="POST",
    )
    host = urllib.parse.urlsplit(url).netloc or url
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return f"{host} refused the API key (HTTP {exc.code})"
        return f"{host} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"cannot reach {host} ({reason})"
    except ValueError:
        return f"{host} did not answer as a W&B server"
    if not (answer.get("data") or {}).get("viewer"):
        return f"{host} refused the API key"
    return None


def check_online(timeout: float = CHECK_TIMEOUT_S) -> str | None:
    """Why online W&B runs cannot work here (one line), or None when they can.

    Checks the key's format (W&B's rule) and asks the W&B host once, waiting at most ``timeout``
    seconds in all (name resolution included: the request runs in a thread that is not waited
    for past the timeout). The answer is remembered per host and key for this process."""
    key = api_key()
    if not key:
        return "no W&B API key (WANDB_API_KEY or `wandb login`)"
    url = base_url()
    cached = (url, key)
    if cached in _verdicts:
        return _verdicts[cached]
    problem = _key_problem(key)
    if problem:
        verdict: str | None = f"the W&B API key is malformed: {problem}"
    else:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="harp-wandb-check")
        try:
            verdict = pool.submit(_ask_viewer, url, key, timeout).result(timeout=timeout + 1.0)
        except concurrent.futures.TimeoutError:
            verdict = f"no answer from {urllib.parse.urlsplit(url).netloc or url} within {timeout:.0f} s"
        finally:
            pool.shutdown(wait=False)
    _verdicts[cached] = verdict
    return verdict


def resolve_mode(mode: str) -> RunMode:
    """auto -> online with an API key, offline without; the others as given. A sweep that found
    W&B unreachable (``sweep_mode``) is offline for the rest of the process."""
    if mode == "disabled":
        return "disabled"
    if mode == "offline":
        return "offline"
    key = api_key()
    if mode == "auto" and not key:
        return "offline"
    if key and _verdicts.get((base_url(), key)):
        return "offline"
    return "online"


def sweep_mode(mode: str, sweep_dir: str | Path, *, timeout: float = CHECK_TIMEOUT_S) -> RunMode:
    """The mode of a sweep's runs: ``online``/``auto`` with a key are checked with ``check_online``
    (at the sweep's start, and by its summary run); a failed check means offline runs, said in
    one warning line per process, never a stall per trial."""
    resolved = resolve_mode(mode)
    if resolved != "online":
        return resolved
    announced = (base_url(), api_key() or "") in _verdicts
    problem = check_online(timeout)
    if not problem:
        return "online"
    if not announced:
        log.warning("W&B: %s; logging offline runs to %s instead (upload them later: %s)", problem, Path(sweep_dir) / "wandb", sync_hint(Path(sweep_dir)))
    return "offline"


def sync_hint(sweep_dir: Path) -> str:
    return f"wandb sync {sweep_dir}/wandb/offline-run-*  (after `wandb login`)"


# Environment variables W&B reads for its folders, and where a sweep puts each (under <sweep>/wandb).
WANDB_DIR_VARIABLES = {
    "WANDB_DIR": "",  # the runs: <sweep>/wandb/(offline-)run-*
    "WANDB_CACHE_DIR": "wandb/.cache",
    "WANDB_DATA_DIR": "wandb/.data",  # artifact staging (tables)
    "WANDB_ARTIFACT_DIR": "wandb/artifacts",
}


@contextlib.contextmanager
def sweep_wandb_dirs(sweep_dir: str | Path) -> Iterator[Path]:
    """W&B's folders inside ``<sweep>/wandb`` for the block (os.environ: W&B reads them there, and
    its service process inherits them); the previous values come back afterwards."""
    root = Path(sweep_dir)
    saved = {name: os.environ.get(name) for name in WANDB_DIR_VARIABLES}
    for name, sub in WANDB_DIR_VARIABLES.items():
        folder = root / sub if sub else root
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(folder)
    try:
        yield root / "wandb"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


__all__ = [
    "CHECK_TIMEOUT_S",
    "RunMode",
    "WANDB_DIR_VARIABLES",
    "api_key",
    "base_url",
    "check_online",
    "has_api_key",
    "resolve_mode",
    "sweep_mode",
    "sweep_wandb_dirs",
    "sync_hint",
]
