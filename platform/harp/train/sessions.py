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

import contextlib
import functools
import importlib
import json
import os
import shutil
import struct
import tempfile
import uuid
import weakref
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harp.config.schema import HarpConfig
from harp.numbers import signed
from harp.train.checkpoint import CONFIG, METRICS, STATE, WEIGHTS
from harp.train.checkpoint_staging import clear_staging, move_into_run, staging_root
from harp.train.reproduce import read_history
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
            metrics_file = path / METRICS
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
    The module is imported when first used: Ray takes seconds to import and a local run never needs it.

    A checkpoint to resume from is read where it lies when Ray's storage is a local filesystem
    (``Checkpoint.to_directory`` would copy it to ``/tmp/checkpoint_tmp_<uuid>`` and never delete
    it: gigabytes per restore at base size); one in remote storage is downloaded into a temporary
    directory that goes once the run has loaded it (at the next report, or at exit)."""

    _api = "ray.train"
    _download: Path | None = None

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        api = importlib.import_module(self._api)
        checkpoint = api.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        try:
            api.report(metrics, checkpoint=checkpoint, **self._report_options(checkpoint_dir))
        finally:  # Ray has copied (or moved) the directory into its storage
            if checkpoint_dir is not None:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
            self._drop_download()

    def _report_options(self, checkpoint_dir: Path | None) -> dict[str, Any]:
        """Extra keyword arguments of ``report`` for this checkpoint (none: Ray's own upload)."""
        return {}

    def resume_checkpoint(self) -> Path | None:
        checkpoint = importlib.import_module(self._api).get_checkpoint()
        return self._readable(checkpoint) if checkpoint is not None else None

    def _readable(self, checkpoint: Any) -> Path:
        """A local directory holding ``checkpoint`` (a ``ray.train.Checkpoint``): the checkpoint
        itself on a local filesystem, else a download."""
        import pyarrow.fs

        if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
            return Path(checkpoint.path)
        self._drop_download()
        target = Path(tempfile.mkdtemp(prefix="harp-resume-"))
        checkpoint.to_directory(str(target))
        self._download = target
        weakref.finalize(self, shutil.rmtree, target, True)
        return target

    def _drop_download(self) -> None:
        if self._download is not None:
            shutil.rmtree(self._download, ignore_errors=True)
            self._download = None


class TuneSession(_RayReportingSession):
    """In-process in a Ray Tune function trial: one worker, no TorchTrainer start-up.

    A trial resumes from its newest whole checkpoint on disk, not only the one Tune hands it:
    Tune hands the latest checkpoint its experiment state recorded, and that state is written
    every few seconds (and once more on Ctrl-C, while the trials still run), so a trial stopped
    with its driver has often persisted one or two newer epochs. Those epochs are reported again
    first (the newest with its checkpoint), so Tune, the searcher and the trial's history see
    every epoch, then training continues after the newest."""

    _api = "ray.tune"

    def __init__(self, cfg: HarpConfig, device: torch.device | None = None, *, trial_dir: Path | None = None) -> None:
        """``trial_dir``: the trial's directory in Tune's storage, when that is a local filesystem
        (where its checkpoint_NNNNNN directories are); None resumes from Tune's checkpoint alone."""
        self.device = device or default_device(cfg)
        self.trial_dir = trial_dir

    def resume_checkpoint(self) -> Path | None:
        import ray.tune

        handed = ray.tune.get_checkpoint()
        handed_dir = self._readable(handed) if handed is not None else None
        handed_epoch = _checkpoint_epoch(handed_dir) if handed_dir is not None else 0
        found = complete_checkpoints(self.trial_dir) if self.trial_dir is not None else []
        newer = [c for c in found if c[0] > handed_epoch]
        if not newer:
            return handed_dir
        epoch, newest, metrics = newer[-1]
        # the epochs in between, from the run's history in the checkpoint (or their own checkpoints)
        between = [row for row in read_history(newest) if handed_epoch < int(row.get("epoch") or 0) < epoch]
        for row in between or [found[2] for found in newer[:-1]]:
            self.report(_numbers(row), None)
        # Tune persists a reported checkpoint into its next checkpoint_NNNNNN, which may be
        # ``newest`` itself: it gets a copy, and the loop reads ``newest`` once that is done.
        copy = self.checkpoint_dir(epoch)
        shutil.copytree(newest, copy, dirs_exist_ok=True)
        self.report(_numbers(metrics), copy)
        return newest


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    """Metrics read back from JSON (where NaN was written as null) as numbers again."""
    return {k: float("nan") if v is None else v for k, v in row.items() if v is None or isinstance(v, (int, float))}


def _checkpoint_epoch(directory: Path) -> int:
    try:
        return int(json.loads((directory / METRICS).read_text()).get("epoch", 0))
    except (OSError, ValueError, TypeError):
        return 0


def complete_checkpoints(trial_dir: Path) -> list[tuple[int, Path, dict[str, Any]]]:
    """``(epoch, directory, metrics)`` of every whole harp checkpoint in a Tune trial directory,
    oldest epoch first. A directory a killed process left half-copied is skipped: its weights
    file must hold every byte its safetensors header promises, and ``state.pt`` must be a whole
    zip archive (torch.save's format)."""
    found: dict[int, tuple[int, Path, dict[str, Any]]] = {}
    for directory in sorted(trial_dir.glob("checkpoint_*")):
        try:
            metrics = json.loads((directory / METRICS).read_text())
            epoch = int(metrics["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        whole = (
            (directory / CONFIG).is_file()
            and _whole_safetensors(directory / WEIGHTS)
            and zipfile.is_zipfile(directory / STATE)
        )
        if whole:
            found[epoch] = (epoch, directory, metrics)
    return [found[epoch] for epoch in sorted(found)]


def _whole_safetensors(path: Path) -> bool:
    """Whether a safetensors file is as long as its header says (a truncated copy is not)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size >= 8 + length + end
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return False


class RayTrainSession(_RayReportingSession):
    """A Ray Train (V2) worker of a TorchTrainer: DDP over gloo (CPU) or NCCL (GPU).

    When the run's storage is a filesystem this node sees, checkpoints are written into the run
    directory's staging folder and moved into place at ``report`` (``harp.train.checkpoint_staging``),
    not copied there by Ray."""

    _api = "ray.train"

    def __init__(self) -> None:
        import ray.train  # function-level: Ray is slow to import and only a Ray Train worker gets here
        import ray.train.torch

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = ray.train.torch.get_device()
        self._storage = context.get_storage()
        self._staging = staging_root(self._storage) if self.is_main else None
        if self._staging is not None:
            clear_staging(self._staging)

    def checkpoint_dir(self, epoch: int) -> Path:
        if self._staging is None:
            return super().checkpoint_dir(epoch)
        # mkdir, not mkdtemp: the folder becomes the run's checkpoint, with the umask's permissions
        path = self._staging / f"epoch-{epoch:04d}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        try:
            super().report(metrics, checkpoint_dir)
        finally:  # an empty staging folder is not left in the run directory
            if self._staging is not None:
                with contextlib.suppress(OSError):
                    self._staging.rmdir()

    def _report_options(self, checkpoint_dir: Path | None) -> dict[str, Any]:
        if self._staging is None or checkpoint_dir is None:  # staging set: checkpoint_dir made the folder there
            return {}
        return {"checkpoint_upload_fn": functools.partial(move_into_run, storage=self._storage)}

    def prepare_model(self, model: nn.Module) -> nn.Module:
        import ray.train.torch  # function-level: see __init__

        return ray.train.torch.prepare_model(model)


__all__ = ["LocalSession", "RayTrainSession", "TrainSession", "TuneSession", "complete_checkpoints"]
