"""Small pieces of the sweep machinery that need no Ray: W&B mode, study-name reuse, sweep files."""
from __future__ import annotations

import json

import optuna
import pytest

from harp.config import load_config
from harp.errors import ConfigError
from harp.tune.searcher import parse_objectives
from harp.tune.space import parse_space
from harp.tune.study import make_sampler
from harp.tune.sweep_dir import SweepPaths, read_sweep, write_sweep_files
from harp.tune.tuner import build_searcher
from harp.tune.wandb_logging import resolve_mode

SPACE = parse_space({"params": {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}}, name="misc")


def test_wandb_mode_offline_without_a_key_and_the_key_never_lands_in_files(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert resolve_mode("auto") == "offline"
    assert resolve_mode("disabled") == "disabled"
    secret = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    assert resolve_mode("auto") == "online"
    cfg = load_config([f"sweep.output_dir={tmp_path}", "sweep.name=s"])
    paths = SweepPaths(tmp_path / "s")
    write_sweep_files(cfg, SPACE, paths, {"params": {}})
    for file in paths.root.iterdir():
        assert secret not in file.read_text()


def test_a_fresh_sweep_never_appends_to_an_existing_study(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    optuna.create_study(study_name="taken", storage=url)
    cfg = load_config(["sweep.name=taken", f"sweep.optuna_storage={url}"])
    with pytest.raises(ConfigError, match="already exists"):
        build_searcher(cfg, SPACE, SweepPaths(tmp_path / "taken"), check_fresh=True)
    cfg.sweep.name = "new"
    searcher = build_searcher(cfg, SPACE, SweepPaths(tmp_path / "new"), check_fresh=True)
    assert searcher.study.study_name == "new"


def test_sweep_directory_round_trip(tmp_path):
    cfg = load_config(["sweep.name=rt", "optim.lr=0.5", f"sweep.output_dir={tmp_path}"])
    paths = SweepPaths(tmp_path / "rt")
    write_sweep_files(cfg, SPACE, paths, {"params": {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}})
    again, space, _ = read_sweep(paths.root)
    assert again.optim.lr == 0.5 and [p.key for p in space.params] == ["optim.lr"]
    assert json.loads(paths.sweep_file.read_text())["name"] == "rt"


def test_sampler_choices_are_checked():
    with pytest.raises(ConfigError, match="nsga2 is multi-objective"):
        make_sampler("nsga2", seed=0, num_samples=4, multi_objective=False)
    with pytest.raises(ConfigError, match="cmaes is single-objective"):
        make_sampler("cmaes", seed=0, num_samples=4, multi_objective=True)
    with pytest.raises(ConfigError, match="NAME:min"):
        parse_objectives("val_top1", "max", ["gflops:fast"])
    assert [o.direction for o in parse_objectives("val_top1", "max", ["gflops:min", "latency_ms"])] == ["maximize", "minimize", "minimize"]
