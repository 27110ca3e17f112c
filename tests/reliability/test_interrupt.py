"""An interrupted sweep says so and continues: one tiny sweep, run as real `harp sweep` processes.

1. `harp sweep --resume-if-exists` starts it (the directory holds none); while it runs, its Ray
   listens on loopback only, Ray's temporary directory is 0700 and holds no AWS secret; Ctrl-C
   (SIGINT to the process group) stops it: exit 130, "interrupted: N of 4 trials finished;
   resume with ...", no best/.
2. Nothing but `--resume` may touch it: a fresh start, a resume with another base config or
   space, and `harp clean` of the unfinished sweep are one-line refusals.
3. `--resume` is stopped by SIGTERM to the driver alone: exit 143, the same message. The trial
   process is paused (SIGSTOP) while the signal is sent, so a trial is certainly cut off mid-run
   (these trials take a second or two: otherwise the sweep may end before the signal comes).
4. `--resume-if-exists` finishes it: every trial ran every epoch once, best/ exported, the
   directory's size reported, no checkpoint copies left in TMPDIR.
5. `harp clean` keeps each trial's best checkpoint only, and export still finds it.

The "N of 4 trials finished" of each stop is checked against the study: a trial cut off mid-run
is not finished (it runs again on resume).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest

from waiting import tune_trial_process

from .conftest import (
    SECRET,
    checkpoints,
    finish,
    harp,
    is_loopback,
    listening_addresses,
    process_tree,
    ray_temp_dir,
    start,
    trial_dirs,
    wait_for,
    write_space,
)

pytestmark = pytest.mark.slow

NUM_SAMPLES, EPOCHS = 4, 3


def _files_holding(folder: Path, text: str) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        try:
            if path.is_file() and text.encode() in path.read_bytes():
                found.append(str(path))
        except OSError:  # Ray removes files as it goes
            continue
    return found


def _finished_count(output: str, sweep_dir: Path) -> int | None:
    """N of the stopped sweep's "interrupted: N of M trials finished; resume with ..." line."""
    match = re.search(rf"interrupted: (\d) of {NUM_SAMPLES} trials finished; resume with harp sweep --resume {re.escape(str(sweep_dir))}", output)
    return int(match.group(1)) if match else None


def _complete(storage: str, name: str) -> int:
    try:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except Exception:  # the study (or its tables) does not exist yet
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


@pytest.fixture(scope="module")
def interrupted(tiny_data_module, tmp_path_factory):
    """Steps 1-4 above; what each left behind, for the tests below."""
    tmp = tmp_path_factory.mktemp("interrupt")
    out = tmp / "runs"
    name = "stopped"
    space = write_space(tmp / "space.yaml", tiny_data_module, out, name, epochs=EPOCHS, num_samples=NUM_SAMPLES)
    other_space = write_space(tmp / "other.yaml", tiny_data_module, out, name, epochs=EPOCHS, num_samples=NUM_SAMPLES,
                              params={"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}})
    sweep_dir = out / name
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    scratch = tmp / "user-tmp"
    scratch.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch), "AWS_SECRET_ACCESS_KEY": SECRET}
    seen: dict = {"listening": set()}

    # 1. started by --resume-if-exists, observed while it runs, then Ctrl-C
    log1 = tmp / "first.log"
    first = start(harp("sweep", "--resume-if-exists", "--space", str(space), "--quiet"), env, log1)
    try:
        wait_for(lambda: any(checkpoints(d) for d in trial_dirs(sweep_dir)), first, what="a first checkpoint")
        tree = process_tree(first.pid)
        seen["listening"] = listening_addresses(tree)
        temp = ray_temp_dir(tree)
        # some directory on the way from /tmp to Ray's files is private to this user
        below_tmp = [d for d in (temp, *temp.parents) if d.is_relative_to("/tmp") and d != Path("/tmp")] if temp else []
        seen["private_dir"] = [str(d) for d in below_tmp if d.stat().st_mode & 0o077 == 0]
        seen["secret_files"] = _files_holding(temp, SECRET) if temp else None
        wait_for(lambda: _complete(storage, name) >= 1, first, what="a finished trial")
        os.killpg(first.pid, signal.SIGINT)
        seen["first"] = finish(first, log1, timeout=180)
        seen["complete_after_first"] = _complete(storage, name)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()

    # 2. refusals while it is unfinished (none of them starts Ray)
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(harp(*args), capture_output=True, text=True, env=env, timeout=120)

    seen["fresh"] = run("sweep", "--space", str(space), "--quiet")
    seen["changed_config"] = run("sweep", "--resume", str(sweep_dir), f"train.epochs={EPOCHS + 1}")
    seen["changed_space"] = run("sweep", "--resume", str(sweep_dir), "--space", str(other_space))
    seen["clean_unfinished"] = run("clean", str(sweep_dir))

    # 3. --resume, stopped by SIGTERM to the driver alone (as a scheduler or `kill` does)
    log3 = tmp / "second.log"
    before = {c for d in trial_dirs(sweep_dir) for c in checkpoints(d)}
    second = start(harp("sweep", "--resume", str(sweep_dir), "--quiet"), env, log3)
    try:
        wait_for(lambda: {c for d in trial_dirs(sweep_dir) for c in checkpoints(d)} - before, second, what="a checkpoint after resuming")
        worker = tune_trial_process(second.pid)
        if worker is not None:
            worker.suspend()
        try:
            seen["complete_at_sigterm"] = _complete(storage, name)
            second.send_signal(signal.SIGTERM)
            time.sleep(2)  # the driver's handler runs while no trial can end
        finally:
            if worker is not None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    worker.resume()
        seen["second"] = finish(second, log3, timeout=180)
        seen["complete_after_second"] = _complete(storage, name)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()

    # 4. finished by --resume-if-exists
    log4 = tmp / "third.log"
    seen["third"] = finish(start(harp("sweep", "--resume-if-exists", "--space", str(space), "--quiet"), env, log4), log4, timeout=400)
    seen["scratch_left"] = sorted(p.name for p in scratch.iterdir())
    return sweep_dir, storage, seen, env


