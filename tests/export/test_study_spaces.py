"""Done-when of the study tables: each shipped paper space parses, and a tiny version of it (the
same keys, conditions, fixed config and table layout; tiny models from scratch, 2 epochs, two
synthetic data sets, a grid of 2-4 trials in 2 cells, or in the one cell of a study that varies
none of its group_by keys; ``shrink.py``) runs end to end with real Ray, Optuna and the real
export, and writes its per-cell table."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harp.config.load import load_config, to_dict
from harp.export import export_sweep
from harp.tune.space import apply_params, base_config, load_space, parse_space
from harp.tune.tuner import run_sweep

from .conftest import CLASS_COUNTS, SYNTH
from .shrink import EPOCHS, shrink_space

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SPACES = sorted(p for p in (REPO / "search_spaces").glob("0*.yaml"))
REFIT = {"003"}  # the two-data-set study also refits (its cells have different manifests)


@pytest.fixture(scope="module", params=[p.stem for p in SPACES])
def study(request, ray_local, study_roots, tmp_path_factory):
    path = REPO / "search_spaces" / f"{request.param}.yaml"
    load_space(path)  # the shipped space itself parses
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    out = tmp_path_factory.mktemp("studies")
    tiny_raw = shrink_space(raw, roots=study_roots, synth=SYNTH, name=f"tiny-{request.param[:3]}", output_dir=str(out),
                            refit=True if request.param[:3] in REFIT else None)
    space = parse_space(tiny_raw, name=tiny_raw["sweep"]["name"])
    cfg = base_config(space)
    started = time.perf_counter()
    outcome = run_sweep(cfg, space, raw_space=tiny_raw, verbose=0)
    summary = export_sweep(outcome.paths.root)
    seconds = time.perf_counter() - started
    print(f"\n{request.param}: tiny study in {seconds:.0f} s\n{summary['table']}")
    return cfg, space, outcome, summary


def _expected_cells(cfg, space) -> int:
    """Distinct group_by values over the grid, from each point's config (the data set by its root)."""
    import optuna

    cells = set()
    for point in space.grid_points():
        trial = to_dict(apply_params(cfg, space.sample(optuna.trial.FixedTrial(point))))
        cells.add(tuple(str(trial["data"]["root"] if key == "data" else OmegaConf.select(OmegaConf.create(trial), key)) for key in cfg.sweep.group_by))
    return len(cells)


def request_is_one_cell(cfg, space) -> bool:
    """A study whose group_by keys are all fixed in its space (one cell, e.g. 002's one family)."""
    return "data" not in cfg.sweep.group_by and not any(p.key in cfg.sweep.group_by and len(p.values) > 1 for p in space.params)


def test_the_study_writes_a_table_of_its_cells(study):
    cfg, space, outcome, summary = study
    best = outcome.paths.best
    rows = list(csv.DictReader(open(best / "table.csv")))
    expected = _expected_cells(cfg, space)
    assert expected == (1 if request_is_one_cell(cfg, space) else 2)
    assert len(rows) == expected and len(summary["cells"]) == expected
    assert all(r["note"] == "" for r in rows), rows
    keys = list(cfg.sweep.group_by)
    assert [tuple(r[k] for k in keys) for r in rows] == [tuple(c["labels"][k] for k in keys) for c in summary["cells"]]
    assert len({tuple(r[k] for k in keys) for r in rows}) == expected  # different cells
    trials = len(list(outcome.results))
    assert 2 <= trials <= 4 and sum(int(r["trials"]) for r in rows) == trials
    markdown = (best / "table.md").read_text()
    assert markdown == summary["table"]
    for row in rows:
        for name in ("test_top1", "test_top5", "test_mean_class_accuracy", "gflops_per_view", "mparams"):
            assert 0.0 <= float(row[name]) and (float(row[name]) <= 1.0 or name in ("gflops_per_view", "mparams")), (name, row)
        assert float(row["gflops_per_view"]) > 0 and float(row["mparams"]) > 0
        assert int(row["views"]) == cfg.eval.num_clips * cfg.eval.num_crops
        assert 1 <= int(row["epoch"]) <= EPOCHS and int(row["epochs_spent"]) >= int(row["epoch"])
        assert f"{100 * float(row['test_top1']):.1f}" in markdown  # the grid shows each cell's top-1


