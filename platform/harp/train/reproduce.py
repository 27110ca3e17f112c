"""What a run's numbers depend on besides its hyperparameters, made explicit so that an exported
config retrains the same model, not a near one.

A CPU trial of a sweep runs with the trial's CPUs as torch's intra-op threads (Ray sets
``OMP_NUM_THREADS`` to them), while a retrain in a shell uses every core; the float reductions then
happen in another order and the validation curve drifts from the first epoch. So a run records
and applies:

- ``train.threads``: torch's intra-op threads. ``None`` in a config means "whatever this process
  has", and the run writes the number it actually used into its checkpoints' config, so an export
  carries it and a retrain sets it;
- ``train.deterministic``: torch's deterministic-algorithms switch (off by default: it costs speed
  on GPU, and CPU kernels of the tiny models are deterministic at a fixed thread count anyway);
- precision, loader workers and seeds are config keys already.

What cannot travel in a config (the harp and torch versions, the device type) is the run's
``RunEnvironment``: written next to each checkpoint (``environment.json``) and by export
(``best/environment.json``); a retrain compares it with its own and says once, before training,
what differs and that the numbers will then differ slightly. ``compare_histories`` puts a
retrain's per-epoch validation metrics beside the exported trial's.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from harp import __version__
from harp.config.schema import HarpConfig

ENVIRONMENT_FILE = "environment.json"
HISTORY_FILE = "history.json"
COMPARED_METRICS = ("val_loss", "val_top1", "val_top5")


@dataclasses.dataclass(frozen=True)
class RunEnvironment:
    """The facts outside the config that change a run's numbers."""

    harp: str
    torch: str
    device: str  # "cpu" or "cuda:<device name>"
    threads: int
    deterministic: bool

    def differences(self, other: RunEnvironment) -> list[str]:
        """``key: ours -> theirs`` for every fact that differs."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        return [f"{key} {mine[key]} -> {theirs[key]}" for key in mine if mine[key] != theirs[key]]


def apply_runtime(cfg: HarpConfig) -> HarpConfig:
    """Set torch's intra-op threads and deterministic switch from ``cfg``; returns ``cfg`` with
    ``train.threads`` filled in with the number this process uses (so checkpoints record it)."""
    if cfg.train.threads:
        if torch.get_num_threads() != cfg.train.threads:
            torch.set_num_threads(int(cfg.train.threads))
    # Both ways, not only on: a kept trial process (Tune's actor reuse) runs the next trial with
    # whatever the previous one set.
    torch.use_deterministic_algorithms(bool(cfg.train.deterministic), warn_only=False)
    torch.backends.cudnn.deterministic = bool(cfg.train.deterministic)
    if cfg.train.deterministic:
        torch.backends.cudnn.benchmark = False
    threads = torch.get_num_threads()
    if cfg.train.threads == threads:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=threads))


def current_environment(cfg: HarpConfig, device: torch.device) -> RunEnvironment:
    name = "cpu" if device.type != "cuda" else f"cuda:{torch.cuda.get_device_name(device)}"
    return RunEnvironment(
        harp=__version__,
        torch=torch.__version__,
        device=name,
        threads=int(cfg.train.threads or torch.get_num_threads()),
        deterministic=bool(cfg.train.deterministic),
    )


def write_environment(directory: str | Path, environment: RunEnvironment) -> Path:
    path = Path(directory) / ENVIRONMENT_FILE
    path.write_text(json.dumps(dataclasses.asdict(environment), indent=2, sort_keys=True) + "\n")
    return path


def read_environment(directory: str | Path) -> RunEnvironment | None:
    """The environment recorded in ``directory`` (a checkpoint or an export), or None."""
    path = Path(directory) / ENVIRONMENT_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    fields = {f.name for f in dataclasses.fields(RunEnvironment)}
    return RunEnvironment(**{k: v for k, v in data.items() if k in fields})


def describe_drift(recorded: RunEnvironment, now: RunEnvironment) -> str | None:
    """One line saying what differs from the exported run and what it means, or None."""
    differences = recorded.differences(now)
    if not differences:
        return None
    return (
        f"this retrain differs from the exported run in {', '.join(differences)}: expect slightly different "
        "numbers (float reductions run in another order); set them as recorded to reproduce it exactly"
    )


def write_history(directory: str | Path, history: Sequence[Mapping[str, Any]]) -> Path:
    """The run's per-epoch metrics so far (what a retrain is compared with)."""
    path = Path(directory) / HISTORY_FILE
    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()} for row in history]
    path.write_text(json.dumps(rows, indent=1) + "\n")
    return path


def read_history(directory: str | Path) -> list[dict[str, Any]]:
    path = Path(directory) / HISTORY_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def compare_histories(
    recorded: Sequence[Mapping[str, Any]], retrained: Sequence[Mapping[str, Any]], metrics: Sequence[str] = COMPARED_METRICS
) -> tuple[str, float]:
    """A side-by-side table of per-epoch validation metrics (exported trial vs this retrain) and
    the largest absolute difference over the epochs both have."""
    by_epoch = {int(row["epoch"]): row for row in recorded if "epoch" in row}
    lines = ["epoch  " + "  ".join(f"{m:>21}" for m in metrics), "       " + "  ".join(f"{'trial':>10} {'retrain':>10}" for _ in metrics)]
    worst = 0.0
    for row in retrained:
        epoch = int(row["epoch"])
        old = by_epoch.get(epoch, {})
        cells = []
        for metric in metrics:
            a, b = old.get(metric), row.get(metric)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isfinite(a) and math.isfinite(b):
                worst = max(worst, abs(float(a) - float(b)))
            cells.append(f"{_fmt(a):>10} {_fmt(b):>10}")
        lines.append(f"{epoch:>5}  " + "  ".join(cells))
    return "\n".join(lines), worst


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


__all__ = [
    "COMPARED_METRICS",
    "ENVIRONMENT_FILE",
    "HISTORY_FILE",
    "RunEnvironment",
    "apply_runtime",
    "compare_histories",
    "current_environment",
    "describe_drift",
    "read_environment",
    "read_history",
    "write_environment",
    "write_history",
]
