"""A bad sweep is refused in one line before any data or Ray work, and a sweep directory has one
owner: real `harp sweep` processes, a real lock held by another process, real checkpoints."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harp.config import load_config

from .conftest import harp, write_space


def _run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(harp(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _one_line_refusal(run: subprocess.CompletedProcess, *fragments: str) -> None:
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("harp sweep: error:"), run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "data:" not in run.stdout, "refused only after reading the data set"


def test_options_may_follow_overrides(tmp_path):
    space = write_space(tmp_path / "s.yaml", {"root": str(tmp_path / "unused")}, tmp_path / "runs", "opts")
    run = _run("sweep", "--space", str(space), "sweep.num_samples=3", "--cfg", "job", "optim.lr=0.25")
    assert run.returncode == 0, run.stderr
    assert "num_samples: 3" in run.stdout and "lr: 0.25" in run.stdout


def test_unreported_metrics_are_refused_before_anything_runs(tmp_path):
    space = write_space(tmp_path / "s.yaml", {"root": str(tmp_path / "unused")}, tmp_path / "runs", "metric")
    _one_line_refusal(_run("sweep", "--space", str(space), "sweep.metric=val_top2"), "sweep.metric='val_top2'", "val_top1")
    _one_line_refusal(
        _run("sweep", "--space", str(space), "sweep.searcher=nsga2", "sweep.objectives=[flops:min]"), "'flops:min'", "gflops"
    )
    assert not (tmp_path / "runs").exists()


def test_an_empty_or_params_less_space_is_an_error(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    _one_line_refusal(_run("sweep", "--space", str(empty)), "no params")
    no_params = tmp_path / "no_params.yaml"
    no_params.write_text("config:\n  train.epochs: 1\nsweep:\n  num_samples: 2\n")
    _one_line_refusal(_run("sweep", "--space", str(no_params)), "no params")


def test_a_sweep_name_cannot_leave_the_output_dir(tmp_path):
    out = tmp_path / "a" / "b" / "runs"
    space = write_space(tmp_path / "s.yaml", {"root": str(tmp_path / "unused")}, out, "x")
    for name in ("../../escaped", "..", "sub/dir"):
        _one_line_refusal(_run("sweep", "--space", str(space), f"sweep.name={name}"), f"sweep.name={name!r}")
    assert not any(tmp_path.rglob("escaped")) and not out.exists()


def test_a_fresh_sweep_refuses_a_directory_that_holds_one(tmp_path, tiny_data):
    from harp.tune.space import parse_space
    from harp.tune.sweep_dir import SweepPaths, write_sweep_files

    out = tmp_path / "runs"
    space_file = write_space(tmp_path / "s.yaml", tiny_data, out, "taken")
    cfg = load_config([f"sweep.output_dir={out}", "sweep.name=taken"])
    write_sweep_files(cfg, parse_space({"params": {"optim.lr": {"type": "uniform", "low": 0.1, "high": 0.2}}}, name="taken"),
                      SweepPaths(out / "taken"), {})
    before = (out / "taken" / "sweep.json").read_text()
    run = _run("sweep", "--space", str(space_file), timeout=90)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert "already holds a sweep" in run.stderr and f"harp sweep --resume {out / 'taken'}" in run.stderr
    assert (out / "taken" / "sweep.json").read_text() == before, "the existing sweep's files were rewritten"


def _hold_lock(sweep_dir: Path) -> subprocess.Popen:
    code = (
        "import sys, time\nfrom harp.tune.lock import sweep_lock\n"
        f"with sweep_lock({str(sweep_dir)!r}):\n    print('held', flush=True)\n    time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_running_sweep_is_refused_and_a_dead_one_leaves_no_lock(tmp_path, tiny_data):
    from harp.tune.lock import is_locked, sweep_lock

    out = tmp_path / "runs"
    space = write_space(tmp_path / "s.yaml", tiny_data, out, "busy")
    holder = _hold_lock(out / "busy")
    try:
        run = _run("sweep", "--space", str(space), timeout=90)
        assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
        assert f"is in use by pid {holder.pid}" in run.stderr and len(run.stderr.strip().splitlines()) == 1
        assert is_locked(out / "busy")
        assert not (out / "busy" / "sweep.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel dropped the dead holder's lock: nothing stale to clean by hand
    assert not is_locked(out / "busy")
    with sweep_lock(out / "busy"):
        assert json.loads((out / "busy" / ".harp-sweep.lock").read_text())["pid"] == os.getpid()


def test_only_whole_checkpoints_are_resumed_from(tmp_path):
    """A checkpoint directory a killed process left half-copied is never resumed from."""
    import torch

    from harp.train.checkpoint import save_checkpoint
    from harp.train.sessions import complete_checkpoints

    cfg = load_config([])
    model = torch.nn.Linear(64, 8)
    trial = tmp_path / "trial"
    for index, epoch in enumerate((1, 2, 3)):
        save_checkpoint(trial / f"checkpoint_{index:06d}", model=model, cfg=cfg, metrics={"epoch": epoch}, epoch=epoch)
    shutil.copytree(trial / "checkpoint_000002", trial / "checkpoint_000003")
    weights = trial / "checkpoint_000003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a copy cut short
    (trial / "checkpoint_000003" / "metrics.json").write_text(json.dumps({"epoch": 4}))
    assert [(epoch, path.name) for epoch, path, _ in complete_checkpoints(trial)] == [
        (1, "checkpoint_000000"), (2, "checkpoint_000001"), (3, "checkpoint_000002"),
    ]


def test_a_train_run_failure_says_whether_a_retry_can_help():
    """A worker's own HarpError is final; a dead worker is retryable (Ray's real exception types)."""
    from ray.exceptions import ActorDiedError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
    from ray.train.v2.api.exceptions import WorkerGroupError

    from harp.errors import HarpError, is_retryable
    from harp.train.ray_train import _run_failure

    bad_data = WorkerGroupError("rank 0 failed", {0: UserExceptionWithTraceback(HarpError("9 of 60 samples failed to decode"), "tb")})
    final = _run_failure("t1", bad_data)
    assert not is_retryable(final) and "9 of 60 samples failed to decode" in str(final)
    crashed = _run_failure("t1", WorkerGroupError("rank 1 died", {1: ActorDiedError()}))
    assert is_retryable(crashed) and "training run t1 failed" in str(crashed)


def test_interrupt_handlers_are_restored(monkeypatch):
    from harp.tune.interrupt import SweepInterrupted, stop_on_signals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    with pytest.raises(SweepInterrupted) as raised, stop_on_signals() as request:
        os.kill(os.getpid(), signal.SIGTERM)  # no Tune loop running: the block is interrupted
        time.sleep(1)
    assert request.signum == signal.SIGTERM and raised.value.exit_code == 143
    assert {s: signal.getsignal(s) for s in before} == before


_SIGTERM_AFTER_RAY = """
import os, signal, sys, time
from harp.config import load_config
from harp.tune.interrupt import SweepInterrupted, stop_on_signals
from harp.tune.ray_session import ray_session
try:
    with stop_on_signals():
        with ray_session(load_config(["sweep.ray_address=local"]), num_cpus=1, num_gpus=0):
            pass
        os.kill(os.getpid(), signal.SIGTERM)  # as a SIGTERM while the best trial is tested
        time.sleep(5)
except SweepInterrupted as exc:
    print("stopped cleanly:", exc)
    sys.exit(exc.exit_code)
print("the signal was lost")
"""


def test_sigterm_after_ray_shut_down_still_stops_cleanly():
    """Ray's shutdown resets SIGTERM to the kernel's default under Python's handler; a sweep's
    SIGTERM after its Ray is down still reaches harp's clean stop (in a child: before the fix the
    signal killed the process it was sent to)."""
    run = subprocess.run([sys.executable, "-c", _SIGTERM_AFTER_RAY], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert run.returncode == 143, (run.returncode, run.stdout[-2000:], run.stderr[-2000:])
    assert "stopped cleanly: interrupted by SIGTERM" in run.stdout
