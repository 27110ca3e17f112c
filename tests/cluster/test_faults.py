"""Faults on a cluster, with real kills.

- A node lost mid-sweep: a Ray cluster of a head and two worker nodes on this machine
  (``ray.cluster_utils.Cluster``, logical CPUs), the sweep driver as a subprocess
  (`harp sweep ... sweep.ray_address=<cluster>`), the sweep directory a local path every simulated
  node shares (the shared storage). Once a trial has finished and another is mid-run, that trial's
  worker node is removed and a replacement added (on this thread); the sweep completes, no finished
  trial is lost, the moved trial resumes from its checkpoint instead of epoch 1.
- A driver killed while it runs as a Ray Job (SIGKILL), the job resubmitted: the sweep continues,
  keeping every finished trial and one Optuna study.

Each test prints a FAULT line with what it measured (run with -s to see them).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
import yaml

from .conftest import client_env, harp, tiny_space, write_job_dir
from .servers import free_port
from .test_jobs import NEEDS_RESUME_FLAG

pytestmark = pytest.mark.slow

EPOCHS = 4


def _studies(storage: str) -> list[str]:
    try:
        return [s.study_name for s in optuna.get_all_study_summaries(storage)]
    except Exception:
        return []


def _complete(storage: str, study: str) -> dict[int, float]:
    try:
        trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except Exception:  # the study or its tables do not exist yet
        return {}
    return {t.number: t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE}


def _results(tune_dir: Path) -> dict[str, list[dict]]:
    """Each trial's reported results so far (Tune's result.json, one JSON line per report)."""
    out: dict[str, list[dict]] = {}
    for path in tune_dir.glob("*/result.json"):
        lines = []
        for line in path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written
                break
        out[path.parent.name] = lines
    return out


def _node_of(pid: int, nodes) -> object | None:
    """The simulated node whose raylet started the process ``pid``."""
    try:
        ancestors = {p.pid for p in psutil.Process(pid).parents()}
    except psutil.NoSuchProcess:
        return None
    for node in nodes:
        raylets = node.all_processes.get("raylet", [])
        if raylets and raylets[0].process.pid in ancestors:
            return node
    return None


def _kill_node(cluster, node) -> None:
    """A machine dying: every process the node's raylet started (its workers, the trials on it)
    is killed at the same instant as Ray's own. ``Cluster.remove_node`` alone kills only Ray's
    daemons; a worker then lives on until it notices its raylet is gone, long enough for a fast
    trial to finish its last epochs and report them straight to the driver."""
    raylet = node.all_processes["raylet"][0].process.pid
    for child in psutil.Process(raylet).children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    cluster.remove_node(node, allow_graceful=False)


@pytest.fixture
def three_node_cluster():
    """A head (no CPUs for trials: it runs only Ray's services) and two 1-CPU worker nodes."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": free_port(),
        })
        try:
            workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
            yield cluster, workers
        finally:
            cluster.shutdown()


