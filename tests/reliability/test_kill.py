"""A driver killed with SIGKILL: `--resume` ends what it left (and only that) and every trial
continues from its newest checkpoint on disk, not the older one Tune's saved state names, even
when that one was already deleted by the checkpoint retention.

The gap is made certain, not hoped for: the driver is frozen (SIGSTOP) while a trial trains on,
so that trial persists one more checkpoint than the driver ever recorded, then killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import psutil
import pytest

from .conftest import alive, checkpoints, harp, process_tree, ray_temp_dir, start, trial_dirs, wait_for, write_space

pytestmark = pytest.mark.slow

EPOCHS = 12  # room for several freeze attempts on a loaded machine (each takes an epoch)


def _names(trial: Path) -> set[str]:
    return {c.name for c in checkpoints(trial)}


def _new_checkpoints(trial: Path, names: set[str]) -> set[str]:
    return _names(trial) - names


def _sleeper(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)"], env=env)


@pytest.fixture(scope="module")
def killed(synthetic_config, synthetic_manifest, tmp_path_factory):
    from harp.config.load import to_dict
    from harp.tune.leftovers import SESSION_ENV, SESSION_FILE, record_session

    tmp = tmp_path_factory.mktemp("kill")
    sweep_dir = tmp / "runs" / "killed"
    space = write_space(tmp / "space.yaml", to_dict(synthetic_config)["data"], tmp / "runs", "killed", epochs=EPOCHS, num_samples=2)
    scratch = tmp / "user-tmp"
    scratch.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch)}

    # bystanders that look like harp's but are not leftovers: a session without a record, and the
    # session of a live driver (this test process)
    unrecorded = Path(tempfile.mkdtemp(prefix="harp-ray-", dir="/tmp"))
    live = Path(tempfile.mkdtemp(prefix="harp-ray-", dir="/tmp"))
    record_session(live)
    bystanders = [_sleeper({**os.environ, SESSION_ENV: str(unrecorded)}), _sleeper({**os.environ, SESSION_ENV: str(live)})]

    log = tmp / "first.log"
    started: list[tuple[int, float]] = []
    first = start(harp("sweep", "--space", str(space), "--quiet", "--no-export"), env, log)
    try:
        trial = wait_for(lambda: next((d for d in trial_dirs(sweep_dir) if checkpoints(d)), None), first, what="a checkpoint")
        for _ in range(8):
            # Right after the trial persists a checkpoint the driver takes its report and lets it
            # train on; frozen then (SIGSTOP), the driver never records the next checkpoint.
            wait_for(partial(_new_checkpoints, trial, _names(trial)), first, what="a new checkpoint", poll=0.05)
            time.sleep(0.5)
            os.kill(first.pid, signal.SIGSTOP)
            if wait_for(partial(_new_checkpoints, trial, _names(trial)), timeout=30, fail=False):
                break
            os.kill(first.pid, signal.SIGCONT)  # the driver had not let it go on: try at the next epoch
        else:
            raise AssertionError("no checkpoint was written while the driver was frozen")
        tree = process_tree(first.pid)
        started += [(p.pid, p.create_time()) for p in tree[1:]]
        temp = ray_temp_dir(tree)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        from harp.train.sessions import complete_checkpoints

        on_disk = {epoch: metrics for epoch, _, metrics in complete_checkpoints(trial)}  # not one the kill left half-written
        from harp.tune.results import load_trials

        record = next(r for r in load_trials(sweep_dir / "tune") if r.path == trial)
        latest = record.trial.run_metadata.checkpoint_manager.latest_checkpoint_result if record.trial else None
        recorded_epoch = int(latest.metrics["epoch"]) if latest is not None else 0
        # Tune's retention deletes a trial's older checkpoints as soon as the driver records a newer
        # one, and saves its state only every few seconds: a kill in between leaves a state naming
        # a deleted checkpoint (seen on CI). Made certain here: the named one goes.
        named = Path(latest.checkpoint.path) if latest is not None and latest.checkpoint is not None else None
        if named is not None and named.exists():
            subprocess.run(["rm", "-rf", str(named)], check=True)
        left_running = alive(started)

        run = subprocess.run(harp("sweep", "--resume", str(sweep_dir), "--quiet", "--no-export"), capture_output=True, text=True,
                             env=env, timeout=600)
        yield {
            "sweep_dir": sweep_dir, "trial": trial, "on_disk": on_disk, "recorded_epoch": recorded_epoch, "started": started,
            "temp": temp, "left_running": left_running, "resume": run, "scratch": scratch, "bystanders": bystanders,
            "unrecorded": unrecorded, "live": live, "session_file": SESSION_FILE, "named": named,
        }
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        for process in bystanders:
            process.kill()
            process.wait()
        for folder in (unrecorded, live):
            subprocess.run(["rm", "-rf", str(folder)], check=False)
        for pid in alive(started):  # whatever the resume did not end
            psutil.Process(pid).kill()


def test_the_resume_ends_the_killed_sessions_leftovers_and_only_those(killed):
    run = killed["resume"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert killed["left_running"], "the killed driver left nothing running: nothing was tested"
    assert alive(killed["started"]) == [], "processes of the killed sweep still run"
    assert killed["temp"] is not None and not killed["temp"].exists(), killed["temp"]
    # not a leftover: a session without harp's record, and a live driver's session
    assert all(p.poll() is None for p in killed["bystanders"])
    assert killed["unrecorded"].exists() and killed["live"].exists()
    assert not [p.name for p in killed["scratch"].iterdir() if p.name.startswith(("checkpoint_tmp_", "harp-ckpt-"))]


def test_the_killed_trial_continues_from_its_newest_checkpoint(killed):
    from harp.tune.results import load_trials

    newest = max(killed["on_disk"])
    assert newest > killed["recorded_epoch"], "the driver had recorded the newest checkpoint: nothing was tested"
    record = next(r for r in load_trials(killed["sweep_dir"] / "tune") if r.path == killed["trial"])
    assert killed["named"] is not None, "Tune's state named no checkpoint: nothing was deleted"
    assert record.status == "TERMINATED" and [int(r["epoch"]) for r in record.history] == list(range(1, EPOCHS + 1))
    assert "put back as a copy of" in killed["resume"].stdout + killed["resume"].stderr
    by_epoch = {int(r["epoch"]): r for r in record.history}
    # the epochs on disk were reported as they were trained, not trained again after the resume
    for epoch, metrics in killed["on_disk"].items():
        assert by_epoch[epoch]["epoch_time_s"] == pytest.approx(metrics["epoch_time_s"], rel=1e-9), epoch
        assert by_epoch[epoch]["global_step"] == metrics["global_step"]
