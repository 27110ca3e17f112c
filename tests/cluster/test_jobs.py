"""`harp submit` and `harp jobs` against a real `ray start --head` on 127.0.0.1: a job runs in
Ray's package cache and is followed, listed, stopped; an unknown id, an unreachable address and a
server that is not Ray's job server are one line each; a real tiny sweep runs as a job."""
from __future__ import annotations

import inspect
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from .conftest import client_env, harp, tiny_space, write_job_dir
from .servers import free_port, wait_for_port

pytestmark = pytest.mark.slow


def has_resume_if_exists() -> bool:
    import harp.commands.sweep as sweep

    return "--resume-if-exists" in inspect.getsource(sweep)


NEEDS_RESUME_FLAG = pytest.mark.xfail(
    not has_resume_if_exists(), strict=True,
    reason="the job entrypoint runs `harp sweep --resume-if-exists`, which the reliability issue (8) is adding",
)


@pytest.fixture
def plain_client(monkeypatch, tmp_path):
    """This process as a client without a token (its own HOME), token auth off."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    return client_env(HOME=str(home), RAY_AUTH_MODE="disabled")


def _wait_status(jobs, job_id: str, wanted: tuple[str, ...], timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = str(jobs.info(job_id).status)
        if status in wanted:
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {status} after {timeout:.0f} s")


PROBE = (
    "import os; from harp.config import load_config; from harp.cluster.job_env import running_in_ray_job, check_job_paths\n"
    "print('IN_JOB', running_in_ray_job(), os.getcwd())\n"
    "try:\n    check_job_paths(load_config([]))\nexcept Exception as exc:\n    print('REFUSED', exc)\n"
)


def test_a_job_runs_in_the_package_cache_where_relative_paths_are_refused(ray_head, plain_client, tmp_path: Path):
    from harp.cluster.jobs import connect

    work = tmp_path / "work"
    work.mkdir()
    (work / "probe.py").write_text(PROBE)
    jobs = connect(ray_head.address)
    job_id = jobs.submit("python probe.py", {"working_dir": str(work)}, {"harp_sweep": "probe", "harp_output_dir": "/shared/runs"},
                         entrypoint_num_cpus=0)

    followed = harp("jobs", "logs", job_id, "--follow", "--address", ray_head.address, env=plain_client)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert "IN_JOB True" in followed.stdout and "/runtime_resources/working_dir_files/_ray_pkg_" in followed.stdout
    assert "REFUSED sweep.output_dir='runs' is relative: inside a Ray Job it would be written into Ray's package cache" in followed.stdout
    assert followed.stdout.rstrip().endswith(f"job {job_id}: SUCCEEDED")

    status = harp("jobs", "status", job_id, "--address", ray_head.address, env=plain_client)
    assert status.returncode == 0 and f"job {job_id}: SUCCEEDED" in status.stdout and "sweep probe in /shared/runs" in status.stdout
    listed = harp("jobs", "list", env={**plain_client, "RAY_ADDRESS": ray_head.address})  # the address from RAY_ADDRESS
    assert listed.returncode == 0 and job_id in listed.stdout and "probe (/shared/runs)" in listed.stdout
    logs = harp("jobs", "logs", job_id, "--address", ray_head.address, env=plain_client)
    assert "IN_JOB True" in logs.stdout


def test_a_running_job_is_stopped(ray_head, plain_client, tmp_path: Path):
    from harp.cluster.jobs import connect

    jobs = connect(ray_head.address)
    job_id = jobs.submit("sleep 300", {}, {}, entrypoint_num_cpus=0)
    _wait_status(jobs, job_id, ("RUNNING",))
    stopped = harp("jobs", "stop", job_id, "--address", ray_head.address, env=plain_client)
    assert stopped.returncode == 0 and f"job {job_id}: stop requested" in stopped.stdout
    assert _wait_status(jobs, job_id, ("STOPPED",), timeout=60) == "STOPPED"


@pytest.mark.parametrize("action", ["status", "logs", "stop"])
def test_an_unknown_job_id_is_one_line(ray_head, plain_client, action: str):
    out = harp("jobs", action, "raysubmit_doesnotexist", "--address", ray_head.address, env=plain_client)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == [f"harp jobs: error: no job 'raysubmit_doesnotexist' on the cluster at {ray_head.address}; `harp jobs list` shows the job ids"]


def test_an_unreachable_address_is_one_line(plain_client):
    port = free_port()  # nothing listens there
    out = harp("jobs", "list", "--address", f"http://127.0.0.1:{port}", env=plain_client)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"harp jobs: error: cannot reach Ray's job server at http://127.0.0.1:{port} (")
    assert "ray dashboard cluster.yaml" in lines[0]
    missing = harp("jobs", "list", env=plain_client)
    assert missing.returncode == 2 and "no cluster address: pass --address" in missing.stderr


def test_a_server_that_is_not_rays_job_server_is_one_line(plain_client, tmp_path: Path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        out = harp("jobs", "list", "--address", f"http://127.0.0.1:{port}", env=plain_client)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"harp jobs: error: http://127.0.0.1:{port} is not a Ray job server (it answered 404 to Ray's version check); "
        "give the dashboard's address, port 8265 by default"
    ]


@NEEDS_RESUME_FLAG
def test_a_tiny_sweep_runs_as_a_job(ray_head, plain_client, synthetic_config, synthetic_manifest, tmp_path: Path):
    out_dir = tmp_path / "shared" / "runs"  # an absolute path every (simulated) node sees
    spec = write_job_dir(tmp_path / "work", tiny_space(synthetic_config, name="job-sweep", output_dir=out_dir))
    submitted = harp("submit", str(spec), "--address", ray_head.address, "--follow", env=plain_client, timeout=900)
    text = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0, text[-4000:]
    assert "submitted job raysubmit_" in text and f"sweep directory (on the cluster's storage): {out_dir / 'job-sweep'}" in text
    assert "harp jobs logs raysubmit_" in text and "sweep.name=job-sweep" in text
    storage = f"sqlite:///{out_dir / 'job-sweep' / 'optuna.db'}"
    trials = optuna.load_study(study_name="job-sweep", storage=storage).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert not list(Path(ray_head.temp_dir).rglob("_ray_pkg_*/runs"))  # nothing written into the package cache
