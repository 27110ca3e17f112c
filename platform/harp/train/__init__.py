"""Training: the per-worker loop (local, Ray Tune in-process, Ray Train DDP), optimisers and L2,
schedules, checkpoints, metrics. ``harp train`` lives in ``harp.commands.train``."""
from __future__ import annotations

from harp.train.loop import LocalSession, RayTrainSession, TrainSession, TuneSession, train_loop

__all__ = ["LocalSession", "RayTrainSession", "TrainSession", "TuneSession", "train_loop"]
