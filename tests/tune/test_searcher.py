"""The Optuna ask/tell searcher under real Ray Tune + real ASHA, with plain function trainables:
ASHA-stopped trials are PRUNED with their per-epoch values, finished ones COMPLETE, errors FAIL;
grid and multi-objective (NSGA-II) studies; the study survives a pickle round trip (Tuner.restore)."""
from __future__ import annotations

import pickle
import sys

import optuna
import pytest
import ray.cloudpickle
from ray import tune

from harp.tune.searcher import HarpOptunaSearch, Objective, parse_objectives
from harp.tune.space import parse_space
from harp.tune.study import OPTUNA_SAMPLERS
from harp.tune.tuner import build_trial_scheduler

pytestmark = pytest.mark.slow

SPACE = parse_space(
    {
        "params": {
            "optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
            "optim.name": {"type": "categorical", "values": ["sgd", "adam"]},
            "optim.momentum": {"type": "uniform", "low": 0.5, "high": 0.99, "when": {"optim.name": "sgd"}},
        }
    },
    name="unit",
)
EPOCHS = 4
# Ray workers cannot import this test module: ship its trainables by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def curve(config):
    """Good configs (lr > 1e-2) climb; the others stay low. Reports harp's own `epoch`."""
    if config["optim.lr"] < 2e-4:
        raise RuntimeError("this trial fails on purpose")
    good = config["optim.lr"] > 1e-2
    for epoch in range(1, EPOCHS + 1):
        tune.report({"epoch": epoch, "val_top1": (0.5 + 0.1 * epoch) if good else 0.02 * epoch, "gflops": config["optim.lr"] * 100})


def _fit(searcher, tmp_path, *, scheduler, num_samples):
    tuner = tune.Tuner(
        curve,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="tune", verbose=0, failure_config=tune.FailureConfig(max_failures=0)),
    )
    return tuner.fit()


def test_asha_stopped_trials_are_pruned_with_their_epochs(ray_local, tmp_path):
    from harp.config import load_config

    cfg = load_config(["sweep.grace_period=1", "sweep.reduction_factor=2"])
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = HarpOptunaSearch(SPACE, objectives=[Objective("val_top1", "max")], storage_url=url, study_name="asha",
                                sampler="random", seed=3, num_samples=8, planned_epochs=EPOCHS)
    results = _fit(searcher, tmp_path, scheduler=build_trial_scheduler(cfg, EPOCHS), num_samples=8)
    assert len(results) == 8
    study = optuna.load_study(study_name="asha", storage=url)
    states = {t.state.name for t in study.trials}
    assert {"COMPLETE", "PRUNED"} <= states, states
    tune_epochs = {r.metrics.get("trial_id"): r.metrics.get("epoch") for r in results if r.error is None}
    for t in study.trials:
        steps = sorted(t.intermediate_values)
        if t.state.name == "PRUNED":
            assert steps and steps[-1] < EPOCHS  # told the truth: stopped early, with its epochs
            assert steps == list(range(1, len(steps) + 1))
            assert t.value == t.intermediate_values[steps[-1]]
            assert t.user_attrs["stop_reason"].startswith("pruned at epoch")
            assert tune_epochs[t.user_attrs["tune_trial_id"]] == steps[-1]
        elif t.state.name == "COMPLETE":
            assert steps == list(range(1, EPOCHS + 1))
            assert t.value == max(t.intermediate_values.values())
        else:
            assert t.state.name == "FAIL" and t.params["optim.lr"] < 2e-4
        assert ("optim.momentum" in t.params) == (t.params["optim.name"] == "sgd")
    # the bad ones were the ones stopped
    for t in study.trials:
        if t.state.name == "PRUNED":
            assert t.params["optim.lr"] <= 1e-2


