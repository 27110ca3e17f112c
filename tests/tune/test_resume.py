"""An interrupted sweep resumes: `harp sweep` is stopped with Ctrl-C after its first trial, then
`harp sweep --resume DIR` finishes the remaining trials in the same Optuna study without rerunning
the finished one. Real processes, real Ray, real Optuna (SQLite)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

pytestmark = pytest.mark.slow

NUM_SAMPLES = 3


def _harp(*args: str) -> list[str]:
    return [sys.executable, "-m", "harp.cli", *args]


def _complete_trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except Exception:  # neither the study nor its tables exist until the sweep creates them
        return []
    return [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_interrupted_sweep_resumes_where_it_stopped(synthetic_config, synthetic_manifest, tmp_path: Path) -> None:
    from harp.config.load import to_dict

    out = tmp_path / "runs"
    space = {
        "config": {
            "data": to_dict(synthetic_config)["data"],
            "train.epochs": 2,
            "train.batch_size": 4,
            "optim.name": "adamw",
            "optim.schedule": "none",
            "wandb.mode": "disabled",
        },
        "sweep": {
            "name": "resume",
            "output_dir": str(out),
            "num_samples": NUM_SAMPLES,
            "searcher": "random",
            "scheduler": "none",
            "max_concurrent_trials": 1,
            "cpus_per_trial": 1,
        },
        "params": {"optim.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}},
    }
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(space))
    sweep_dir = out / "resume"
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    first = subprocess.Popen(
        _harp("sweep", "--space", str(space_file), "--no-export", "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            if (sweep_dir / "optuna.db").exists() and _complete_trials(storage, "resume"):
                break
            time.sleep(1.0)
        assert first.poll() is None, "the sweep ended before it could be interrupted:\n" + (first.stdout.read() if first.stdout else "")
        done_before = _complete_trials(storage, "resume")
        assert 1 <= len(done_before) < NUM_SAMPLES
        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C, as a user would
        first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()

    resumed = subprocess.run(
        _harp("sweep", "--resume", str(sweep_dir), "--no-export", "--quiet"),
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    done_after = _complete_trials(storage, "resume")
    assert len(done_after) == NUM_SAMPLES, [t.state for t in optuna.load_study(study_name="resume", storage=storage).trials]
    # The trials finished before the interruption are kept as they were, not run again.
    before = {t.number: t.value for t in done_before}
    after = {t.number: t.value for t in done_after}
    assert all(after.get(number) == value for number, value in before.items())
    # one study per sweep, and every finished trial trained both epochs
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["resume"]
    assert all(max(t.intermediate_values) == 2 for t in done_after), [t.intermediate_values for t in done_after]