def test_a_lost_worker_node_moves_its_trial_which_resumes_from_its_checkpoint(three_node_cluster, synthetic_config, synthetic_manifest, tmp_path: Path):
    cluster, workers = three_node_cluster
    out = tmp_path / "shared" / "runs"
    space = tiny_space(synthetic_config, name="nodeloss", output_dir=out, num_samples=3, epochs=EPOCHS,
                       extra_sweep={"max_concurrent_trials": 2, "max_failures": 2})
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(space))
    sweep_dir = out / "nodeloss"
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    env = client_env(RAY_AUTH_MODE="disabled")
    driver = subprocess.Popen(
        [sys.executable, "-m", "harp.cli", "sweep", "--space", str(space_file), "--no-export", "--quiet", f"sweep.ray_address={cluster.address}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )
    removed_at = recovered_at = None
    moved: str | None = None
    finished_before: dict[int, float] = {}
    replacement = None
    try:
        deadline = time.monotonic() + 900
        while driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            results = _results(sweep_dir / "tune")
            if moved is None:
                finished_before = _complete(storage, "nodeloss")
                if not finished_before:
                    continue
                for trial, lines in results.items():
                    epoch = lines[-1].get("epoch", 0) if lines else 0
                    node = _node_of(lines[-1]["pid"], workers) if lines else None
                    if 1 <= epoch < EPOCHS - 1 and node is not None:
                        moved, removed_epoch = trial, epoch
                        _kill_node(cluster, node)  # the node dies: all its processes at once
                        removed_at = time.monotonic()
                        replacement = cluster.add_node(num_cpus=1)  # the autoscaler's replacement
                        break
            elif recovered_at is None:
                lines = results.get(moved, [])
                if any(r.get("iterations_since_restore") == 1 and r.get("epoch", 0) > 1 for r in lines):
                    recovered_at = time.monotonic()
        output = driver.communicate(timeout=60)[0] if driver.poll() is not None else ""
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
            output = driver.stdout.read() if driver.stdout else ""
    assert moved is not None, "no trial was mid-run on a worker node once another had finished:\n" + output[-3000:]
    assert replacement is not None
    assert driver.returncode == 0, output[-4000:]

    done = _complete(storage, "nodeloss")
    assert len(done) == 3, done
    assert all(done[n] == v for n, v in finished_before.items())  # finished trials kept as they were
    assert _studies(storage) == ["nodeloss"]
    lines = _results(sweep_dir / "tune")[moved]
    epochs = [r["epoch"] for r in lines]
    restarts = [r for r in lines if r.get("iterations_since_restore") == 1]
    assert len(restarts) == 2, epochs  # its first epoch, and the first report after the move
    # resumed from its newest checkpoint on the shared storage, not rerun: after the move it reports only epochs past the
    # last one reported before (one finished just before the node died may be newer than that report)
    assert restarts[1]["epoch"] > removed_epoch >= 1, epochs
    assert max(epochs) == EPOCHS
    reran = sum(1 for r in restarts[1:] if r["epoch"] == 1)
    print(f"\nFAULT | worker node removed mid-trial (epoch {removed_epoch}/{EPOCHS}) | Tune retried the trial on the replacement node "
          f"from its checkpoint (epoch {restarts[1]['epoch']}) | kept {len(finished_before)} / lost 0 | rerun {reran} | "
          f"{recovered_at - removed_at:.1f} s to the moved trial's next epoch")


@NEEDS_RESUME_FLAG
def test_a_killed_job_driver_is_resubmitted_and_its_sweep_continues(ray_head, synthetic_config, synthetic_manifest, tmp_path: Path):
    from harp.cluster.jobs import connect

    out = tmp_path / "shared" / "runs"
    spec = write_job_dir(tmp_path / "work", tiny_space(synthetic_config, name="driverkill", output_dir=out, num_samples=3, epochs=3))
    env = client_env(HOME=str(tmp_path), RAY_AUTH_MODE="disabled")
    first = harp("submit", str(spec), "--address", ray_head.address, env=env)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.split("submitted job ", 1)[1].split()[0]
    resubmit = first.stdout.split("continue after a failure (the same sweep resumes): ", 1)[1].split(" --address")[0]
    storage = f"sqlite:///{out / 'driverkill' / 'optuna.db'}"

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path))
        patch.setenv("RAY_AUTH_MODE", "disabled")
        jobs = connect(ray_head.address)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # kill once a trial has finished and the next one has a checkpoint
            assert str(jobs.info(job_id).status) in ("PENDING", "RUNNING"), jobs.logs(job_id)[-3000:]
            finished = _complete(storage, "driverkill")
            mid_run = [lines for lines in _results(out / "driverkill" / "tune").values() if lines and 1 <= lines[-1].get("epoch", 0) < 3]
            if finished and mid_run:
                break
            time.sleep(0.3)
        done_before = _complete(storage, "driverkill")
        assert 1 <= len(done_before) < 3
        driver_pid = int(jobs.info(job_id).driver_info.pid)
        os.kill(driver_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while str(jobs.info(job_id).status) not in ("FAILED", "STOPPED", "SUCCEEDED"):
            time.sleep(0.5)
        assert str(jobs.info(job_id).status) == "FAILED"

    words = resubmit.split()
    again = harp(*words[1:], "--address", ray_head.address, "--follow", env=env, timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    recovered = time.monotonic() - killed_at
    done_after = _complete(storage, "driverkill")
    assert len(done_after) == 3
    assert all(done_after[n] == v for n, v in done_before.items())
    assert _studies(storage) == ["driverkill"]
    trials = optuna.load_study(study_name="driverkill", storage=storage).get_trials(deepcopy=False)
    results = _results(out / "driverkill" / "tune")
    starts = {tid: [r["epoch"] for r in lines if r.get("iterations_since_restore") == 1] for tid, lines in results.items()}
    finished_ids = {t.user_attrs.get("tune_trial_id") for t in trials if t.number in done_before}
    # A trial Optuna saw finish after Tune's last experiment snapshot is resumed by Tune from its newest checkpoint and runs
    # its last epoch again: never from epoch 1, and its Optuna value stays the one it finished with (checked above).
    again = {tid: e for tid, e in starts.items() if any(f and f in tid for f in finished_ids) and len(e) > 1}
    assert all(e[-1] > 1 for e in again.values()), again
    restarted = {tid: e for tid, e in starts.items() if len(e) > 1}  # resumed from a checkpoint inside their own trial
    tune_trials = [p for p in (out / "driverkill" / "tune").iterdir() if p.is_dir()]
    states = sorted(str(t.state).split(".")[-1] for t in trials)
    print(f"\nFAULT | sweep driver (Ray Job) SIGKILLed mid-sweep | job resubmitted, --resume-if-exists restored the sweep "
          f"(Optuna trials: {', '.join(states)}) | kept {len(done_before)} / lost 0 | Tune trials run {len(tune_trials)} for 3 planned, "
          f"resumed from a checkpoint {len(restarted)} (finished ones among them: {len(again)}, their last epoch rerun) | "
          f"{recovered:.1f}s from the kill to the resubmitted sweep's end")
