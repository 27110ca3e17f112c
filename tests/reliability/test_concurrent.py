"""Two `harp sweep sweep.name=X` started at once (the second with other overrides, as a user in
another shell would): one runs, the other refuses in one line before touching the directory; the
sweep that ran holds all of its own trials and nothing of the other's."""
from __future__ import annotations

import os

import optuna
import pandas as pd
import pytest

from .conftest import finish, harp, start, write_space

pytestmark = pytest.mark.slow


def test_two_sweeps_into_one_directory_give_one_clean_refusal(tiny_data, tmp_path):
    out = tmp_path / "runs"
    space = write_space(tmp_path / "space.yaml", tiny_data, out, "shared", epochs=1, num_samples=2)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    runs = [
        start(harp("sweep", "--space", str(space), "--quiet"), env, logs[0]),
        start(harp("sweep", "--space", str(space), "--quiet", "train.epochs=2"), env, logs[1]),
    ]
    results = [finish(run, log, timeout=400) for run, log in zip(runs, logs)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], [output[-2000:] for _, output in results]
    winner = next(i for i, (code, _) in enumerate(results) if code == 0)
    refused = results[1 - winner][1]
    errors = [line for line in refused.splitlines() if line.startswith("harp sweep: error:")]
    assert len(errors) == 1 and f"is in use by pid {runs[winner].pid}" in errors[0], refused[-2000:]
    assert "harp sweep shared" not in refused, "the refused sweep got as far as starting"
    sweep_dir = out / "shared"
    frame = pd.read_parquet(sweep_dir / "trials.parquet")
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert len(frame) == 2 and len(study.trials) == 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    epochs = 1 if winner == 0 else 2
    assert all(list(e) == list(range(1, epochs + 1)) for e in frame["epoch"]), "trials of the other sweep's config ran"
