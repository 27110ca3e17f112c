"""PostgreSQL for the study (sweep.optuna_storage), against a real server this test starts (initdb
+ pg_ctl as the ``postgres`` user in a temp dir, 127.0.0.1 only): two sweeps' searchers write their
own studies at once without touching each other's, a second sweep of the same name is refused in
one line, and a real tiny sweep keeps its study there."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from .conftest import client_env, tiny_space

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("study_worker.py")
NUM = 25


def _run_two(url: str, tmp_path: Path, start_at: float = 0.0) -> list[tuple[str, Path, int, str]]:
    procs = []
    for name, seed in (("sweep-a", 1), ("sweep-b", 2)):
        out = tmp_path / f"{name}.json"
        proc = subprocess.Popen([sys.executable, str(WORKER), url, name, str(NUM), str(seed), str(out), str(start_at)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=client_env())
        procs.append((name, out, proc))
    return [(name, out, proc.wait(timeout=600), proc.communicate()[0]) for name, out, proc in procs]


def test_two_sweeps_write_their_own_studies_at_once(postgres, tmp_path: Path):
    from .study_worker import score

    url = postgres.create_database("two_sweeps")
    optuna.storages.RDBStorage(url)  # Optuna's tables made once, as its maintainers advise (optuna#1092)
    for name, _, code, output in _run_two(url, tmp_path):
        assert code == 0, f"{name}: {output[-3000:]}"

    assert sorted(s.study_name for s in optuna.get_all_study_summaries(url)) == ["sweep-a", "sweep-b"]
    for name in ("sweep-a", "sweep-b"):
        told = json.loads((tmp_path / f"{name}.json").read_text())
        trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        assert len(trials) == NUM and [t.number for t in trials] == list(range(NUM))
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        by_id = {t.user_attrs["tune_trial_id"]: t for t in trials}
        assert set(by_id) == set(told)  # only this sweep's trials, every one of them
        for trial_id, record in told.items():
            trial = by_id[trial_id]
            assert trial.params["optim.lr"] == pytest.approx(record["params"]["optim.lr"])
            assert trial.value == pytest.approx(score(trial.params["optim.lr"], 3))
            assert sorted(trial.intermediate_values) == [1, 2, 3]


def test_two_sweeps_starting_together_on_a_fresh_database(postgres, tmp_path: Path):
    url = postgres.create_database("fresh_race")
    results = _run_two(url, tmp_path, start_at=time.time() + 20)  # both open the database after their imports
    assert [code for _, _, code, _ in results] == [0, 0], [output[-800:] for *_, output in results]


def test_a_second_sweep_of_the_same_name_is_refused_in_one_line(postgres, tmp_path: Path):
    from harp.config import load_config
    from harp.errors import ConfigError
    from harp.tune.space import parse_space
    from harp.tune.sweep_dir import SweepPaths
    from harp.tune.tuner import build_searcher

    space = parse_space({"params": {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}}, name="dup")
    cfg = load_config([f"sweep.optuna_storage={postgres.url}", "sweep.name=dup"])
    build_searcher(cfg, space, SweepPaths(tmp_path / "dup"), check_fresh=True)
    with pytest.raises(ConfigError, match=r"^an Optuna study named 'dup' already exists in sweep.optuna_storage"):
        build_searcher(cfg, space, SweepPaths(tmp_path / "dup2"), check_fresh=True)


def test_a_real_sweep_keeps_its_study_in_postgres(postgres, synthetic_config, synthetic_manifest, tmp_path: Path):
    space = tiny_space(synthetic_config, name="pg-sweep", output_dir=tmp_path / "runs", extra_sweep={"optuna_storage": postgres.url})
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(space))
    run = subprocess.run([sys.executable, "-m", "harp.cli", "sweep", "--space", str(space_file), "--no-export", "--quiet"],
                         capture_output=True, text=True, env=client_env(), timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    trials = optuna.load_study(study_name="pg-sweep", storage=postgres.url).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert not (tmp_path / "runs" / "pg-sweep" / "optuna.db").exists()  # not SQLite beside the sweep
