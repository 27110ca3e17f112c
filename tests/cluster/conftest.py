"""Fixtures for the cluster tests: real servers on 127.0.0.1 (see ``servers``), started once per
session and stopped in teardown; a tiny sweep space on the shared synthetic data set."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import sweep_spaces

from .servers import MotoS3, Postgres, RayHead

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_head():
    """A plain `ray start --head` (token auth off), 2 logical CPUs."""
    head = RayHead.start(num_cpus=2)
    yield head
    head.stop()


@pytest.fixture(scope="session")
def token_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("token")


@pytest.fixture(scope="session")
def ray_head_token(token_dir):
    """A `ray start --head` with RAY_AUTH_MODE=token and a token generated here (file mode 600)."""
    token_file = token_dir / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    head = RayHead.start(num_cpus=1, token_file=token_file)
    head.token_file = token_file  # type: ignore[attr-defined]
    yield head
    head.stop()


@pytest.fixture(scope="session")
def moto_s3():
    server = MotoS3.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    if Postgres.bin_dir() is None:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (scripts/bootstrap.sh --dev installs it)")
    server = Postgres.start()
    yield server
    server.stop()


def client_env(**extra: str) -> dict[str, str]:
    """The environment of a `harp` client process: no Ray variables from the test runner, no W&B key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "WANDB_API_KEY"}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def harp(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harp.cli", *args], capture_output=True, text=True,
                          env=env or client_env(), timeout=timeout, cwd=cwd or REPO)


def tiny_space(synthetic_config, *, name: str, output_dir: Path, num_samples: int = 2, epochs: int = 1,
               extra_sweep: dict | None = None, extra_config: dict | None = None) -> dict:
    """A sweep space on the shared tiny synthetic data set: cheap trials, no W&B."""
    from harp.config.load import to_dict

    return sweep_spaces.tiny_space(to_dict(synthetic_config)["data"], output_dir, name, epochs=epochs, num_samples=num_samples,
                                   config=extra_config, description="cluster test", **(extra_sweep or {}))


def write_job_dir(root: Path, space: dict, *, overrides: list[str] | None = None, env_vars: dict | None = None) -> Path:
    """A small working dir holding a space and a job spec (so the test's upload stays tiny)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "space.yaml").write_text(yaml.safe_dump(space))
    spec = {
        "space": "space.yaml",
        "overrides": overrides or [],
        "entrypoint_resources": {"num_cpus": 0},
        "runtime_env": {"working_dir": ".", "env_vars": {"PYTHONUNBUFFERED": "1", **(env_vars or {})}},
    }
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