@pytest.fixture(scope="module")
def tiny_data_module(synthetic_config, synthetic_manifest):
    from harp.config.load import to_dict

    return to_dict(synthetic_config)["data"]


def test_ray_listens_on_loopback_only_and_keeps_its_files_private(interrupted):
    _, _, seen, _ = interrupted
    assert seen["listening"], "no listening socket seen"
    exposed = sorted(s for s in seen["listening"] if not is_loopback(s[0]))
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert seen["private_dir"], "every directory above Ray's files lets other users in"
    assert seen["secret_files"] == [], seen["secret_files"]


def test_sigint_stops_the_sweep_and_says_how_to_resume(interrupted):
    sweep_dir, storage, seen, _ = interrupted
    code, output = seen["first"]
    assert code == 130, output[-3000:]
    finished = _finished_count(output, sweep_dir)
    assert finished is not None and 1 <= finished < NUM_SAMPLES, output[-3000:]
    assert finished == seen["complete_after_first"], (seen["complete_after_first"], output[-3000:])
    assert "sweep finished" not in output and "exported:" not in output


def test_an_unfinished_sweep_is_only_resumed(interrupted):
    sweep_dir, _, seen, _ = interrupted
    fresh = seen["fresh"]
    assert fresh.returncode == 2 and "already holds a sweep" in fresh.stderr, fresh.stderr[-2000:]
    changed = seen["changed_config"]
    assert changed.returncode == 2 and f"train.epochs: {EPOCHS} -> {EPOCHS + 1}" in changed.stderr, changed.stderr[-2000:]
    assert "--allow-changes" in changed.stderr and len(changed.stderr.strip().splitlines()) == 1
    space = seen["changed_space"]
    assert space.returncode == 2 and "params (optim.lr differ)" in space.stderr, space.stderr[-2000:]
    clean = seen["clean_unfinished"]
    assert clean.returncode == 2 and "is not finished" in clean.stderr, clean.stderr[-2000:]


def test_sigterm_stops_a_resumed_sweep_cleanly(interrupted):
    sweep_dir, _, seen, _ = interrupted
    code, output = seen["second"]
    assert seen["complete_at_sigterm"] < NUM_SAMPLES, "every trial had finished before the signal: nothing was stopped"
    assert code == 143, output[-3000:]
    assert _finished_count(output, sweep_dir) == seen["complete_after_second"] < NUM_SAMPLES, (seen["complete_after_second"], output[-3000:])
    assert "Traceback" not in output and "SIGTERM received" not in output, output[-3000:]


def test_the_resumed_sweep_ends_with_every_epoch_once(interrupted):
    sweep_dir, storage, seen, _ = interrupted
    code, output = seen["third"]
    assert code == 0, output[-3000:]
    assert "holds a sweep: continuing it" in output
    assert re.search(r"sweep directory: .* \(\d+(\.\d)? (KiB|MiB|GiB)", output), output[-1500:]
    assert (sweep_dir / "best" / "model.safetensors").is_file()
    assert _complete(storage, "stopped") == NUM_SAMPLES
    frame = pd.read_parquet(sweep_dir / "trials.parquet")
    assert len(frame) == NUM_SAMPLES and (frame["status"] == "TERMINATED").all()
    for epochs in frame["epoch"]:
        assert list(epochs) == list(range(1, EPOCHS + 1))
    # no checkpoint copies (checkpoint_tmp_*, harp-ckpt-*) in the user's TMPDIR
    assert not [n for n in seen["scratch_left"] if n.startswith(("checkpoint_tmp_", "harp-ckpt-", "harp-ray-"))], seen["scratch_left"]


def test_clean_keeps_each_trials_best_checkpoint(interrupted):
    from harp.tune.results import best_trial_checkpoint, load_trials

    sweep_dir, _, _, env = interrupted
    records = load_trials(sweep_dir / "tune")
    best = {r.trial_id: best_trial_checkpoint(r, "val_top1", "max") for r in records}
    assert all(b is not None for b in best.values())
    assert sum(len(checkpoints(d)) for d in trial_dirs(sweep_dir)) > NUM_SAMPLES
    run = subprocess.run(harp("clean", str(sweep_dir)), capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0 and "removed" in run.stdout, run.stderr[-2000:]
    for record in records:
        left = checkpoints(record.path)
        assert left == [best[record.trial_id].path], (record.trial_id, left)
    export = subprocess.run(harp("export", str(sweep_dir), "--no-eval"), capture_output=True, text=True, env=env, timeout=300)
    assert export.returncode == 0, export.stderr[-2000:]
