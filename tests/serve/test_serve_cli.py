"""``harp serve`` refuses what it cannot serve in one line, before starting Ray."""
from __future__ import annotations

import socket

from harp.cli import main as harp


def test_bad_model_port_or_replicas_fail_before_ray(best_dir, tmp_path, capsys):
    import ray

    assert harp(["serve", "--model", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"harp serve: error: {tmp_path / 'nope'} does not exist; pass an export's best/")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert harp(["serve", "--model", str(best_dir), "--port", str(port)]) == 2
        assert capsys.readouterr().err.strip().startswith(f"harp serve: error: cannot listen on 127.0.0.1:{port} (")
    assert harp(["serve", "--model", str(best_dir), "--replicas", "0"]) == 2
    assert "serve at least one replica" in capsys.readouterr().err
    assert harp(["serve", "--model", str(best_dir), "--max-upload-mb", "0"]) == 2
    assert not ray.is_initialized()
