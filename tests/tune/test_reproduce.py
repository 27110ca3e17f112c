"""The exported config retrains the same model, not a near one: a 1-CPU sweep trial and a retrain
of its export in a process whose default thread count differs give identical per-epoch validation
metrics; a retrain with another setting says so instead of staying silent."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from harp.train.reproduce import RunEnvironment, compare_histories, describe_drift
from harp.tune.space import base_config, parse_space
from harp.tune.tuner import run_sweep

EPOCHS = 3


def test_compare_histories_puts_epochs_side_by_side_and_finds_the_largest_gap():
    trial = [{"epoch": 1, "val_loss": 1.0, "val_top1": 0.5, "val_top5": 1.0}, {"epoch": 2, "val_loss": 0.8, "val_top1": 0.6, "val_top5": 1.0}]
    same, worst = compare_histories(trial, trial)
    assert worst == 0.0 and "0.8000" in same
    _, worst = compare_histories(trial, [{**trial[0]}, {**trial[1], "val_top1": 0.75}])
    assert worst == pytest.approx(0.15)


def test_environment_drift_is_one_line_naming_what_differs():
    a = RunEnvironment(harp="0.1.0", torch="2.13.0", device="cpu", threads=1, deterministic=False)
    assert describe_drift(a, a) is None
    line = describe_drift(a, RunEnvironment(harp="0.1.0", torch="2.13.0", device="cpu", threads=4, deterministic=False))
    assert line is not None and "threads 1 -> 4" in line and "\n" not in line


@pytest.fixture(scope="module")
def exported(ray_local, synthetic_config, tmp_path_factory):
    from harp.config.load import to_dict
    from harp.export import export_sweep

    out = tmp_path_factory.mktemp("reproduce")
    space = parse_space(
        {
            "config": {
                "data": to_dict(synthetic_config)["data"],
                "train.epochs": EPOCHS,
                "train.batch_size": 4,
                "optim.schedule": "cosine",
                "wandb.mode": "disabled",
            },
            "sweep": {"name": "reproduce", "output_dir": str(out), "searcher": "grid", "scheduler": "none",
                      "cpus_per_trial": 1, "max_concurrent_trials": 1, "max_failures": 0},
            "params": {"optim.lr": {"type": "grid", "values": [3e-3]}},
        },
        name="reproduce",
    )
    outcome = run_sweep(base_config(space), space, verbose=0)
    export_sweep(outcome.paths.root, evaluate=False, wandb_summary=False)
    return outcome.paths.best, out


def _retrain(best, out, *extra: str, threads: str = "2") -> tuple[str, list[dict]]:
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    run = subprocess.run(
        [sys.executable, "-m", "harp.cli", "train", "--config", str(best / "config.yaml"), "--name", f"retrain{len(extra)}",
         f"train.output_dir={out}", *extra],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    history = [json.loads(line) for line in (out / f"retrain{len(extra)}" / "history.jsonl").read_text().splitlines()]
    return run.stdout, history


@pytest.mark.slow
def test_a_retrain_in_a_process_with_other_threads_reproduces_the_trial_epoch_for_epoch(exported):
    best, out = exported
    trial = json.loads((best / "history.json").read_text())
    recorded = json.loads((best / "environment.json").read_text())
    assert recorded["threads"] == 1, "a 1-CPU trial trains with one thread, and says so"
    assert [row["epoch"] for row in trial] == list(range(1, len(trial) + 1)), "every epoch up to the exported checkpoint"
    stdout, history = _retrain(best, out)
    assert len(history) == EPOCHS
    for old in trial:
        new = history[old["epoch"] - 1]
        for key in ("val_loss", "val_top1", "val_top5", "train_loss"):
            assert new[key] == old[key], (key, old, new)
    assert "reproducing the exported run" in stdout
    assert re.search(r"max \|difference\| over epochs: 0 \(reproduced exactly\)", stdout), stdout[-2000:]


@pytest.mark.slow
def test_a_retrain_with_another_thread_count_says_it_will_differ(exported):
    best, out = exported
    stdout, _ = _retrain(best, out, "train.threads=2")
    notes = [line for line in stdout.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "threads 1 -> 2" in notes[0], stdout[-2000:]
    assert "max |difference| over epochs" in stdout
