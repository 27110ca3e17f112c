"""Training: the per-worker loop (``loop``) and where it runs (``sessions``: local, Ray Tune
in-process, Ray Train DDP), the run set-up it shares with evaluation (``run``), optimisers and L2
(``optim``), learning-rate schedules (``lr_schedule``), checkpoints and metrics. ``harp train``
lives in ``harp.commands.train``; TorchTrainer runs in ``harp.train.ray_train``.

``train_loop`` and the sessions are imported when first asked for (PEP 562), not with the package:
they import torch, and the sweep's driver and trial processes read this package's small file
formats (``val_confusion``, ``checkpoint_staging``) before any torch import (a trial's torch must
bind its log handlers to the process's stderr, not to the trial's redirected one)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harp.train.loop import train_loop
    from harp.train.sessions import LocalSession, RayTrainSession, TrainSession, TuneSession

_LAZY = {
    "train_loop": "harp.train.loop",
    "LocalSession": "harp.train.sessions",
    "RayTrainSession": "harp.train.sessions",
    "TrainSession": "harp.train.sessions",
    "TuneSession": "harp.train.sessions",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LocalSession", "RayTrainSession", "TrainSession", "TuneSession", "train_loop"]
