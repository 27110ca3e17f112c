"""Search efficiency on the synthetic data: TPE + ASHA vs random vs grid at an equal compute budget.

    .venv/bin/python bench/search_efficiency.py                     # budget 24 epochs per method
    .venv/bin/python bench/search_efficiency.py --budget 36 --epochs 4 --json runs/bench_search.json

The budget is counted in trained epochs (every reported epoch of every trial, stopped or not).
Each method searches the same space (family x optimiser x LR); grid and random run
budget / epochs full-length trials; TPE + ASHA gets twice as many trials and ASHA stops the
poor ones early, and a Tune ``Stopper`` ends every method when the budget is spent. The table gives
the best validation top-1 reached, the budget used when it was first reached, and trials run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ray.tune import Callback, Stopper


class EpochBudget(Stopper):
    """Stop the whole sweep once ``budget`` epochs have been trained across all trials."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.seen: set[tuple[str, int]] = set()

    def __call__(self, trial_id: str, result: dict) -> bool:
        # Tune repeats a function trial's last result when it returns: count (trial, epoch) once
        if "epoch" in result:
            self.seen.add((trial_id, int(result["epoch"])))
        return False

    def stop_all(self) -> bool:
        return len(self.seen) >= self.budget


class Progress(Callback):
    """Cumulative epochs and the running best, per result."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.used = 0
        self.best = float("-inf")
        self.best_at = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.used += 1
        value = result.get(self.metric)
        if value is not None and value > self.best:
            self.best, self.best_at = float(value), self.used


SPACE_PARAMS = {
    "model.family": {"type": "grid", "values": ["cnn3d_attention", "tsm"]},
    "optim.name": {"type": "grid", "values": ["sgd", "adamw"]},
    "optim.lr": {"type": "loguniform", "low": 3.0e-4, "high": 3.0e-2},
}
GRID_LR = [1.0e-3, 1.0e-2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=24, help="trained epochs per method")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of a full-length trial")
    parser.add_argument("--steps", type=int, default=12, help="optimiser steps per epoch (train.max_steps_per_epoch)")
    parser.add_argument("--data-root", default=None, help="synthetic data folder (default: data/synthetic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from harp.config import load_config
    from harp.data.manifest import ensure_manifest
    from harp.tune.ray_session import ray_session
    from harp.tune.space import base_config, parse_space
    from harp.tune.tuner import run_sweep

    data_root = str(Path(args.data_root or "data/synthetic").resolve())
    ensure_manifest(load_config([f"data.root={data_root}"]).data, progress=False)
    work = Path(tempfile.mkdtemp(prefix="harp-bench-search-"))
    full_trials = max(1, args.budget // args.epochs)
    methods = [
        ("TPE + ASHA", "tpe", "asha", 2 * full_trials, SPACE_PARAMS),
        ("random", "random", "none", full_trials, SPACE_PARAMS),
        ("grid", "grid", "none", None, {**SPACE_PARAMS, "optim.lr": {"type": "grid", "values": GRID_LR}}),
    ]
    rows = []
    seed_cfg = load_config([f"data.root={data_root}"])
    with ray_session(seed_cfg, num_cpus=os.cpu_count()):
        for label, searcher, scheduler, samples, params in methods:
            space = parse_space(
                {
                    "config": {"data.root": data_root, "data.num_workers": 0, "train.epochs": args.epochs,
                               "train.max_steps_per_epoch": args.steps, "train.batch_size": 8, "wandb.mode": "disabled",
                               "optim.schedule": "cosine"},
                    "sweep": {"name": f"search-{searcher}", "output_dir": str(work), "searcher": searcher,
                              "scheduler": scheduler, "num_samples": samples or 1, "grace_period": 1,
                              "reduction_factor": 2, "max_concurrent_trials": 2, "seed": args.seed},
                    "params": params,
                },
                name=f"search-{searcher}",
            )
            cfg = base_config(space)
            budget, progress = EpochBudget(args.budget), Progress(cfg.sweep.metric)
            start = time.perf_counter()
            outcome = run_sweep(cfg, space, verbose=0, extra_callbacks=(progress,), stop=budget)
            wall = time.perf_counter() - start
            trials = len(outcome.results)
            rows.append({"method": label, "best_val_top1": progress.best, "epochs_to_best": progress.best_at,
                         "epochs_used": progress.used, "trials": trials, "wall_s": wall})
            print(f"{label}: best val_top1 {progress.best:.3f} after {progress.best_at}/{progress.used} epochs, {trials} trials, {wall:.0f} s", flush=True)

    print(f"\nSearch efficiency on the synthetic data (10 classes, chance 0.10), budget {args.budget} epochs "
          f"of {args.steps} steps x batch 8 per method, trials of {args.epochs} epochs, 2 at a time\n")
    print("| method       | best val top-1 | epochs to reach it | epochs used | trials | wall (s) |")
    print("|--------------|----------------|--------------------|-------------|--------|----------|")
    for r in rows:
        print(f"| {r['method']:<12} | {r['best_val_top1']:>14.3f} | {r['epochs_to_best']:>18} | "
              f"{r['epochs_used']:>11} | {r['trials']:>6} | {r['wall_s']:>8.0f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
