"""What a reader of a sweep's Optuna study sees: each config key once under its own name (a key of
several alternatives too, each value inside the alternative that applies), the objectives by name,
importances over the one name, and ``study.best_params`` that `harp config` and `harp train` take
as overrides. Real Optuna (in memory and SQLite), real `harp` processes."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from harp.errors import ConfigError
from harp.tune.results import param_importances
from harp.tune.searcher import HarpOptunaSearch, Objective
from harp.tune.space import load_space, parse_space
from harp.tune.study import make_sampler

REPO = Path(__file__).resolve().parents[2]
DEFAULT = load_space(REPO / "search_spaces" / "default.yaml")
LR_RANGES = {"sgd": (1e-2, 1e-1), "adamw": (2e-3, 3e-2)}  # default.yaml's optim.lr alternatives


def _score(params: dict) -> float:
    """sgd with lr near 10**-1.7 is best: only a sampler that learns within sgd's range finds it."""
    return -abs(math.log10(params["optim.lr"]) + 1.7) + (0.3 if params["optim.name"] == "sgd" else 0.0)


def _run(sampler_name: str, n: int, seed: int = 0) -> tuple[optuna.Study, list[dict]]:
    multi = sampler_name == "nsga2"
    sampler = make_sampler(sampler_name, seed=seed, num_samples=n, multi_objective=multi, space=DEFAULT)
    study = optuna.create_study(sampler=sampler, directions=["maximize", "minimize"] if multi else ["maximize"])
    sampled = []
    for _ in range(n):
        trial = study.ask()
        params = DEFAULT.sample(trial)
        sampled.append(params)
        study.tell(trial, [_score(params), params["train.batch_size"]] if multi else _score(params))
    return study, sampled


@pytest.mark.parametrize("sampler_name", ["tpe", "random", "cmaes", "nsga2"])
def test_a_key_of_several_alternatives_is_one_parameter_sampled_in_the_range_that_applies(sampler_name):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, sampled = _run(sampler_name, 40)
    union = optuna.distributions.FloatDistribution(2e-3, 1e-1, log=True)
    for trial, params in zip(study.trials, sampled):
        assert set(trial.params) == set(params)  # config keys, nothing like optim.lr#1
        low, high = LR_RANGES[params["optim.name"]]
        assert low <= params["optim.lr"] <= high, params
        assert trial.distributions["optim.lr"] == union
    assert {p["optim.name"] for p in sampled} == {"sgd", "adamw"}


