"""Errors are errors: a trial that cannot work (an unreadable pretrained file) fails once, as
ERROR/FAIL with its cause in one line; a trial whose worker is killed is retried from its
checkpoint and finishes. One real sweep (grid: the good trial, then the bad one) on real Ray."""
from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest

from waiting import tune_trial_process

from .conftest import checkpoints, trial_dirs, wait_for

pytestmark = pytest.mark.slow

EPOCHS = 3


@pytest.fixture(scope="module")
def failed(synthetic_config, synthetic_manifest, tmp_path_factory):
    from harp.config.load import to_dict
    from harp.tune.ray_session import ray_session
    from harp.tune.space import base_config, parse_space
    from harp.tune.tuner import run_sweep

    tmp = tmp_path_factory.mktemp("failures")
    bad = tmp / "bad.pth"
    bad.write_bytes(b"not a state dict" * 64)
    space = parse_space(
        {
            "config": {
                "data": to_dict(synthetic_config)["data"],
                "train.epochs": EPOCHS,
                # one clip per step, every training clip an epoch: epochs of about a second (not a
                # fifth), so the kill lands inside the first trial, after its first checkpoint
                "train.batch_size": 1,
                "train.max_steps_per_epoch": 64,
                "optim.name": "adamw",
                "optim.schedule": "none",
                "wandb.mode": "disabled",
            },
            "sweep": {"name": "failures", "output_dir": str(tmp / "runs"), "searcher": "grid", "scheduler": "none",
                      "max_concurrent_trials": 1, "cpus_per_trial": 1, "max_failures": 2},
            "params": {"model.pretrained": {"type": "grid", "values": ["none", f"file:{bad}"]}},
        },
        name="failures",
    )
    sweep_dir = tmp / "runs" / "failures"
    killed: list[int] = []

    def kill_the_first_trials_worker() -> None:
        """SIGKILL the process running the first trial once it has a checkpoint (a crash)."""
        trial = wait_for(lambda: next((d for d in trial_dirs(sweep_dir) if checkpoints(d)), None), timeout=300, what="a checkpoint")
        assert trial is not None
        worker = wait_for(tune_trial_process, timeout=60, what="the trial's worker")
        worker.kill()
        killed.append(worker.pid)

    killer = threading.Thread(target=kill_the_first_trials_worker, daemon=True)
    with ray_session(base_config(space), num_cpus=2, num_gpus=0):
        killer.start()
        outcome = run_sweep(base_config(space), space, verbose=0)
    killer.join(timeout=5)
    return outcome, killed


def _failures(trial_dir: Path) -> list[str]:
    error_file = trial_dir / "error.txt"
    return [line for line in error_file.read_text().splitlines() if line.startswith("Failure #")] if error_file.is_file() else []


def test_a_deterministic_error_fails_once_with_its_cause(failed):
    from harp.tune.results import error_line, load_trials

    outcome, _ = failed
    records = {r.params["model.pretrained"]: r for r in load_trials(outcome.paths.tune)}
    bad = next(r for key, r in records.items() if key != "none")
    assert bad.status == "ERROR"
    assert bad.path is not None and len(_failures(bad.path)) == 1, "a deterministic error was retried"
    assert bad.error is not None and bad.error.startswith("cannot read") and "ray::" not in bad.error, bad.error
    # the sweep summary's line for it: the cause, not Ray's wrapper
    errors = [outcome.results[i].error for i in range(len(outcome.results)) if outcome.results[i].error is not None]
    assert [(error_line(e) or "")[:300] for e in errors] == [bad.error]
    study = optuna.load_study(study_name="failures", storage=f"sqlite:///{outcome.paths.optuna_db}")
    states = {t.user_attrs["tune_trial_id"]: t.state.name for t in study.trials}
    assert states[bad.trial_id] == "FAIL"


def test_a_crashed_trial_is_retried_from_its_checkpoint(failed):
    from harp.tune.results import load_trials

    outcome, killed = failed
    assert killed, "the trial's worker was never killed"
    good = next(r for r in load_trials(outcome.paths.tune) if r.params["model.pretrained"] == "none")
    assert good.status == "TERMINATED" and good.path is not None
    assert len(_failures(good.path)) == 1, "the crash was not recorded"
    epochs = [int(r["epoch"]) for r in good.history]
    # Continued, not restarted: every epoch once, to the end. A kill that lands after an epoch's
    # checkpoint is on disk but before the driver logged that epoch's report has that one row read
    # back from the checkpoints (load_trials), as the retry resumes after the checkpoint.
    assert epochs == list(range(1, EPOCHS + 1)), epochs
    study = optuna.load_study(study_name="failures", storage=f"sqlite:///{outcome.paths.optuna_db}")
    assert {t.user_attrs["tune_trial_id"]: t.state.name for t in study.trials}[good.trial_id] == "COMPLETE"
