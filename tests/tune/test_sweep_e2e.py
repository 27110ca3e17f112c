"""One real sweep end to end: real Ray (local, dashboard), real Optuna (SQLite), W&B offline,
tiny synthetic videos. A 1-worker trial runs in-process, a 2-worker trial runs a TorchTrainer
(DDP over gloo), a hopeless trial is stopped by ASHA and told to Optuna as PRUNED; export writes
best/ and trials.parquet; the exported config retrains to the same metrics."""
from __future__ import annotations

import json
import math

import optuna
import pandas as pd
import pytest

from harp.tune.space import base_config, parse_space
from harp.tune.tuner import run_sweep

from .wandb_reader import read_offline_run

pytestmark = pytest.mark.slow

EPOCHS = 2
GOOD_LR, BAD_LR = 3e-3, 1e-6


@pytest.fixture(scope="module")
def sweep(ray_local, synthetic_config, synthetic_manifest, tmp_path_factory):
    from harp.config.load import to_dict

    out = tmp_path_factory.mktemp("sweeps")
    space = parse_space(
        {
            "config": {
                "data": to_dict(synthetic_config)["data"],  # the shared tiny synthetic set
                "train.epochs": EPOCHS,
                "train.batch_size": 4,
                "optim.name": "adamw",
                "optim.schedule": "none",
                "eval.num_clips": 2,
                "wandb.mode": "offline",
            },
            "sweep": {
                "name": "e2e",
                "output_dir": str(out),
                "searcher": "grid",
                "scheduler": "asha",
                "grace_period": 1,
                "reduction_factor": 2,
                "metric": "val_loss",
                "mode": "min",
                "max_concurrent_trials": 1,
                "max_failures": 0,
            },
            # grid order: (good, 1 worker), (good, 2 workers), (bad): ASHA has seen two good
            # trials at its epoch-1 rung when the bad one gets there
            "params": {
                "optim.lr": {"type": "grid", "values": [GOOD_LR, BAD_LR]},
                "train.num_workers": {"type": "grid", "values": [1, 2], "when": {"optim.lr": GOOD_LR}},
            },
        },
        name="e2e",
    )
    cfg = base_config(space)
    outcome = run_sweep(cfg, space, verbose=0)
    from harp.export import export_sweep

    summary = export_sweep(outcome.paths.root)
    return cfg, outcome, summary


def test_every_trial_ran_and_the_bad_one_was_pruned(sweep):
    cfg, outcome, _ = sweep
    results = list(outcome.results)
    assert len(results) == 3 and all(r.error is None for r in results)
    frame = pd.read_parquet(outcome.paths.trials)
    assert len(frame) == 3
    bad = frame[frame["param.optim.lr"] == BAD_LR].iloc[0]
    assert bad["epochs_done"] == 1 and bad["stop_reason"].startswith("pruned at epoch 1/2"), bad["stop_reason"]
    assert bad["optuna_state"] == "PRUNED"
    good = frame[frame["param.optim.lr"] == GOOD_LR]
    assert sorted(good["train_workers"]) == [1, 2]
    assert (good["epochs_done"] == EPOCHS).all() and (good["optuna_state"] == "COMPLETE").all()
    # conditional parameter: num_workers only where lr is the good one
    assert bad["param.train.num_workers"] is None or (isinstance(bad["param.train.num_workers"], float) and math.isnan(bad["param.train.num_workers"]))
    for _, row in frame.iterrows():
        assert list(row["epoch"]) == list(range(1, row["epochs_done"] + 1))
        assert all(v is not None and math.isfinite(v) for v in row["val_loss"])
    # the 2-worker trial really ran a Train run (DDP) with its own checkpoints
    two = good[good["train_workers"] == 2].iloc[0]
    assert (outcome.paths.train_runs / two["trial_id"]).is_dir()


def test_optuna_study_holds_the_reported_metrics(sweep):
    cfg, outcome, _ = sweep
    assert outcome.paths.optuna_db.is_file()
    study = optuna.load_study(study_name=cfg.sweep.name, storage=f"sqlite:///{outcome.paths.optuna_db}")
    frame = pd.read_parquet(outcome.paths.trials).set_index("trial_id")
    assert len(study.trials) == 3
    for t in study.trials:
        row = frame.loc[t.user_attrs["tune_trial_id"]]
        reported = dict(zip(row["epoch"], row["val_loss"]))
        assert t.intermediate_values == pytest.approx(reported)
        if t.state.name == "COMPLETE":
            assert t.value == pytest.approx(min(reported.values()))
        assert ("train.num_workers" in t.params) == (t.params["optim.lr"] == GOOD_LR)


def test_wandb_offline_runs_hold_the_reported_metrics(sweep):
    cfg, outcome, _ = sweep
    runs = sorted(outcome.paths.wandb.glob("offline-run-*"))
    frame = pd.read_parquet(outcome.paths.trials).set_index("trial_id")
    per_trial = {p.name.rsplit("-", 1)[-1]: p for p in runs if not p.name.endswith("summary")}
    assert set(frame.index) <= set(per_trial), (list(per_trial), list(frame.index))
    for trial_id, row in frame.iterrows():
        logged = read_offline_run(per_trial[trial_id])
        epochs = {h["epoch"]: h for h in logged["history"] if "epoch" in h}
        assert sorted(epochs) == list(row["epoch"])
        for epoch, value in zip(row["epoch"], row["val_loss"]):
            assert epochs[epoch]["val_loss"] == pytest.approx(value)
        if row["optuna_state"] == "COMPLETE":
            assert logged["summary"].get("val_confusion_matrix"), "finished trials log their confusion matrix"
    assert any(p.name.endswith("summary") for p in runs), "the sweep summary run is missing"


def test_export_writes_best_and_it_retrains_to_the_same_metrics(sweep, tmp_path):
    from harp.commands.train import train_local
    from harp.config import load_config

    cfg, outcome, summary = sweep
    best = outcome.paths.best
    for name in ("config.yaml", "model.safetensors", "metrics.json", "confusion.png"):
        assert (best / name).is_file(), name
    metrics = json.loads((best / "metrics.json").read_text())
    frame = pd.read_parquet(outcome.paths.trials).set_index("trial_id")
    assert metrics["trial_id"] == frame["best_val_loss"].idxmin()
    assert metrics["test"]["num_clips"] == 2 and 0.0 <= metrics["test"]["top1"] <= 1.0
    # the best checkpoint, not the last: its epoch is the trial's best epoch
    assert metrics["checkpoint_epoch"] == frame.loc[metrics["trial_id"], "best_epoch"]
    retrained_cfg = load_config([f"train.output_dir={tmp_path}", "train.num_workers=1"], best / "config.yaml")
    assert retrained_cfg.optim.lr == metrics["params"]["optim.lr"]
    out = train_local(retrained_cfg, tmp_path / "retrain", quiet=True)
    history = {int(h["epoch"]): h for h in out["history"]}
    epoch = metrics["checkpoint_epoch"]
    tolerance = 1e-4 if metrics["params"].get("train.num_workers", 1) == 1 else 0.15
    assert history[epoch]["val_loss"] == pytest.approx(metrics["val"]["val_loss"], rel=tolerance)
