"""A tiny sweep whose sweep.output_dir is a URI, run as real `harp sweep` processes: on moto's S3
server (127.0.0.1) and on file://. Each is started, interrupted with Ctrl-C once a trial has
finished, read with `harp status`, resumed by its URI and exported (and read with `harp report`): Tune's trials and checkpoints,
sweep.json, trials.parquet and best/ are in the bucket (read back with boto3 and pyarrow), every
trial ran every epoch once, one Optuna study holds both trials, and nothing leaks (no `./s3:`
folder, no AWS secret in any object or local file, no checkpoint copy left in TMPDIR)."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import optuna
import pandas as pd
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
import yaml

from .conftest import client_env, tiny_space

pytestmark = pytest.mark.slow

NUM_SAMPLES, EPOCHS = 2, 2
SECRET = "harp-storage-secret-5c1f0e27"  # moto takes any key pair; this one must never reach a file


def _space(synthetic_config, tmp: Path, output_dir: str, name: str) -> Path:
    space = tiny_space(synthetic_config, name=name, output_dir=Path("."), num_samples=NUM_SAMPLES, epochs=EPOCHS,
                       extra_config={"train.max_steps_per_epoch": 2})
    space["sweep"]["output_dir"] = output_dir
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def _start(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 - closed with the process (see _finish)
    return subprocess.Popen([sys.executable, "-m", "harp.cli", *args], stdout=handle, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=cwd, start_new_session=True)


def _finish(process: subprocess.Popen, log: Path, timeout: float = 400) -> tuple[int, str]:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return code, log.read_text()


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harp.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def _complete(db: Path, name: str) -> int:
    if not db.is_file():
        return 0
    try:
        trials = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
    except Exception:  # the study (or its tables) does not exist yet
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def _interrupt_after_first_trial(args: list[str], env: dict[str, str], tmp: Path, study_db: Path, name: str) -> tuple[int, str]:
    """Start a sweep, Ctrl-C its process group once one trial is COMPLETE in the study."""
    log = tmp / "first.log"
    process = _start(args, env, log, tmp)
    try:
        deadline = time.monotonic() + 300
        while _complete(study_db, name) < 1:
            assert process.poll() is None, f"the sweep ended before a trial finished:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)
        return _finish(process, log, timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _check_interrupted(code: int, output: str, where: str) -> None:
    assert code == 130, output[-3000:]
    assert re.search(rf"interrupted: \d of {NUM_SAMPLES} trials finished; resume with harp sweep --resume {re.escape(where)}\n", output), output[-3000:]


def _check_trials(frame: pd.DataFrame) -> None:
    assert len(frame) == NUM_SAMPLES and (frame["status"] == "TERMINATED").all(), frame
    assert (frame["optuna_state"] == "COMPLETE").all(), frame[["trial_id", "optuna_state"]]
    for epochs in frame["epoch"]:
        assert list(epochs) == list(range(1, EPOCHS + 1))  # every epoch once: the interrupted trial resumed


def _files_holding(folder: Path, text: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    folder = tmp_path / "user-tmp"
    folder.mkdir()
    return folder


def test_a_sweep_on_s3_runs_resumes_and_exports_into_the_bucket(moto_s3, synthetic_config, synthetic_manifest, tmp_path: Path, scratch: Path):
    prefix, name = f"runs-{uuid.uuid4().hex[:8]}", "on-s3"
    where = f"s3://{moto_s3.bucket}/{prefix}/{name}"
    state = tmp_path / "state"
    env = client_env(**{**moto_s3.env, "AWS_SECRET_ACCESS_KEY": SECRET}, HARP_STATE_DIR=str(state), TMPDIR=str(scratch))
    space = _space(synthetic_config, tmp_path, f"s3://{moto_s3.bucket}/{prefix}", name)
    driver_dir = state / "sweeps" / "s3" / moto_s3.bucket / prefix / name
    study_db = driver_dir / "optuna.db"
    s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key=SECRET)

    def objects() -> dict[str, int]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=moto_s3.bucket, Prefix=f"{prefix}/{name}/")
        return {o["Key"][len(prefix) + len(name) + 2:]: o["Size"] for page in pages for o in page.get("Contents", [])}

    # 1. started (--resume-if-exists: nothing there yet), Ctrl-C once a trial has finished
    code, output = _interrupt_after_first_trial(["sweep", "--resume-if-exists", "--space", str(space), "--quiet"], env, tmp_path, study_db, name)
    _check_interrupted(code, output, where)
    assert f"sweep directory {where} holds none: starting it" in output
    assert f"study: sqlite:///{study_db} (local to this driver: set sweep.optuna_storage for a cluster" in output
    stored = objects()
    assert {"sweep.json", "base_config.yaml", "space.yaml", "tune/tuner.pkl", "optuna.db"} <= set(stored), sorted(stored)
    assert any(re.fullmatch(r"tune/harp_trial_[^/]+/checkpoint_\d+/model\.safetensors", k) for k in stored), sorted(stored)
    assert not [k for k in stored if k.startswith(("best/", "trials.parquet"))]  # nothing exported from a partial sweep

    # 2. `harp status` reads it through the filesystem
    status = _run(["status", where], env, tmp_path, timeout=180)
    assert status.returncode == 0, status.stderr[-3000:]
    assert re.search(r"trials: .*1 COMPLETE", status.stdout) and "not running" in status.stdout, status.stdout

    # 3. resumed by its URI, to the end, then exported into the bucket
    log = tmp_path / "second.log"
    code, output = _finish(_start(["sweep", "--resume", where, "--quiet"], env, log, tmp_path), log)
    assert code == 0, output[-4000:]
    assert f"exported: {where}/best/" in output and f"resume with:   harp sweep --resume {where}" in output
    stored = objects()
    assert stored.get("best/model.safetensors", 0) > 0 and stored.get("trials.parquet", 0) > 0, sorted(stored)
    s3fs = pyarrow.fs.S3FileSystem(endpoint_override=moto_s3.endpoint, access_key="testing", secret_key=SECRET, region="us-east-1")
    frame = pq.read_table(f"{moto_s3.bucket}/{prefix}/{name}/trials.parquet", filesystem=s3fs).to_pandas()
    _check_trials(frame)
    best = json.loads(s3.get_object(Bucket=moto_s3.bucket, Key=f"{prefix}/{name}/best/metrics.json")["Body"].read())
    assert best["trial_id"] in set(frame["trial_id"]) and best["checkpoint"].startswith(f"{where}/tune/harp_trial_")
    assert set(best["test"]) >= {"top1", "top5"}
    assert _complete(study_db, name) == NUM_SAMPLES
    with tempfile.TemporaryDirectory() as copy_dir:  # the study's copy in the bucket is the whole study too
        copy = Path(copy_dir) / "optuna.db"
        copy.write_bytes(s3.get_object(Bucket=moto_s3.bucket, Key=f"{prefix}/{name}/optuna.db")["Body"].read())
        assert _complete(copy, name) == NUM_SAMPLES

    # 4. `harp report` reads it too: the exported confusion matrix (mirrored without the weights)
    report = _run(["report", where, "--output", str(tmp_path / "report")], env, tmp_path, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (tmp_path / "report" / "report.html").read_text()
    assert 'data-missing="confusion"' not in page and (tmp_path / "report" / "figures" / "confusion_0.png").is_file()
    assert not list((driver_dir / "best").rglob("*.safetensors"))

    # 5. export on another machine (its own state dir): trials and the study from the bucket alone
    elsewhere = {**env, "HARP_STATE_DIR": str(tmp_path / "other-machine")}
    again = _run(["export", where, "--no-eval"], elsewhere, tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    _check_trials(pq.read_table(f"{moto_s3.bucket}/{prefix}/{name}/trials.parquet", filesystem=s3fs).to_pandas())

    # 6. nothing leaked: no ./s3: folder, no secret in the bucket or on disk, no checkpoint copies in TMPDIR
    assert not list(tmp_path.glob("s3*")), sorted(p.name for p in tmp_path.iterdir())
    stored = objects()
    leaked = [k for k in stored if SECRET.encode() in s3.get_object(Bucket=moto_s3.bucket, Key=f"{prefix}/{name}/{k}")["Body"].read()]
    assert leaked == [] and _files_holding(state, SECRET) == []
    left = sorted(p.name for p in scratch.iterdir() if p.name.startswith(("checkpoint_tmp_", "harp-upload-", "harp-ckpt-")))
    assert left == [], left


def test_a_sweep_on_a_file_uri_runs_resumes_and_exports(synthetic_config, synthetic_manifest, tmp_path: Path, scratch: Path):
    name = "on-file"
    runs = tmp_path / "shared" / "runs"
    sweep_dir = runs / name
    env = client_env(HARP_STATE_DIR=str(tmp_path / "state"), TMPDIR=str(scratch))
    space = _space(synthetic_config, tmp_path, f"file://{runs}", name)

    code, output = _interrupt_after_first_trial(["sweep", "--space", str(space), "--quiet"], env, tmp_path, sweep_dir / "optuna.db", name)
    _check_interrupted(code, output, str(sweep_dir))
    assert f"study: sqlite:///{sweep_dir}/optuna.db (in the sweep directory)" in output  # a file URI is a path: SQLite beside it
    assert (sweep_dir / "tune" / "tuner.pkl").is_file() and not (sweep_dir / "best").exists()

    log = tmp_path / "second.log"  # resumed as a resubmitted job does: same space, --resume-if-exists
    code, output = _finish(_start(["sweep", "--resume-if-exists", "--space", str(space), "--quiet"], env, log, tmp_path), log)
    assert code == 0, output[-4000:]
    assert f"sweep directory {sweep_dir} holds a sweep: continuing it" in output
    _check_trials(pd.read_parquet(io.BytesIO((sweep_dir / "trials.parquet").read_bytes())))
    assert (sweep_dir / "best" / "model.safetensors").is_file() and _complete(sweep_dir / "optuna.db", name) == NUM_SAMPLES
    assert not list(tmp_path.glob("file*")) and not (tmp_path / "state").exists()  # nothing beside it: it is all in the directory