def test_tpe_learns_inside_the_alternative_that_applies():
    """After its random start-up, TPE proposes sgd learning rates near the optimum far more often
    than chance (sgd, and within 0.15 decades of 10**-1.7: 0.5 x 0.3 = 15 % at random)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, sampled = _run("tpe", 60)
    later = sampled[12:]
    near = [p["optim.name"] == "sgd" and abs(math.log10(p["optim.lr"]) + 1.7) < 0.15 for p in later]
    assert sum(near) / len(near) > 0.35, sum(near) / len(near)


def test_categorical_and_int_alternatives_keep_to_their_own_values():
    space = parse_space(
        {
            "params": {
                "model.family": {"type": "categorical", "values": ["tsm", "tea", "tsn"]},
                "model.pretrained": [
                    {"type": "categorical", "values": ["imagenet", "none"], "when": {"model.family": ["tsm", "tsn"]}},
                    {"type": "categorical", "values": ["res2net50"], "when": {"model.family": "tea"}},
                ],
                "train.batch_size": [
                    {"type": "int", "low": 2, "high": 8, "step": 2, "when": {"model.family": "tsm"}},
                    {"type": "int", "low": 3, "high": 9, "step": 3, "when": {"model.family": ["tea", "tsn"]}},
                ],
            }
        },
        name="alts",
    )
    assert space.distribution("model.pretrained") == optuna.distributions.CategoricalDistribution(["imagenet", "none", "res2net50"])
    assert space.distribution("train.batch_size") == optuna.distributions.IntDistribution(2, 9, step=1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler("tpe", seed=1, num_samples=40, multi_objective=False, space=space))
    for _ in range(40):
        trial = study.ask()
        params = space.sample(trial)
        if params["model.family"] == "tea":
            assert params["model.pretrained"] == "res2net50" and params["train.batch_size"] in (3, 6, 9)
        elif params["model.family"] == "tsm":
            assert params["model.pretrained"] in ("imagenet", "none") and params["train.batch_size"] in (2, 4, 6, 8)
        else:
            assert params["model.pretrained"] in ("imagenet", "none") and params["train.batch_size"] in (3, 6, 9)
        study.tell(trial, params["train.batch_size"] + (params["model.pretrained"] == "none"))
    assert set(study.trials[0].params) <= {"model.family", "model.pretrained", "train.batch_size"}


def test_a_plain_sampler_that_leaves_the_range_is_an_error_not_a_wrong_config():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.raises(ValueError, match="make_sampler"):
        for _ in range(30):  # the union range: sooner or later an sgd lr below 1e-2, or an adamw one above 3e-2
            DEFAULT.sample(study.ask())


def test_alternatives_of_different_kinds_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"params\.optim\.lr: its alternatives are loguniform, uniform; make them one kind"):
        parse_space(
            {
                "params": {
                    "optim.name": {"type": "categorical", "values": ["sgd", "adamw"]},
                    "optim.lr": [
                        {"type": "loguniform", "low": 1e-2, "high": 1e-1, "when": {"optim.name": "sgd"}},
                        {"type": "uniform", "low": 1e-3, "high": 1e-2, "when": {"optim.name": "adamw"}},
                    ],
                }
            },
            name="mixed",
        )


def test_importance_names_each_key_once():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, _ = _run("random", 30)
    scores, how = param_importances(study)
    assert "optim.lr" in scores and not any("#" in name for name in scores), scores
    assert max(scores, key=lambda k: scores[k]) == "optim.lr", scores  # the score depends on it most
    assert how.startswith("PED-ANOVA over COMPLETE and PRUNED")


def test_the_searcher_names_the_objectives_and_lists_the_alternatives(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = HarpOptunaSearch(DEFAULT, objectives=[Objective("val_top1", "max"), Objective("gflops", "min")], storage_url=url,
                                study_name="names", sampler="nsga2", seed=0, num_samples=4, planned_epochs=12)
    params = searcher.suggest("t1")
    study = optuna.load_study(study_name="names", storage=url)
    assert study.metric_names == ["val_top1", "gflops"]
    ranges = {"sgd": "loguniform [0.01, 0.1] when optim.name=sgd", "adamw": "loguniform [0.002, 0.03] when optim.name=adamw"}
    assert study.user_attrs["alternatives"] == {"optim.lr": [ranges["sgd"], ranges["adamw"]]}
    trial = study.trials[0]
    assert set(trial.params) == set(params)
    assert trial.user_attrs["ranges"] == {"optim.lr": ranges[params["optim.name"]]}


def _harp(*args: str, code: int = 0) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "harp.cli", *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == code, run.stderr
    return run


def test_best_params_round_trip_into_harp_config_and_harp_train():
    """`study.best_params` as `key=value` overrides give the best trial's values in `harp config`
    and in `harp train --cfg job` (the config a retrain would run). An entry of an open mapping
    (``model.options.fold_div``, TSM's) takes Hydra's ``+key=value``; spelt plainly it is one line
    that says so."""
    from harp.config.keys import open_mapping_of

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, _ = _run("tpe", 24)
    best = study.best_params
    assert "optim.lr" in best and "optim.momentum" in best  # the best is sgd: its lr and momentum
    assert "model.options.fold_div" in best  # a TSM trial: the open-mapping case is covered too
    overrides = [("+" if open_mapping_of(key) else "") + f"{key}={value}" for key, value in best.items()]
    for command in (["config"], ["train", "--cfg", "job"]):
        resolved = yaml.safe_load(_harp(*command, *overrides).stdout)
        for key, value in best.items():
            node = resolved
            for part in key.split("."):
                node = node[part]
            assert node == value, (key, node, value)
    refused = _harp("config", *[o.lstrip("+") for o in overrides], code=2)
    assert refused.stderr.strip().splitlines() == [
        "harp config: error: 'model.options' is a mapping: add the new key with a plus, +model.options.fold_div=VALUE"]
