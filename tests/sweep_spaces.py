"""The tiny search space the sweep tests run (cluster, reliability, report): cheap trials on the
shared synthetic data set, no W&B, one trial at a time; each test package adds what it needs.
Imported as ``sweep_spaces`` (pytest puts ``tests/`` on ``sys.path``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_PARAMS = {"optim.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}


def tiny_space(data: dict[str, Any], output_dir: Path, name: str, *, epochs: int = 1, num_samples: int = 2, params: dict[str, Any] | None = None,
               config: dict[str, Any] | None = None, description: str = "test sweep", **sweep: Any) -> dict[str, Any]:
    """A search space dict: ``config`` and ``sweep`` settings on top of the tiny defaults below."""
    return {
        "description": f"{description} {name}",
        "config": {
            "data": data,
            "train.epochs": epochs,
            "train.batch_size": 4,
            "optim.name": "adamw",
            "optim.schedule": "none",
            "eval.num_clips": 1,
            "wandb.mode": "disabled",
            **(config or {}),
        },
        "sweep": {
            "name": name,
            "output_dir": str(output_dir),
            "num_samples": num_samples,
            "searcher": "random",
            "scheduler": "none",
            "max_concurrent_trials": 1,
            "cpus_per_trial": 1,
            **sweep,
        },
        "params": params or DEFAULT_PARAMS,
    }
