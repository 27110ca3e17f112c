"""A sweep without ``sweep.group_by``: its one best trial's best checkpoint -> test -> ``best/``.

The best trial is the one with the best sweep metric over its epochs (the epoch whose checkpoint
is kept). Writes ``best/config.yaml`` (``harp train --config best/config.yaml`` retrains it),
``best/model.safetensors``, ``best/metrics.json`` (test split, multi-view protocol of ``eval.*``)
and ``best/confusion.png`` (+ ``confusion.csv``).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from harp.config.load import to_dict, to_yaml
from harp.config.schema import HarpConfig
from harp.errors import HarpError
from harp.numbers import jsonable
from harp.tune.results import TrialRecord, best_trial_checkpoint, pick_best
from harp.tune.sweep_dir import TRIALS_FILE, SweepPaths
from harp.tune.trial import trial_config

CONFUSION_FILES = ("confusion.png", "confusion.csv")
# What a checkpoint carries besides its config: the weights, and the run's per-epoch metrics and
# environment (threads, versions, device) that `harp train --config` compares a retrain with.
CHECKPOINT_FILES = ("model.safetensors", "history.json", "environment.json")


def copy_checkpoint_files(checkpoint_dir: Path, out: Path) -> None:
    """The weights and the run record of ``checkpoint_dir`` into an export folder (the record only
    where the checkpoint has it: runs from before harp recorded them still export)."""
    for name in CHECKPOINT_FILES:
        if (checkpoint_dir / name).is_file():
            shutil.copyfile(checkpoint_dir / name, out / name)


def test_checkpoint(checkpoint_dir: Path, cfg: HarpConfig, out: Path, *, num_clips: int | None, num_crops: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(test metrics, protocol) of one checkpoint on ``eval.split`` with the N clips x M crops
    protocol (``eval.*`` unless given); the confusion matrix lands in ``out``."""
    from harp.evaluate import evaluate_checkpoint  # torch: not for `harp export --help`

    clips = num_clips or cfg.eval.num_clips
    crops = num_crops or cfg.eval.num_crops
    eval_dir = out / "eval"
    test = evaluate_checkpoint(checkpoint_dir, split=cfg.eval.split, num_clips=clips, num_crops=crops, output_dir=eval_dir)
    for name in CONFUSION_FILES:
        if (eval_dir / name).is_file():
            shutil.copyfile(eval_dir / name, out / name)
    test.pop("outputs", None)
    return jsonable(test), {"split": cfg.eval.split, "num_clips": clips, "num_crops": crops}


def export_best(
    cfg: HarpConfig, paths: SweepPaths, records: list[TrialRecord], *, best_dir: Path, evaluate: bool, num_clips: int | None, num_crops: int | None
) -> dict[str, Any]:
    """``best/`` (written at ``best_dir``, see ``SweepPaths.writing``) for the sweep's one best
    trial; returns the summary ``harp sweep`` prints. A checkpoint on remote storage is
    downloaded for the block that reads it, and the copy removed."""
    from harp.train.checkpoint import read_config  # torch, as above

    metric, mode = cfg.sweep.metric, cfg.sweep.mode
    best = pick_best(records, metric, mode)
    found = best_trial_checkpoint(best, metric, mode)
    if found is None:
        raise HarpError(f"trial {best.trial_id} kept no checkpoint; cannot export its weights")
    checkpoint_metrics = found.metrics
    out = best_dir
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    resolved = trial_config(to_dict(cfg), best.params)
    summary: dict[str, Any] = {
        "sweep": cfg.sweep.name,
        "trial_id": best.trial_id,
        "params": best.params,
        "checkpoint": found.describe(),
        "checkpoint_epoch": checkpoint_metrics.get("epoch"),
        f"val_{metric}" if not metric.startswith("val_") else metric: checkpoint_metrics.get(metric),
        "val": {k: checkpoint_metrics.get(k) for k in ("val_top1", "val_top5", "val_loss", "epoch") if k in checkpoint_metrics},
        "trials": len(records),
        "trials_parquet": paths.uri(TRIALS_FILE),
    }
    with found.local_directory() as checkpoint_dir:
        trained = read_config(checkpoint_dir) if (checkpoint_dir / "config.yaml").is_file() else resolved
        (out / "config.yaml").write_text(to_yaml(trained))
        copy_checkpoint_files(checkpoint_dir, out)
        if evaluate:
            summary["test"], summary["protocol"] = test_checkpoint(checkpoint_dir, trained, out, num_clips=num_clips, num_crops=num_crops)
    (out / "metrics.json").write_text(json.dumps(jsonable(summary), indent=2, sort_keys=True) + "\n")
    return summary


__all__ = ["CHECKPOINT_FILES", "CONFUSION_FILES", "copy_checkpoint_files", "export_best", "test_checkpoint"]
