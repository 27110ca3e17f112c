"""What a small sweep prints, read as a user reads it: real `harp sweep` processes (local Ray,
Optuna on SQLite, one trial failing on purpose), and the study they leave read through
optuna-dashboard's own HTTP API.

- neither output has Ray's and Tune's noise (the "ValueError when calling 'flush'" warnings of
  torch's loggers bound to a trial's closed log file, the per-epoch "Checkpoint successfully
  created" lines, the token-authentication warning, the TensorBoard hint at a temporary folder), and
  both still show the failed trial's error, and Tune's result files are still written;
- ``--quiet`` keeps harp's header, one line per finished trial and the summary;
- the end points at `harp report` and `harp status`;
- optuna-dashboard names the objectives (``val_top1``, ``gflops``) and shows ``optim.lr`` as one
  parameter although it has one range per optimiser."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboard_server import get_json, running_dashboard

from .conftest import harp

pytestmark = pytest.mark.slow

NOISE = ("ValueError when calling 'flush'", "Checkpoint successfully created", "Token authentication is enabled",
         "To visualize your results with TensorBoard")  # Tune's hint at a temporary folder
TRIAL_ERROR = "no such file, so its input normalisation is unknown"  # the failing trial's own message
TRACEBACK = re.compile(r"^(\s+File |\s{4}|\s*\^+\s*$|Traceback \(most recent call last\):)")


def _space(path: Path, data: dict, output_dir: Path, name: str) -> Path:
    """Three trials: sgd (its pretrained file does not exist: fails at once), adamw x 2 seeds
    (ASHA may stop the second after its first epoch);
    ``optim.lr`` has one value per optimiser; two objectives."""
    space = {
        "config": {"data": data, "train.epochs": 2, "train.batch_size": 4, "train.max_steps_per_epoch": 2,
                   "optim.schedule": "none", "eval.num_clips": 1, "wandb.mode": "disabled"},
        # ASHA: it stops each trial at max_t (or earlier) while the trial's function still runs
        "sweep": {"name": name, "output_dir": str(output_dir), "searcher": "grid", "scheduler": "asha", "grace_period": 1,
                  "objectives": ["gflops:min"], "max_concurrent_trials": 1, "cpus_per_trial": 1, "max_failures": 0},
        "params": {
            "optim.name": {"type": "grid", "values": ["sgd", "adamw"]},
            "optim.lr": [{"type": "grid", "values": [0.01], "when": {"optim.name": "sgd"}},
                         {"type": "grid", "values": [0.003], "when": {"optim.name": "adamw"}}],
            "train.seed": {"type": "grid", "values": [0, 1], "when": {"optim.name": "adamw"}},
            "model.pretrained": {"type": "grid", "values": ["file:/nonexistent/weights.pth"], "when": {"optim.name": "sgd"}},
        },
    }
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sweeps(tiny_data_module, tmp_path_factory):
    """The same sweep run twice: with --quiet (and the export), and with Tune's output (no export)."""
    root = tmp_path_factory.mktemp("output")
    runs = {}
    for name, flags in (("quiet", ["--quiet"]), ("loud", ["--no-export"])):
        space = _space(root / f"{name}.yaml", tiny_data_module, root / "runs", name)
        run = subprocess.run(harp("sweep", "--space", str(space), *flags), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # as a terminal shows both
        assert run.returncode == 0, run.stdout[-3000:]
        runs[name] = (run.stdout, root / "runs" / name)
    return runs


@pytest.fixture(scope="module")
def tiny_data_module(synthetic_config, synthetic_manifest):
    from harp.config.load import to_dict

    return to_dict(synthetic_config)["data"]


def _lines(output: str) -> list[str]:
    """The lines a reader reads: not blank, not a frame of a Python traceback."""
    return [line for line in output.splitlines() if line.strip() and not TRACEBACK.match(line)]


def test_no_ray_or_tune_noise_and_the_real_error_still_shows(sweeps):
    for name, (output, _) in sweeps.items():
        for noise in NOISE:
            assert noise not in output, f"{name}: {noise!r} in the output"
        assert TRIAL_ERROR in output, name
        summary = output.split("sweep finished in", 1)[1]
        assert "3 trials, 1 with errors" in summary and TRIAL_ERROR in summary, name  # harp's own line per failed trial
    for name, (_, sweep_dir) in sweeps.items():  # without Tune's TensorBoard logger, its CSV and JSON results remain
        trials = sorted((sweep_dir / "tune").glob("harp_trial_*"))
        assert len(trials) == 3 and not [e for t in trials for e in t.glob("events.out.tfevents*")], name
        ran = [t for t in trials if (t / "progress.csv").is_file() and (t / "progress.csv").stat().st_size]
        assert len(ran) >= 2 and all((t / "result.json").stat().st_size for t in ran), name


def test_quiet_keeps_the_header_a_line_per_trial_and_the_summary(sweeps):
    quiet, sweep_dir = sweeps["quiet"]
    loud, _ = sweeps["loud"]
    lines, loud_lines = _lines(quiet), _lines(loud)
    print(f"non-blank lines outside tracebacks: --quiet {len(lines)}, default {len(loud_lines)}")
    assert lines[1].startswith("harp sweep quiet:")  # after the data line: harp's header
    progress = [line for line in lines if re.match(r"\[\d/3\] trial [0-9a-f]{8} ", line)]
    assert [line[:5] for line in progress] == ["[1/3]", "[2/3]", "[3/3]"], progress
    assert "FAIL: " in progress[0] and TRIAL_ERROR in progress[0]
    assert all(re.search(r" (COMPLETE|PRUNED \(stopped at epoch 1/2\)) val_top1=", line) for line in progress[1:]), progress
    assert not any("Trial status:" in line or "│" in line for line in lines), "Tune's tables are off with --quiet"
    assert any(line.startswith("exporting: ") for line in lines)  # the long step after the sweep says so
    assert lines[-2:] == [f"  report page:   harp report {sweep_dir}", f"  trial status:  harp status {sweep_dir}"]
    assert len(lines) <= 45, "\n".join(lines)
    assert len(loud_lines) > 2 * len(lines)


@pytest.fixture
def dashboard(sweeps):
    """optuna-dashboard on 127.0.0.1 (a free port) over the quiet sweep's SQLite study."""
    _, sweep_dir = sweeps["quiet"]
    with running_dashboard(f"sqlite:///{sweep_dir / 'optuna.db'}") as base:
        yield base


def test_optuna_dashboard_serves_metric_names_and_one_name_per_key(dashboard):
    studies = get_json(f"{dashboard}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["quiet"]
    study = get_json(f"{dashboard}/api/studies/{studies[0]['study_id']}")
    assert study["objective_names"] == ["val_top1", "gflops"]  # not "Objective 0", "Objective 1"
    assert {p["name"] for p in study["union_search_space"]} == {"optim.name", "optim.lr", "train.seed"}
    states = sorted(t["state"] for t in study["trials"])
    assert states in (["Complete", "Complete", "Fail"], ["Complete", "Fail", "Pruned"]), states
    for trial in study["trials"]:
        names = [p["name"] for p in trial["params"]]
        assert names.count("optim.lr") == 1 and not any("#" in n for n in names), names
    lr = {float(t["params"][[p["name"] for p in t["params"]].index("optim.lr")]["param_external_value"]):
          next(p["param_external_value"] for p in t["params"] if p["name"] == "optim.name") for t in study["trials"]}
    assert lr == {0.01: "sgd", 0.003: "adamw"}  # each optimiser's own value, under the one name
    importances = get_json(f"{dashboard}/api/studies/{studies[0]['study_id']}/param_importances")["param_importances"]
    assert len(importances) == 2 and {i["name"] for i in importances[0]} == {"optim.name", "optim.lr", "train.seed"}
