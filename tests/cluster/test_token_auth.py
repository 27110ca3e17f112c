"""Token authentication against a real `ray start --head` with RAY_AUTH_MODE=token and a token this
test generated: the right token works (from RAY_AUTH_TOKEN_PATH, RAY_AUTH_TOKEN or Ray's default
file), a wrong or missing one is one line, a token file others can read is warned about, and the
token appears in no output and no file the commands write."""
from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from .conftest import client_env, harp, tiny_space, write_job_dir

pytestmark = pytest.mark.slow


def _files_containing(root: Path, needle: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and needle.encode() in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


def test_the_right_token_works_and_is_never_shown(ray_head_token, synthetic_config, tmp_path: Path):
    token = ray_head_token.token_file.read_text().strip()
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    own_copy = home / ".ray" / "auth_token"  # Ray's default file, as `ray rsync-down` puts it
    shutil.copy(ray_head_token.token_file, own_copy)
    own_copy.chmod(0o600)
    env = client_env(HOME=str(home))
    address = ray_head_token.address
    spec = write_job_dir(tmp_path / "work", tiny_space(synthetic_config, name="token-sweep", output_dir=tmp_path / "runs"))

    outputs = []
    submitted = harp("submit", str(spec), "--address", address, env=env, cwd=tmp_path)
    outputs.append(submitted)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split("submitted job ", 1)[1].split()[0]
    outputs.append(harp("jobs", "logs", job_id, "--follow", "--address", address, env=env, timeout=600))
    outputs.append(harp("jobs", "status", job_id, "--address", address, env=env))
    outputs.append(harp("jobs", "list", "--address", address, env={**env, "RAY_AUTH_TOKEN_PATH": str(ray_head_token.token_file)}))
    outputs.append(harp("jobs", "list", "--address", address, env={**env, "RAY_AUTH_TOKEN": token}))
    assert all(out.returncode in (0, 1) for out in outputs), [o.stderr for o in outputs]
    assert job_id in outputs[-1].stdout and job_id in outputs[-2].stdout
    for out in outputs:
        assert token not in out.stdout and token not in out.stderr
    assert "warning" not in "".join(o.stderr for o in outputs)  # mode 600: no warning
    # no file the commands wrote holds it: the client's HOME (bar Ray's own token file), the working dir, the sweep's runs
    written = [p for p in _files_containing(home, token) if p != own_copy]
    written += _files_containing(tmp_path / "work", token) + _files_containing(tmp_path / "runs", token)
    assert written == []
    # nor the job's record on the cluster (its runtime env and metadata, shown by the dashboard)
    from ray.job_submission import JobSubmissionClient

    details = JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"}).get_job_info(job_id)
    assert token not in details.model_dump_json()


def test_a_wrong_token_is_refused_in_one_line(ray_head_token, tmp_path: Path):
    wrong = secrets.token_hex(32)
    env = client_env(HOME=str(tmp_path), RAY_AUTH_TOKEN=wrong)
    out = harp("jobs", "list", "--address", ray_head_token.address, env=env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"harp jobs: error: Ray's job server at {ray_head_token.address} refused the token from $RAY_AUTH_TOKEN: "
        "it is not this cluster's token; copy the head's current token (`ray get-auth-token` there)"
    ]
    assert wrong not in out.stdout + out.stderr


def test_no_token_is_one_line(ray_head_token, tmp_path: Path):
    out = harp("jobs", "list", "--address", ray_head_token.address, env=client_env(HOME=str(tmp_path)))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"Ray's job server at {ray_head_token.address} requires its token and none was sent" in lines[0]


def test_a_token_file_others_can_read_is_warned_about(ray_head_token, tmp_path: Path):
    readable = tmp_path / "auth_token"
    shutil.copy(ray_head_token.token_file, readable)
    readable.chmod(0o644)
    out = harp("jobs", "list", "--address", ray_head_token.address,
               env=client_env(HOME=str(tmp_path), RAY_AUTH_TOKEN_PATH=str(readable)))
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"warning: Ray's token file {readable} is readable by other users (mode 644): anyone who reads it can run code "
        f"on the cluster; run: chmod 600 {readable}"
    ]
