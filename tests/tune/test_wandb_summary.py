"""The study's read-outs the summary run and the report share, on real Optuna studies (SQLite):
parameter importances over COMPLETE and PRUNED trials, and a multi-objective sweep's summary run
with its Pareto front, read back from the offline .wandb file."""
from __future__ import annotations

import json
import logging
import math

import optuna
import pandas as pd
import pytest

from harp.config import load_config
from harp.tune.results import param_importances, pareto_trials
from harp.tune.space import parse_space
from harp.tune.sweep_dir import SweepPaths, write_sweep_files

from .wandb_reader import read_offline_run

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _lr_decides(trial: optuna.Trial) -> float:
    """val_top1 is decided by the learning rate; the dropout is noise. Bad rates are pruned at
    epoch 1, as ASHA would."""
    lr = trial.suggest_float("optim.lr", 1e-4, 1e-1, log=True)
    trial.suggest_float("model.dropout", 0.0, 0.5)
    score = 1.0 - abs(math.log10(lr) + 2) / 2  # best at 0.01
    trial.report(score * 0.5, step=1)
    if score < 0.5:
        raise optuna.TrialPruned()
    return score


def test_importances_count_pruned_trials_and_find_what_matters():
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(_lr_decides, n_trials=30)
    states = [t.state.name for t in study.trials]
    assert states.count("PRUNED") >= 5 and states.count("COMPLETE") >= 5
    scores, how = param_importances(study)
    assert f"{len(study.trials)} trials" in how and "PRUNED" in how
    assert set(scores) == {"optim.lr", "model.dropout"} and scores["optim.lr"] > scores["model.dropout"]
    assert sum(scores.values()) == pytest.approx(1.0)
    few = optuna.create_study(direction="maximize")
    few.optimize(_lr_decides, n_trials=2)
    assert param_importances(few) == ({}, pytest.approx(param_importances(few)[1])) and "needs at least 4" in param_importances(few)[1]


def test_a_multi_objective_summary_run_carries_the_pareto_front(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="harp")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    from harp.tune.wandb_logging import log_summary

    cfg = load_config([f"sweep.output_dir={tmp_path}", "sweep.name=mo", "sweep.objectives=[gflops:min]", "wandb.mode=offline"])
    space = parse_space({"params": {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}}, name="mo")
    paths = SweepPaths(tmp_path / "mo")
    write_sweep_files(cfg, space, paths, {"params": {}})
    study = optuna.create_study(study_name="mo", storage=f"sqlite:///{paths.optuna_db}", directions=["maximize", "minimize"])
    points = [(0.9, 4.0), (0.8, 1.0), (0.7, 2.0), (0.95, 9.0), (0.5, 0.5)]  # (0.7, 2.0) is dominated by (0.8, 1.0)
    for i, values in enumerate(points):
        trial = study.ask()
        trial.suggest_float("optim.lr", 1e-4, 1e-1, log=True)
        trial.set_user_attr("tune_trial_id", f"t{i}")
        study.tell(trial, list(values))
    front = {t.user_attrs["tune_trial_id"] for t in pareto_trials(study)}
    assert front == {"t0", "t1", "t3", "t4"}
    paths.best.mkdir()
    (paths.best / "metrics.json").write_text(json.dumps({"test": {"confusion_matrix": [[3, 1], [0, 4]], "per_class_accuracy": {"a": 0.75, "b": 1.0}}}))
    trials = pd.DataFrame({"trial_id": [f"t{i}" for i in range(5)], "epoch": [[1, 2]] * 5})
    run_id = log_summary(sweep_name="mo", project="harp-test", entity=None, mode="offline", directory=paths.root, trials=trials, best={"trial_id": "t3"})
    assert run_id == "mo-summary"
    run = read_offline_run(next(paths.wandb.glob("offline-run-*-mo-summary")))
    assert "importance_method" in run["summary"], f"the summary run read no study: {caplog.text[-3000:]}"
    assert run["summary"]["pareto_front/nrows"] == 4 and run["summary"]["trials/nrows"] == 5
    assert run["summary"]["best/test_confusion_matrix"] == [[3, 1], [0, 4]]
    table = json.loads((next(paths.wandb.glob("offline-run-*-mo-summary")) / "files" / run["summary"]["pareto_front/path"]).read_text())
    assert table["columns"][:4] == ["number", "trial_id", "val_top1", "gflops"]
    assert {row[1] for row in table["data"]} == front
