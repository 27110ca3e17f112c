"""Whether a sweep's W&B runs can go online, decided once: a malformed key, an unreachable host and
a refused key each make the sweep offline with one warning line; the verdict is kept for the
process (no second request), and W&B's folders are pointed into the sweep directory and back."""
from __future__ import annotations

import http.server
import logging
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from harp.tune import wandb_mode
from harp.tune.wandb_mode import WANDB_DIR_VARIABLES, check_online, resolve_mode, sweep_mode, sweep_wandb_dirs

WELL_FORMED = "0123456789abcdef0123456789abcdef01234567"  # 40 characters: W&B's format check passes


@pytest.fixture(autouse=True)
def fresh_verdicts(monkeypatch, tmp_path):
    monkeypatch.setattr(wandb_mode, "_verdicts", {})
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server(http.server.ThreadingHTTPServer):
    requests: list[str]


@pytest.fixture
def refusing_server() -> Iterator[_Server]:
    """An HTTP server on 127.0.0.1 that refuses every API key with 401, as W&B does a wrong one."""

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.server.requests.append(self.path)  # type: ignore[attr-defined]
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Refuse)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_without_a_key_auto_is_offline_and_nothing_is_asked(monkeypatch, tmp_path):
    assert resolve_mode("auto") == "offline" and sweep_mode("auto", tmp_path) == "offline"
    assert sweep_mode("disabled", tmp_path) == "disabled" and sweep_mode("offline", tmp_path) == "offline"
    assert wandb_mode._verdicts == {}


def test_a_malformed_key_means_offline_with_one_line(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "not-a-key")
    caplog.set_level(logging.WARNING, logger="harp.tune")
    assert resolve_mode("auto") == "online"  # a key is there; only the check knows better
    assert sweep_mode("auto", tmp_path) == "offline"
    assert sweep_mode("online", tmp_path) == "offline"  # the same verdict, not said twice
    lines = [r.getMessage() for r in caplog.records if r.name == "harp.tune"]
    assert len(lines) == 1 and "malformed" in lines[0] and "40+ characters" in lines[0] and "wandb sync" in lines[0], lines
    assert resolve_mode("auto") == "offline"  # what `harp sweep` prints at its end agrees


def test_an_unreachable_host_is_asked_once(monkeypatch, tmp_path, caplog):
    port = _closed_port()
    monkeypatch.setenv("WANDB_API_KEY", WELL_FORMED)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    caplog.set_level(logging.WARNING, logger="harp.tune")
    assert sweep_mode("auto", tmp_path) == "offline"
    problem = check_online()
    assert problem is not None and problem.startswith(f"cannot reach 127.0.0.1:{port}"), problem
    # a server on that port now would answer, but the sweep asked already: no second request
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
    try:
        assert sweep_mode("auto", tmp_path) == "offline"
    finally:
        server.server_close()
    assert len([r for r in caplog.records if r.name == "harp.tune"]) == 1
    assert WELL_FORMED not in caplog.text  # the key is never written anywhere


def test_a_refused_key_is_offline(monkeypatch, tmp_path, refusing_server):
    monkeypatch.setenv("WANDB_API_KEY", WELL_FORMED)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{refusing_server.server_address[1]}")
    assert sweep_mode("online", tmp_path) == "offline"
    assert "refused the API key (HTTP 401)" in (check_online() or "")
    assert refusing_server.requests == ["/graphql"]  # one request, then the remembered verdict


def test_wandb_folders_live_in_the_sweep_directory_for_the_block(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_CACHE_DIR", "/somewhere/else")
    monkeypatch.delenv("WANDB_DATA_DIR", raising=False)
    with sweep_wandb_dirs(tmp_path / "sweep") as folder:
        assert folder == tmp_path / "sweep" / "wandb"
        for name in WANDB_DIR_VARIABLES:
            assert os.environ[name].startswith(str(tmp_path / "sweep")), name
            assert os.path.isdir(os.environ[name])
    assert os.environ["WANDB_CACHE_DIR"] == "/somewhere/else" and "WANDB_DATA_DIR" not in os.environ