def test_each_cell_folder_retrains_and_reproduces_its_test(study):
    """best/<cell>/ holds a config that builds the cell's model, its weights, and the test
    metrics of those weights: evaluating them again gives the same numbers."""
    from harp.evaluate import evaluate_checkpoint

    cfg, _, outcome, summary = study
    for cell in summary["cells"]:
        folder = outcome.paths.best / cell["name"]
        assert {"config.yaml", "model.safetensors", "metrics.json"} <= {p.name for p in folder.iterdir()}
        trained = load_config([], folder / "config.yaml")
        recorded = json.loads((folder / "metrics.json").read_text())
        assert recorded["trial_id"] == cell["trial_id"] and recorded["test"]["top1"] == pytest.approx(cell["test"]["top1"])
        again = evaluate_checkpoint(folder, cfg=trained, output_dir=folder / "again")
        assert again["top1"] == pytest.approx(recorded["test"]["top1"])
        assert again["num_videos"] == recorded["test"]["num_videos"] > 0


def test_cells_on_different_data_sets_keep_their_own_classes(study):
    cfg, _, _, summary = study
    if "data" not in cfg.sweep.group_by or len({c["labels"]["data"] for c in summary["cells"]}) < 2:
        pytest.skip("this study's two cells share one data set")
    classes = sorted(len(c["test"]["per_class_accuracy"]) for c in summary["cells"])
    assert classes == sorted(CLASS_COUNTS)


def test_each_cell_is_its_own_best_trial(study):
    """The chosen trial of a cell is the best of that cell's trials by the validation metric."""
    import pandas as pd

    cfg, _, outcome, summary = study
    frame = pd.read_parquet(outcome.paths.trials).set_index("trial_id")
    metric = cfg.sweep.metric
    chosen = {c["trial_id"] for c in summary["cells"]}
    assert len(chosen) == len(summary["cells"])
    for cell in summary["cells"]:
        best = frame.loc[cell["trial_id"], f"best_{metric}"]
        assert cell["val"] == pytest.approx(best)


def test_refit_trains_on_train_and_val_for_the_chosen_epochs(study):
    cfg, _, outcome, summary = study
    if not cfg.sweep.refit:
        pytest.skip("this study does not refit")
    from harp.data.manifest import ensure_manifest, load_manifest

    for cell in summary["cells"]:
        assert cell["refit"] and cell["refit_epochs"] == cell["epoch"]
        refit = load_config([], outcome.paths.best / cell["name"] / "config.yaml")
        assert refit.data.val_fraction == 0.0 and refit.train.epochs == cell["epoch"]
        history = (outcome.paths.root / "refit" / cell["name"] / "history.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in history] == list(range(1, cell["epoch"] + 1))
        original = load_config([f"data.val_fraction={cfg.data.val_fraction}", "data.manifest="], outcome.paths.best / cell["name"] / "config.yaml")
        before = load_manifest(ensure_manifest(original.data, progress=False))
        folded = load_manifest(refit.data.manifest)
        assert (before["split"] == "val").sum() > 0 and (folded["split"] == "val").sum() == 0
        assert set(folded.loc[folded["split"] == "train", "path"]) == set(before.loc[before["split"].isin(["train", "val"]), "path"])
        assert set(folded.loc[folded["split"] == "test", "path"]) == set(before.loc[before["split"] == "test", "path"])
    assert "†" in summary["table"]


def test_harp_export_rebuilds_the_table_from_the_finished_sweep(study, capsys):
    """`harp export SWEEP_DIR` again: the same table (the same checkpoints, tested again), and a
    finished refit is reused, not trained a second time."""
    from harp.commands.export import main

    cfg, _, outcome, summary = study
    refit_logs = sorted((outcome.paths.root / "refit").glob("*/history.jsonl"))
    stamps = [p.stat().st_mtime_ns for p in refit_logs]
    assert bool(refit_logs) == cfg.sweep.refit
    assert main([str(outcome.paths.root)]) == 0
    printed = capsys.readouterr().out
    assert (outcome.paths.best / "table.md").read_text() == summary["table"]
    assert summary["table"] in printed and "table.csv" in printed
    assert [p.stat().st_mtime_ns for p in refit_logs] == stamps
