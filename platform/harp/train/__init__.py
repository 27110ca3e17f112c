"""Training: the per-worker loop (``loop``) and where it runs (``sessions``: local, Ray Tune
in-process, Ray Train DDP), the run set-up it shares with evaluation (``run``), optimisers and L2
(``optim``), learning-rate schedules (``lr_schedule``), checkpoints and metrics. ``harp train``
lives in ``harp.commands.train``; TorchTrainer runs in ``harp.train.ray_train``."""
from __future__ import annotations

from harp.train.loop import train_loop
from harp.train.sessions import LocalSession, RayTrainSession, TrainSession, TuneSession

__all__ = ["LocalSession", "RayTrainSession", "TrainSession", "TuneSession", "train_loop"]
