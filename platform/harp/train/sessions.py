"""Where one copy of the training loop runs: a ``TrainSession`` says its rank and world size, its
device, how it reports a finished epoch (metrics + a checkpoint directory) and where a resumed run
starts from. The loop (``harp.train.loop``) is the same everywhere; only this differs.

- ``LocalSession``: a plain process (``harp train`` with one worker); checkpoints live in the run
  directory, the best ones by the sweep metric are kept, ``best``/``latest`` point at them.
- ``TuneSession``: in-process inside a Ray Tune function trial (``ray.tune.report`` /
  ``ray.tune.get_checkpoint``), so a single-worker trial never pays TorchTrainer's start-up.
- ``RayTrainSession``: a Ray Train worker (``ray.train.report`` / ``ray.train.get_checkpoint``,
  DDP through ``ray.train.torch.prepare_model``).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from harp.config.schema import HarpConfig
from harp.numbers import signed
from harp.train.run import default_device


class TrainSession:
    """Where one copy of the loop runs. Subclasses override what differs."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        raise NotImplementedError

    def resume_checkpoint(self) -> Path | None:
        return None

    def checkpoint_dir(self, epoch: int) -> Path:
        """An empty directory for the checkpoint of ``epoch`` (completed epochs)."""
        return Path(tempfile.mkdtemp(prefix=f"harp-ckpt-{epoch:04d}-"))

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class LocalSession(TrainSession):
    """A plain process: checkpoints in ``run_dir/checkpoints/epoch_NNNN``.

    Keeps the ``keep`` best checkpoints by ``metric``/``mode`` plus the latest, and maintains
    ``run_dir/best`` and ``run_dir/latest`` symlinks and ``run_dir/history.jsonl``.
    """

    def __init__(
        self,
        cfg: HarpConfig,
        run_dir: str | Path,
        *,
        resume_from: str | Path | None = None,
        keep: int = 2,
        on_report: Callable[[dict[str, float], Path | None], None] | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metric = cfg.sweep.metric
        self.mode = cfg.sweep.mode
        self.keep = max(1, keep)
        self.on_report = on_report
        self.device = device or default_device(cfg)
        self._resume = Path(resume_from) if resume_from else None
        self.history: list[dict[str, float]] = []
        self.checkpoints: list[tuple[Path, float]] = []  # (dir, score on a higher-is-better scale), oldest first
        self.best: Path | None = None
        # A resumed run continues the ranking of the checkpoints already in its directory.
        for path in sorted((self.run_dir / "checkpoints").glob("epoch_*")):
            metrics_file = path / "metrics.json"
            if metrics_file.is_file():
                self.checkpoints.append((path, signed(json.loads(metrics_file.read_text()).get(self.metric), self.mode)))
        if self.checkpoints:
            self.best = max(self.checkpoints, key=lambda item: item[1])[0]

    def resume_checkpoint(self) -> Path | None:
        return self._resume

    def checkpoint_dir(self, epoch: int) -> Path:
        path = self.run_dir / "checkpoints" / f"epoch_{epoch:04d}"
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        self.history.append(dict(metrics))
        with open(self.run_dir / "history.jsonl", "a") as handle:
            handle.write(json.dumps(metrics) + "\n")
        if checkpoint_dir is not None:
            self.checkpoints.append((checkpoint_dir, signed(metrics.get(self.metric), self.mode)))
            ranked = sorted(self.checkpoints, key=lambda item: item[1], reverse=True)  # stable: earlier wins ties
            self.best = ranked[0][0]
            keep = {p for p, _ in ranked[: self.keep]} | {checkpoint_dir}
            for entry in list(self.checkpoints):
                if entry[0] not in keep:
                    shutil.rmtree(entry[0], ignore_errors=True)
                    self.checkpoints.remove(entry)
            _point(self.run_dir / "best", self.best)
            _point(self.run_dir / "latest", checkpoint_dir)
        if self.on_report is not None:
            self.on_report(metrics, checkpoint_dir)


def _point(link: Path, target: Path) -> None:
    """Atomically (re)point the relative symlink ``link`` at ``target``."""
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(target, link.parent))
    tmp.replace(link)


class _RayReportingSession(TrainSession):
    """Reports and resumes through a Ray API module (``ray.tune`` in a function trial, ``ray.train``
    in a TorchTrainer worker): both take ``report(metrics, checkpoint=...)`` and ``get_checkpoint()``.
    The module is imported when first used: Ray takes seconds to import and a local run never needs it."""

    _api = "ray.train"

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        api = importlib.import_module(self._api)
        checkpoint = api.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        try:
            api.report(metrics, checkpoint=checkpoint)
        finally:  # Ray has copied the directory into its storage
            if checkpoint_dir is not None:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)

    def resume_checkpoint(self) -> Path | None:
        checkpoint = importlib.import_module(self._api).get_checkpoint()
        return Path(checkpoint.to_directory()) if checkpoint is not None else None


class TuneSession(_RayReportingSession):
    """In-process in a Ray Tune function trial: one worker, no TorchTrainer start-up."""

    _api = "ray.tune"

    def __init__(self, cfg: HarpConfig, device: torch.device | None = None) -> None:
        self.device = device or default_device(cfg)


class RayTrainSession(_RayReportingSession):
    """A Ray Train (V2) worker of a TorchTrainer: DDP over gloo (CPU) or NCCL (GPU)."""

    _api = "ray.train"

    def __init__(self) -> None:
        import ray.train  # function-level: Ray is slow to import and only a Ray Train worker gets here
        import ray.train.torch

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = ray.train.torch.get_device()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        import ray.train.torch  # function-level: see __init__

        return ray.train.torch.prepare_model(model)


__all__ = ["LocalSession", "RayTrainSession", "TrainSession", "TuneSession"]
