"""One sweep's searcher driven by hand (no Ray trials): ask, report epochs, tell, N times, against
the study database given. Run as a script by test_postgres.py, two at once, to check that two
sweeps share one PostgreSQL server without touching each other's study.

usage: study_worker.py STORAGE_URL SWEEP_NAME NUM_TRIALS SEED OUT.json [START_AT]

START_AT (a time.time() value): both workers open the database at that moment, after their imports.
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path


def score(lr: float, epoch: int) -> float:
    """A made-up learning curve whose best value is a known function of the trial's lr."""
    return (1.0 - abs(math.log10(lr) + 2.5) / 3.0) * epoch / 3.0


def main(url: str, name: str, num: int, seed: int, out: str, start_at: float = 0.0) -> None:
    from harp.config import load_config
    from harp.tune.space import parse_space
    from harp.tune.sweep_dir import SweepPaths
    from harp.tune.tuner import build_searcher

    cfg = load_config([f"sweep.optuna_storage={url}", f"sweep.name={name}", "sweep.searcher=tpe", f"sweep.num_samples={num}",
                       "train.epochs=3", "sweep.metric=val_top1", "sweep.mode=max", f"sweep.seed={seed}"])
    space = parse_space({"params": {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
                                    "optim.name": {"type": "categorical", "values": ["sgd", "adamw"]}}}, name=name)
    time.sleep(max(0.0, start_at - time.time()))
    searcher = build_searcher(cfg, space, SweepPaths(Path(tempfile.mkdtemp()) / name), check_fresh=True)
    told = {}
    for i in range(num):
        trial_id = f"{name}_{i:05d}"
        params = searcher.suggest(trial_id)
        for epoch in (1, 2):
            searcher.on_trial_result(trial_id, {"epoch": epoch, "val_top1": score(params["optim.lr"], epoch)})
        searcher.on_trial_complete(trial_id, {"epoch": 3, "val_top1": score(params["optim.lr"], 3)})
        told[trial_id] = {"params": params, "value": score(params["optim.lr"], 3)}
    Path(out).write_text(json.dumps(told))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6]) if len(sys.argv) > 6 else 0.0)