def test_grid_and_multi_objective(ray_local, tmp_path):
    grid = parse_space({"params": {"optim.lr": {"type": "grid", "values": [0.02, 0.001]},
                                   "optim.name": {"type": "grid", "values": ["sgd", "adam"]},
                                   "optim.momentum": {"type": "grid", "values": [0.9], "when": {"optim.name": "sgd"}}}}, name="g")
    url = f"sqlite:///{tmp_path}/optuna.db"
    objectives = parse_objectives("val_top1", "max", ["gflops:min"])
    searcher = HarpOptunaSearch(grid, objectives=objectives, storage_url=url, study_name="grid-mo",
                                sampler="grid", num_samples=4, planned_epochs=EPOCHS)
    results = _fit(searcher, tmp_path, scheduler=None, num_samples=20)  # the grid ends the sweep, not num_samples
    assert len(results) == 4
    study = optuna.load_study(study_name="grid-mo", storage=url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    combos = {(t.params["optim.lr"], t.params["optim.name"]) for t in study.trials}
    assert len(combos) == 4
    for t in study.trials:
        assert t.state.name == "COMPLETE"
        assert t.values[1] == pytest.approx(t.params["optim.lr"] * 100)
    assert study.best_trials  # a Pareto front exists

    nsga = HarpOptunaSearch(SPACE, objectives=objectives, storage_url=url, study_name="nsga", sampler="nsga2", num_samples=2, planned_epochs=EPOCHS)
    _fit(nsga, tmp_path / "n", scheduler=None, num_samples=2)
    assert len(optuna.load_study(study_name="nsga", storage=url).directions) == 2


def test_searcher_pickles_without_engines_and_continues_the_same_study(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = HarpOptunaSearch(SPACE, objectives=[Objective("val_top1", "max")], storage_url=url, study_name="resume", num_samples=4, planned_epochs=4)
    first = searcher.suggest("t1")
    searcher.on_trial_result("t1", {"epoch": 1, "val_top1": 0.3})
    clone = pickle.loads(pickle.dumps(searcher))
    assert clone._study is None
    clone.on_trial_result("t1", {"epoch": 2, "val_top1": 0.4})
    clone.on_trial_complete("t1", {"epoch": 2, "val_top1": 0.4})
    clone.suggest("t2")
    study = optuna.load_study(study_name="resume", storage=url)
    assert len(study.trials) == 2
    done = study.trials[0]
    assert done.params == {k: v for k, v in first.items()}
    assert done.intermediate_values == {1: 0.3, 2: 0.4}
    assert done.state.name == "PRUNED" and done.value == 0.4  # stopped at epoch 2 of 4


@pytest.mark.parametrize("sampler", [name for name in OPTUNA_SAMPLERS if name != "grid"])  # grid is RandomSampler over enqueued points
def test_every_sampler_survives_tunes_saves(tmp_path, sampler):
    """Tune pickles the searcher, its sampler included, into the experiment state every few
    seconds and unpickles it on restore: NSGA-II's thread lock made that fail mid-sweep."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    objectives = parse_objectives("val_top1", "max", ["gflops:min"] if sampler == "nsga2" else [])

    def searcher():
        return HarpOptunaSearch(SPACE, objectives=objectives, storage_url=url, study_name=sampler, sampler=sampler, seed=0,
                                num_samples=8, planned_epochs=1)

    first = searcher()
    for i in range(5):  # past the samplers' random start-up, so their caches and generations are in use
        config = first.suggest(f"t{i}")
        first.on_trial_complete(f"t{i}", {"epoch": 1, "val_top1": 0.1 * i, "gflops": config["optim.lr"] * 100})
    first.save(str(tmp_path / "searcher.pkl"))
    restored = searcher()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("t5") is not None
    trials = optuna.load_study(study_name=sampler, storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5 + ["RUNNING"]


def test_a_restored_searcher_fails_the_trials_a_dead_driver_left_running(tmp_path):
    """Tune saves the searcher every few seconds; a trial asked for after the last save and then
    orphaned by a killed driver must not stay RUNNING in the study forever."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = HarpOptunaSearch(SPACE, objectives=[Objective("val_top1", "max")], storage_url=url, study_name="orphans",
                                sampler="random", seed=0, num_samples=4, planned_epochs=EPOCHS)
    assert searcher.suggest("known") is not None
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's last snapshot before the kill
    assert searcher.suggest("orphan") is not None  # asked after it: the restored driver never hears of it
    restored = HarpOptunaSearch(SPACE, objectives=[Objective("val_top1", "max")], storage_url=url, study_name="orphans",
                                sampler="random", seed=0, num_samples=4, planned_epochs=EPOCHS)
    restored.restore(str(tmp_path / "searcher.pkl"))
    states = {t.user_attrs["tune_trial_id"]: t for t in optuna.load_study(study_name="orphans", storage=url).trials}
    assert states["orphan"].state == optuna.trial.TrialState.FAIL
    assert "driver died" in states["orphan"].user_attrs["stop_reason"]
    assert states["known"].state == optuna.trial.TrialState.RUNNING, "a trial Tune will resume stays RUNNING"
