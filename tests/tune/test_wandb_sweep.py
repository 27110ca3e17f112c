"""W&B as a dashboard, read back from the offline files of a real `harp sweep` (its own process,
real Ray, real Optuna, W&B's own .wandb records decoded with W&B's protobuf messages):

- a fake API key and a W&B host that refuses connections: one warning line, then offline runs for
  every trial (no per-trial wait for W&B);
- each run: the trial's resolved config, its sampled params, a name that says what ran, `epoch`
  as the step and the best epoch as the summary, COMPLETE / PRUNED (at epoch k) / FAIL as Optuna
  recorded them, and the trial's console as output.log;
- a trial whose process is killed is retried and keeps its one run (one folder, no epoch twice);
- the summary run: trials table, importances, confusion matrix; everything W&B wrote is under
  the sweep directory, nothing in HOME or TMPDIR; `wandb sync --dry-run` takes every run.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from waiting import tune_trial_process, wait_for

from .wandb_reader import read_offline_run

pytestmark = pytest.mark.slow

EPOCHS = 3
GOOD_LR, WILD_LR = 3e-3, 0.3
FAKE_KEY = "fa" * 20  # 40 characters: W&B's own format check passes, the server would refuse it


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def sweep(synthetic_config, synthetic_manifest, tmp_path_factory):
    from harp.config.load import to_dict

    tmp = tmp_path_factory.mktemp("wandb-sweep")
    bad = tmp / "bad.pth"
    bad.write_bytes(b"not a state dict" * 64)
    space = {
        "config": {
            "data": to_dict(synthetic_config)["data"],
            "train.epochs": EPOCHS,
            "train.batch_size": 4,
            "train.max_steps_per_epoch": 2,
            "optim.name": "adamw",
            "optim.schedule": "none",
            "model.size": "tiny",
            "eval.num_clips": 1,
            "wandb.mode": "auto",
            "wandb.project": "harp-test",
        },
        "sweep": {"name": "wb", "output_dir": str(tmp / "runs"), "searcher": "grid", "scheduler": "asha", "grace_period": 1,
                  "reduction_factor": 2, "metric": "val_loss", "mode": "min", "max_concurrent_trials": 1, "cpus_per_trial": 1,
                  "max_failures": 1},
        # grid order: two good trials (ASHA may stop the second), then a wild learning rate ASHA stops
        # at its first rung, then a pretrained file that is no state dict (a deterministic error: FAIL)
        "params": {
            "optim.lr": {"type": "grid", "values": [GOOD_LR, WILD_LR]},
            "train.seed": {"type": "grid", "values": [0, 1], "when": {"optim.lr": [GOOD_LR]}},
            "model.pretrained": {"type": "grid", "values": ["none", f"file:{bad}"], "when": {"optim.lr": [WILD_LR]}},
        },
    }
    space_file = tmp / "space.yaml"
    space_file.write_text(yaml.safe_dump(space, sort_keys=False))
    home, scratch = tmp / "home", tmp / "scratch"
    home.mkdir()
    scratch.mkdir()
    port = _closed_port()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(scratch), "WANDB_API_KEY": FAKE_KEY,
           "WANDB_BASE_URL": f"http://127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
    sweep_dir = tmp / "runs" / "wb"
    log = tmp / "sweep.log"
    started = time.monotonic()
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "harp.cli", "sweep", "--space", str(space_file), "--quiet"],
                                   stdout=handle, stderr=subprocess.STDOUT, text=True, env=env)
    killed: list[int] = []
    try:
        # the first trial's process is killed once it has a checkpoint: a crash, retried by Tune
        wait_for(lambda: any((sweep_dir / "tune").glob("harp_trial_*/checkpoint_000000/metrics.json")), process, timeout=600, what="a checkpoint", poll=0.3)
        worker = wait_for(lambda: tune_trial_process(process.pid), process, timeout=60, what="the trial's process", poll=0.3)
        worker.kill()
        killed.append(worker.pid)
        code = process.wait(timeout=1200)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    print(f"sweep with an unreachable W&B host: {time.monotonic() - started:.0f} s")
    assert code == 0, output[-4000:]
    return {"dir": sweep_dir, "output": output, "home": home, "scratch": scratch, "port": port, "killed": killed, "env": env}


def _runs(sweep_dir: Path) -> dict[str, list[Path]]:
    """Trial id (or 'summary') -> its offline run folders."""
    out: dict[str, list[Path]] = {}
    for folder in sorted((sweep_dir / "wandb").glob("offline-run-*")):
        out.setdefault(folder.name.rsplit("-", 1)[-1], []).append(folder)
    return out


def test_an_unreachable_wandb_host_gives_one_line_and_offline_runs(sweep):
    lines = [line for line in sweep["output"].splitlines() if "W&B:" in line]
    assert len(lines) == 1, lines
    assert f"cannot reach 127.0.0.1:{sweep['port']}" in lines[0] and "offline" in lines[0] and "wandb sync" in lines[0]
    assert FAKE_KEY not in sweep["output"]
    frame = pd.read_parquet(sweep["dir"] / "trials.parquet")
    runs = _runs(sweep["dir"])
    assert set(frame["trial_id"]) | {"summary"} == set(runs)
    assert not list((sweep["dir"] / "wandb").glob("run-*")), "an online run was attempted"
    assert "W&B (offline)" in sweep["output"]  # the end-of-sweep lines agree with what happened


def test_each_run_says_what_ran_and_how_it_ended(sweep):
    frame = pd.read_parquet(sweep["dir"] / "trials.parquet").set_index("trial_id")
    states = sorted(frame["optuna_state"])
    assert states.count("FAIL") == 1 and "COMPLETE" in states and "PRUNED" in states, states
    runs = _runs(sweep["dir"])
    for trial_id, row in frame.iterrows():
        run = read_offline_run(runs[trial_id][0])
        params = {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.") and v is not None and v == v}
        assert run["config"]["params"] == params
        harp = run["config"]["harp"]  # the trial's resolved config, not the sweep's base config
        assert harp["optim"]["lr"] == params["optim.lr"] and harp["train"]["seed"] == params.get("train.seed", 0)
        assert harp["model"]["pretrained"] == params.get("model.pretrained", "none")
        number = int(row["optuna_number"]) + 1
        assert run["name"] == f"{number}-{harp['model']['family']}-{trial_id}" and run["group"] == "wb"
        state = row["optuna_state"]
        assert state in run["tags"] and run["summary"]["state"] == state
        epochs = [h["epoch"] for h in run["history"] if "val_loss" in h]
        assert epochs == list(row["epoch"]), "each epoch once, in order (the retried trial too)"
        if state == "FAIL":
            assert run["exit_code"] == 1 and run["summary"]["error"].startswith("cannot read")
            continue
        assert run["exit_code"] == 0
        for name in ("val_loss", "val_top1", "train_loss", "lr"):
            assert run["metrics"][name]["step_metric"] == "epoch", name
        assert run["metrics"]["val_loss"]["summary"] == {"min": True} and run["metrics"]["val_top1"]["summary"] == {"max": True}
        assert run["summary"]["val_loss"] == {"min": pytest.approx(row["best_val_loss"])}
        assert run["summary"]["best_epoch"] == row["best_epoch"]
        assert run["summary"]["best/val_loss"] == pytest.approx(row["best_val_loss"])
        if state == "PRUNED":
            assert run["summary"]["pruned_at_epoch"] == row["epochs_done"] < EPOCHS
        assert run["summary"]["val_confusion_matrix"]
        tables = [h for h in run["history"] if any(k.startswith("val_confusion") for k in h)]
        assert len(tables) == 1 and "epoch" not in tables[0], "the end-of-trial table is no epoch"
        assert "output.log" in run["files"]
        console = (runs[trial_id][0] / "files" / "output.log").read_text()
        # the trial's own streams, from its first line (a trial in a kept process has no Ray actor
        # line; Ray's per-checkpoint INFO line is quiet in trials now)
        assert re.search(rf"===== stdout =====\n(:actor_name:harp_trial\n)?harp trial {trial_id} \(process \d+, its trial \d+\): ", console), console[-1500:]


def test_a_retried_trial_keeps_its_one_run(sweep):
    assert sweep["killed"], "the trial's process was never killed"
    frame = pd.read_parquet(sweep["dir"] / "trials.parquet").set_index("trial_id")
    runs = _runs(sweep["dir"])
    retried = [tid for tid in frame.index if read_offline_run(runs[tid][0])["summary"].get("retries")]
    assert len(retried) == 1, "exactly the killed trial was retried"
    assert all(len(folders) == 1 for folders in runs.values()), {k: [f.name for f in v] for k, v in runs.items()}
    trial = frame.loc[retried[0]]
    assert trial["optuna_state"] == "COMPLETE" and list(trial["epoch"]) == list(range(1, EPOCHS + 1))


def test_the_summary_run_and_where_wandb_wrote(sweep):
    summary = read_offline_run(_runs(sweep["dir"])["summary"][0])
    assert summary["summary"]["trials/nrows"] == 4
    assert summary["summary"]["importance_method"].startswith("PED-ANOVA")
    assert "best_test_confusion_table/nrows" in summary["summary"] and summary["summary"]["best/test_confusion_matrix"]
    # tables are staged inside the sweep directory, nothing of W&B's in HOME or TMPDIR
    assert any((sweep["dir"] / "wandb" / ".data").rglob("*")), "W&B staged nothing under the sweep directory"
    for root in (sweep["home"], sweep["scratch"]):
        leaked = [str(p) for p in root.rglob("*") if "wandb" in p.name.lower()]
        assert leaked == [], leaked


def test_wandb_sync_takes_every_run(sweep):
    folders = sorted(str(p) for p in (sweep["dir"] / "wandb").glob("offline-run-*"))
    wandb_cli = Path(sys.executable).with_name("wandb")
    out = subprocess.run([str(wandb_cli), "sync", "--dry-run", *folders], capture_output=True, text=True, timeout=300,
                         env={**sweep["env"], "WANDB_BASE_URL": "http://127.0.0.1:1"}, cwd=sweep["dir"])
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert f"Would sync {len(folders)} run(s)" in text, text
    assert json.dumps(FAKE_KEY) not in text
