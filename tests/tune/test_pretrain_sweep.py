"""A real `harp sweep` (its own process, real Ray, Optuna on SQLite, W&B offline) over
``model.pretrained: [none, synthetic-src]`` on an empty weights cache:

- the sweep builds the missing ``synthetic-src`` itself, once, before its trials start, into the
  torch weights cache; a second sweep finds it cached;
- trials.parquet, the Optuna study and each W&B run hold the source of each trial like any other
  parameter, and the trial that used it says in its console (W&B's output.log) which tensors it
  loaded and which head tensors it replaced; the ``none`` trial loaded nothing;
- the exported best config names the best trial's source, and a config with ``synthetic-src``
  retrains (`harp train --config`) from the cached weights.

The child process shrinks the source's recipe (a few 32 px clips, two optimiser steps) before
running the real command, so the build takes seconds; everything else is the shipped code.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from harp import cli
from harp.config.load import load_config

pytestmark = pytest.mark.slow

SOURCE = "synthetic-src"
TINY_RECIPE = {
    "data.synth.clips_per_class": 4, "data.synth.min_size": 32, "data.synth.max_size": 32, "data.synth.min_frames": 8,
    "data.synth.max_frames": 10, "data.synth.short_fraction": 0, "data.val_fraction": 0.25,
    "train.epochs": 1, "train.max_steps_per_epoch": 2, "train.batch_size": 4,
}  # fmt: skip
RUNNER = f"""
import dataclasses, sys
from harp.train import pretrain
task = pretrain.SOURCE_TASKS[{SOURCE!r}]
pretrain.SOURCE_TASKS[{SOURCE!r}] = dataclasses.replace(task, config={{**task.config, **{TINY_RECIPE!r}}})
from harp.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _sweep(space_file: Path, env: dict[str, str], name: str) -> tuple[int, str]:
    run = subprocess.run([sys.executable, "-c", RUNNER, "sweep", "--space", str(space_file), "--quiet", f"sweep.name={name}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=900)
    return run.returncode, run.stdout


@pytest.fixture(scope="module")
def sweep(synthetic_config, synthetic_manifest, tmp_path_factory):
    from harp.config.load import to_dict

    tmp = tmp_path_factory.mktemp("pretrain-sweep")
    space = {
        "config": {
            "data": to_dict(synthetic_config)["data"],
            "model.family": "cnn3d_attention",
            "model.size": "tiny",
            "train.epochs": 1,
            "train.batch_size": 4,
            "train.max_steps_per_epoch": 3,
            "optim.name": "adamw",
            "optim.lr": 3.0e-3,
            "optim.schedule": "none",
            "eval.num_clips": 1,
            "wandb.mode": "offline",
        },
        "sweep": {"output_dir": str(tmp / "runs"), "searcher": "grid", "scheduler": "none", "metric": "val_top1", "mode": "max",
                  "max_concurrent_trials": 2, "cpus_per_trial": 1},
        "params": {"model.pretrained": {"type": "grid", "values": ["none", SOURCE]}},
    }
    space_file = tmp / "space.yaml"
    space_file.write_text(yaml.safe_dump(space, sort_keys=False))
    torch_home, scratch = tmp / "torch_home", tmp / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TORCH_HOME": str(torch_home), "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1"}
    code, output = _sweep(space_file, env, "first")
    assert code == 0, output[-4000:]
    again, second = _sweep(space_file, env, "second")
    assert again == 0, second[-4000:]
    return {"dir": tmp / "runs" / "first", "output": output, "second": second, "torch_home": torch_home, "env": env, "tmp": tmp}


def _cached(torch_home: Path) -> list[Path]:
    return sorted((torch_home / "hub" / "checkpoints" / f"harp-{SOURCE}").glob("cnn3d_attention-*.safetensors"))


def test_the_sweep_builds_the_missing_source_once_before_its_trials(sweep):
    output = sweep["output"]
    building = output.find(f"pretraining source {SOURCE} for cnn3d_attention (tiny): building it once")
    assert building >= 0, output[-3000:]
    assert building < output.find("sweep finished"), "built before the trials ran"
    assert len(_cached(sweep["torch_home"])) == 1
    second = sweep["second"]
    assert f"pretraining source {SOURCE} for cnn3d_attention (tiny): cached ({_cached(sweep['torch_home'])[0]})" in second
    assert "building it once" not in second


def test_trials_optuna_and_wandb_record_each_trial_source(sweep):
    frame = pd.read_parquet(sweep["dir"] / "trials.parquet").set_index("trial_id")
    assert sorted(frame["param.model.pretrained"]) == ["none", SOURCE]
    assert (frame["status"] == "TERMINATED").all() and (frame["epochs_done"] == 1).all(), frame[["status", "error"]]
    study = optuna.load_study(study_name="first", storage=f"sqlite:///{sweep['dir'] / 'optuna.db'}")
    by_trial = {t.user_attrs["tune_trial_id"]: t.params["model.pretrained"] for t in study.trials}
    assert by_trial == frame["param.model.pretrained"].to_dict()
    for trial_id, source in by_trial.items():
        [run] = (sweep["dir"] / "wandb").glob(f"offline-run-*-{trial_id}")
        console = (run / "files" / "output.log").read_text()
        config = (run / "files" / "config.yaml").read_text() if (run / "files" / "config.yaml").is_file() else ""
        if source == SOURCE:
            # the load report, per trial: 6 of cnn3d_attention's 8 tensors; the head (8 source classes) replaced for 4
            assert f"cnn3d_attention <- {SOURCE}: loaded 6/8 tensors (100.0% of the non-head weights)" in console, console[-2000:]
            assert "fc.weight 8x64 -> 4x64" in console and "fc.bias 8 -> 4" in console
        else:
            assert "<- " not in console, "a trial from scratch loads nothing"
        assert not config or source in config


def test_the_best_config_names_its_source_and_a_synthetic_src_config_retrains_from_the_cache(sweep, capsys, monkeypatch):
    best = json.loads((sweep["dir"] / "best" / "metrics.json").read_text())
    exported = load_config([], sweep["dir"] / "best" / "config.yaml")
    assert exported.model.pretrained == best["params"]["model.pretrained"]
    # the synthetic-src trial's resolved config, as best/config.yaml holds it when that trial wins
    configs = sorted(sweep["dir"].glob("tune/*/checkpoint_*/config.yaml"))
    chosen = next(path for path in configs if load_config([], path).model.pretrained == SOURCE)
    monkeypatch.setenv("TORCH_HOME", str(sweep["torch_home"]))
    code = cli.main(["train", "--config", str(chosen), "train.max_steps_per_epoch=1", f"train.output_dir={sweep['tmp'] / 'retrain'}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert f"cnn3d_attention <- {SOURCE}: loaded 6/8 tensors" in captured.out + captured.err
