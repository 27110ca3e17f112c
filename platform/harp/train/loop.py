"""THE per-worker training loop: one copy, run locally, in a Ray Tune trial, or on Ray Train workers.

Where it runs is a ``TrainSession``: its rank and world size, its device, how it reports a
finished epoch (metrics + a checkpoint directory) and where a resumed run starts from.

- ``LocalSession``: a plain process (``harp train`` with one worker); checkpoints live in the run
  directory, the best ones by the sweep metric are kept, ``best``/``latest`` point at them.
- ``TuneSession``: in-process inside a Ray Tune function trial (``ray.tune.report`` /
  ``ray.tune.get_checkpoint``), so a single-worker trial never pays TorchTrainer's start-up.
- ``RayTrainSession``: a Ray Train worker (``ray.train.report`` / ``ray.train.get_checkpoint``,
  DDP through ``ray.train.torch.prepare_model``, a DistributedSampler over the data).

Per epoch the loop reports ``epoch`` (completed epochs, 1-based: ASHA's time_attr), ``train_loss``,
``val_loss``, ``val_top1``, ``val_top5``, ``lr``, ``clips_per_s``, ``data_wait_frac``,
``skipped_files`` (+ ``global_step``, ``epoch_time_s``, ``num_workers``), and saves a checkpoint
that resumes the run exactly (weights, optimiser, scheduler, RNG; data order and augmentation are
functions of (seed, epoch, sample), so loader workers do not break it).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler, Sampler

from harp.config.schema import HarpConfig
from harp.errors import ConfigError, HarpError
from harp.train.checkpoint import load_checkpoint, save_checkpoint, unwrap
from harp.train.metrics import RunningSums, all_gather_strings, topk_correct
from harp.train.optim import build_optimizer, decayed_params, l2_penalty
from harp.train.schedule import build_scheduler

log = logging.getLogger("harp.train")

REPORTED_METRICS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_top1",
    "val_top5",
    "lr",
    "clips_per_s",
    "data_wait_frac",
    "skipped_files",
)


# --------------------------------------------------------------------------------------------
# Sessions: where the loop runs
# --------------------------------------------------------------------------------------------
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


def default_device(cfg: HarpConfig) -> torch.device:
    """cuda when a GPU exists and train.use_gpu is not False; an explicit True without a GPU is an error."""
    has_gpu = torch.cuda.is_available()
    if cfg.train.use_gpu and not has_gpu:
        raise HarpError("train.use_gpu=true but no CUDA GPU is visible; set train.use_gpu=false or run on a GPU node")
    return torch.device("cuda", torch.cuda.current_device()) if (has_gpu and cfg.train.use_gpu is not False) else torch.device("cpu")


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
        self.checkpoints: list[tuple[Path, float]] = []  # (dir, score), oldest first
        self.best: Path | None = None
        # A resumed run continues the ranking of the checkpoints already in its directory.
        for path in sorted((self.run_dir / "checkpoints").glob("epoch_*")):
            metrics_file = path / "metrics.json"
            if metrics_file.is_file():
                self.checkpoints.append((path, self._score(json.loads(metrics_file.read_text()))))
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

    def _score(self, metrics: Mapping[str, float]) -> float:
        value = float(metrics.get(self.metric, float("nan")))
        if math.isnan(value):
            return -math.inf
        return value if self.mode == "max" else -value

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        self.history.append(dict(metrics))
        with open(self.run_dir / "history.jsonl", "a") as handle:
            handle.write(json.dumps(metrics) + "\n")
        if checkpoint_dir is not None:
            self.checkpoints.append((checkpoint_dir, self._score(metrics)))
            ranked = sorted(self.checkpoints, key=lambda item: item[1], reverse=True)  # stable: earlier wins ties
            self.best = ranked[0][0]
            keep = {p for p, _ in ranked[: self.keep]} | {checkpoint_dir}
            for path, _ in list(self.checkpoints):
                if path not in keep:
                    shutil.rmtree(path, ignore_errors=True)
                    self.checkpoints.remove((path, _))
            _point(self.run_dir / "best", self.best)
            _point(self.run_dir / "latest", checkpoint_dir)
        if self.on_report is not None:
            self.on_report(metrics, checkpoint_dir)


def _point(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(target, link.parent))
    tmp.replace(link)


class _RayReportingSession(TrainSession):
    """Reports and resumes through a Ray API module (``ray.tune`` in a function trial, ``ray.train``
    in a TorchTrainer worker): both take ``report(metrics, checkpoint=...)`` and ``get_checkpoint()``."""

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
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = ray.train.torch.get_device()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)


# --------------------------------------------------------------------------------------------
# Data and model set-up (shared with harp.evaluate)
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunData:
    """What a run needs from the data pipeline, resolved once."""

    class_names: list[str]
    model: Any  # harp.models.registry.ResolvedModel
    frames: int
    frame_size: int
    split_sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # usable videos per split


def resolve_run(cfg: HarpConfig) -> RunData:
    """Manifest (synthesised/indexed when missing), class names, and the model's clip shape.

    ``sampling.num_frames`` overrides the family's default frames, for the model as well as the
    clips (a family with a fixed time embedding must be built for the frames it will see).
    """
    from harp.data.manifest import class_names, ensure_manifest, load_manifest
    from harp.models import resolve

    df = load_manifest(ensure_manifest(cfg.data, progress=False))
    names = class_names(df)
    sizes = {str(k): int(v) for k, v in df[df["error"] == ""]["split"].value_counts().items()}
    resolved = resolve(model_config(cfg), len(names))
    return RunData(class_names=list(names), model=resolved, frames=resolved.frames, frame_size=resolved.frame_size, split_sizes=sizes)


def model_config(cfg: HarpConfig):
    """cfg.model with ``sampling.num_frames`` applied as the model's frames (when set)."""
    frames, sampled = cfg.model.frames, cfg.sampling.num_frames
    if sampled and frames and sampled != frames:
        raise ConfigError(f"model.frames={frames} but sampling.num_frames={sampled}: the model would get clips of another length; set one of them")
    if sampled and not frames:
        return dataclasses.replace(cfg.model, frames=sampled)
    return cfg.model


def build_run_model(cfg: HarpConfig, num_classes: int) -> nn.Module:
    from harp.models import build_model

    return build_model(model_config(cfg), num_classes)


def autocast_dtype(cfg: HarpConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on GPU (precision=auto) or when asked for; None -> fp32."""
    if cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def batch_failed(batch: Mapping[str, Any]) -> list[str]:
    """The paths of files that failed to decode for this batch (``;``-joined per sample)."""
    failed = batch.get("failed")
    if not failed:
        return []
    from harp.data.loader import failed_paths

    return failed_paths([failed] if isinstance(failed, str) else failed)


def batch_skipped(batch: Mapping[str, Any]) -> int:
    skipped = batch.get("skipped")
    if skipped is None:
        return 0
    return int(torch.as_tensor(skipped).sum().item())


def forward_views(model: nn.Module, batch: Mapping[str, Any], device: torch.device, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, V, K), labels (B,)) for a batch of B samples with V views each (V=1 in training).

    The loader yields uint8 clips; normalisation happens here, on the device.
    """
    clip = batch["video"].to(device, non_blocking=True)
    labels = torch.as_tensor(batch["label"]).to(device, non_blocking=True).long().view(-1)
    x = model_input(clip, mean, std)
    logits = model(x)
    views = logits.shape[0] // max(1, labels.shape[0])
    if views * labels.shape[0] != logits.shape[0]:
        raise HarpError(f"{logits.shape[0]} clips for {labels.shape[0]} labels: the loader's views do not divide evenly")
    return logits.view(labels.shape[0], views, -1), labels


def model_input(clip: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (..., T, H, W, C) -> normalised float (N, C, T, H, W), on the clip's device."""
    from harp.data.transforms import to_model_input

    return to_model_input(clip, mean, std)


def open_datasets(cfg: HarpConfig, run: RunData) -> tuple[Any, Any | None]:
    """(train, val or None when the manifest has no val split) datasets for the model's clip shape."""
    from harp.data.loader import build_dataset

    train = build_dataset(cfg, "train", True, run.frames, run.frame_size)
    if not run.split_sizes.get("val"):
        log.warning("the manifest has no val split: val_* metrics are NaN (set data.val_fraction > 0 and re-index)")
        return train, None
    return train, build_dataset(cfg, "val", False, run.frames, run.frame_size)


def make_loader(dataset: Any, batch_size: int, *, sampler: Sampler, num_workers: int, drop_last: bool = False) -> Any:
    from harp.data.loader import build_loader

    return build_loader(dataset, batch_size, shuffle=False, num_workers=num_workers, sampler=sampler, drop_last=drop_last)


class EpochSampler(Sampler):
    """Yields ``(seed, epoch, index)`` keys: a DistributedSampler's order, tagged with the epoch.

    Paired with ``SeededItems``, every training sample's random augmentation becomes a pure
    function of (seed, epoch, index): independent of loader worker count and of persistent
    workers carrying their RNG across epochs, so a resumed run sees exactly the same clips.
    """

    def __init__(self, dataset: Any, rank: int, world_size: int, seed: int) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return ((self.seed, self.epoch, i) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class SeededItems(torch.utils.data.Dataset):
    """Dataset view keyed by ``(seed, epoch, index)``: torch's RNG is seeded from the key for the
    item (inside ``fork_rng``, so the caller's RNG stream is untouched)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        seed, epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(1, np.uint64)[0] >> 1))
            return self.dataset[index]

    def __getattr__(self, name: str) -> Any:  # path(), class_names, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class ShardSampler(Sampler[int]):
    """Every index exactly once across ranks (no padding, unlike DistributedSampler): exact eval counts."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def micro_batch_size(cfg: HarpConfig, world_size: int) -> int:
    """Per-worker, per-step batch: train.batch_size is global, reached with grad_accum_steps."""
    per = world_size * cfg.train.grad_accum_steps
    if cfg.train.batch_size % per:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is not divisible by train.num_workers x train.grad_accum_steps "
            f"= {world_size} x {cfg.train.grad_accum_steps}; pick a multiple of {per}"
        )
    return cfg.train.batch_size // per


def check_skip_budget(skipped: int, seen: int, max_fraction: float, failed_paths: list[str]) -> None:
    """The data pipeline's bad-file budget: HarpError naming the files past data.max_bad_fraction."""
    from harp.data.loader import check_skip_budget as check

    check(skipped, seen, max_fraction, failed_paths)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def train_loop(cfg: HarpConfig, session: TrainSession) -> list[dict[str, float]]:
    """Train ``cfg`` for ``train.epochs`` epochs under ``session``; returns the per-epoch metrics."""
    device = session.device
    rank, world = session.rank, session.world_size
    run = resolve_run(cfg)
    num_classes = len(run.class_names)
    micro = micro_batch_size(cfg, world)
    accum = cfg.train.grad_accum_steps

    train_ds, val_ds = open_datasets(cfg, run)
    if len(train_ds) == 0:
        raise HarpError(f"the train split of {cfg.data.root} is empty; index the data set (`harp data index`) or check data.split")
    # One shuffling sampler for 1 and N workers: a permutation per (seed, epoch), and augmentation
    # seeded per (seed, epoch, sample), independent of any RNG state: a resumed run sees the same clips.
    train_sampler = EpochSampler(train_ds, rank, world, cfg.train.seed)
    drop_last = len(train_sampler) >= micro * 2  # never a 1-clip batch at the end (BatchNorm), never an empty epoch
    train_loader = make_loader(SeededItems(train_ds), micro, sampler=train_sampler, num_workers=cfg.data.num_workers, drop_last=drop_last)
    val_loader = None
    if val_ds is not None:
        val_loader = make_loader(val_ds, micro, sampler=ShardSampler(len(val_ds), rank, world), num_workers=cfg.data.num_workers)

    micro_per_epoch = len(train_loader)
    if cfg.train.max_steps_per_epoch:
        micro_per_epoch = min(micro_per_epoch, cfg.train.max_steps_per_epoch * accum)
    steps_per_epoch = math.ceil(micro_per_epoch / accum)

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    _seed_everything(cfg.train.seed)
    model = build_run_model(cfg, num_classes)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, steps_per_epoch, cfg.train.epochs)
    model = session.prepare_model(model)
    amp = autocast_dtype(cfg, device)
    mean, std = run.model.mean, run.model.std

    start_epoch, global_step = 0, 0
    resume = session.resume_checkpoint()
    if resume is not None:
        state = load_checkpoint(resume, model, optimizer, scheduler, restore_rng=True, map_location=device)
        start_epoch, global_step = int(state["epoch"]), int(state["global_step"])
        log.info("resumed from %s at epoch %d (step %d)", resume, start_epoch, global_step)

    history: list[dict[str, float]] = []
    for epoch in range(start_epoch, cfg.train.epochs):
        train_sampler.set_epoch(epoch)
        train = _train_epoch(cfg, model, optimizer, scheduler, train_loader, micro_per_epoch, device, amp, mean, std, world)
        global_step += train["steps"]
        val = _validate(model, val_loader, device, amp, mean, std) if val_loader is not None else None

        counts = RunningSums()
        counts.add(**{k: train[k] for k in ("loss_sum", "clips", "time", "wait", "skipped")})
        val_failed: list[str] = []
        if val is not None:
            val_failed = val.pop("failed")
            counts.add(**val)
        totals = counts.reduce(device)
        failed = all_gather_strings(train["failed"] + val_failed)
        seen = totals["clips"] + totals.get("val_clips", 0.0)
        skipped = totals["skipped"] + totals.get("val_skipped", 0.0)
        check_skip_budget(int(skipped), int(seen), cfg.data.max_bad_fraction, failed)

        mean_time = totals["time"] / world
        metrics: dict[str, float] = {
            "epoch": epoch + 1,
            "train_loss": totals["loss_sum"] / max(1.0, totals["clips"]),
            "val_loss": _ratio(totals, "val_loss_sum", "val_clips"),
            "val_top1": _ratio(totals, "val_top1", "val_clips"),
            "val_top5": _ratio(totals, "val_top5", "val_clips"),
            "lr": float(optimizer.param_groups[0]["lr"]),
            "clips_per_s": totals["clips"] / mean_time if mean_time > 0 else 0.0,
            "data_wait_frac": totals["wait"] / totals["time"] if totals["time"] > 0 else 0.0,
            "skipped_files": int(skipped),
            "global_step": global_step,
            "epoch_time_s": mean_time,
            "num_workers": world,
        }
        checkpoint_dir = None
        if session.is_main:
            checkpoint_dir = session.checkpoint_dir(epoch + 1)
            save_checkpoint(
                checkpoint_dir,
                model=model,
                cfg=cfg,
                metrics=metrics,
                optimizer=optimizer,
                scheduler=scheduler,
                epoch=epoch + 1,
                global_step=global_step,
                num_classes=num_classes,
                class_names=run.class_names,
            )
        session.report(metrics, checkpoint_dir)
        history.append(metrics)
    return history


def _check_finite(loss_sum: torch.Tensor, steps: int) -> None:
    if not torch.isfinite(loss_sum):
        raise HarpError(f"training diverged: the loss is {loss_sum.item()} by optimiser step {steps} of this epoch; lower optim.lr or set train.clip_grad_norm")


def _iterate(loader: Any) -> Iterator[Any]:
    """iter(loader) without touching torch's global RNG (a DataLoader draws its workers' base seed
    from it, once per iterator, or not at all when persistent workers are reset), so the model's
    random stream (dropout) does not depend on loader workers and a resumed run replays it."""
    with torch.random.fork_rng(devices=[]):
        return iter(loader)


def _ratio(totals: Mapping[str, float], num: str, den: str) -> float:
    d = totals.get(den, 0.0)
    return totals.get(num, 0.0) / d if d > 0 else float("nan")


def _train_epoch(
    cfg: HarpConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader: Any,
    micro_per_epoch: int,
    device: torch.device,
    amp: torch.dtype | None,
    mean: Sequence[float],
    std: Sequence[float],
    world: int,
) -> dict[str, Any]:
    model.train()
    accum = cfg.train.grad_accum_steps
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    l2_params = list(decayed_params(optimizer)) if cfg.optim.l2 > 0 else []
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    clips = skipped = steps = 0
    failed: list[str] = []
    wait = 0.0
    check_every = 50 if device.type == "cuda" else 1  # the check syncs the GPU: not every step there
    optimizer.zero_grad(set_to_none=True)
    start = time.perf_counter()
    iterator = _iterate(loader)
    for i in range(micro_per_epoch):
        t0 = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:  # pragma: no cover - len(loader) said otherwise
            break
        wait += time.perf_counter() - t0
        group_start = (i // accum) * accum
        group_size = min(accum, micro_per_epoch - group_start)
        sync = i + 1 == group_start + group_size
        no_sync = model.no_sync() if (ddp and not sync) else contextlib.nullcontext()
        with no_sync:
            with autocast(device, amp):
                logits, labels = forward_views(model, batch, device, mean, std)
            logits = logits.float().mean(dim=1)
            loss = F.cross_entropy(logits, labels, label_smoothing=cfg.optim.label_smoothing)
            total = loss
            penalty = l2_penalty(l2_params, cfg.optim.l2)
            if penalty is not None:
                total = total + penalty
            (total / group_size).backward()
        loss_sum += loss.detach().double() * labels.shape[0]
        clips += labels.shape[0]
        skipped += batch_skipped(batch)
        failed += batch_failed(batch)
        if sync:
            if cfg.train.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
            if steps % check_every == 0:
                _check_finite(loss_sum, steps)
    del iterator
    _check_finite(loss_sum, steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {
        "loss_sum": float(loss_sum.item()),
        "clips": clips,
        "time": time.perf_counter() - start,
        "wait": wait,
        "skipped": skipped,
        "failed": failed,
        "steps": steps,
    }


@torch.no_grad()
def _validate(model: nn.Module, loader: Any, device: torch.device, amp: torch.dtype | None, mean, std) -> dict[str, float]:
    model = unwrap(model)  # no DDP collectives: ranks may hold unequal shares of the val split
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    sums: dict[str, Any] = {"val_clips": 0.0, "val_top1": 0.0, "val_top5": 0.0, "val_skipped": 0.0}
    failed: list[str] = []
    for batch in _iterate(loader):
        with autocast(device, amp):
            logits, labels = forward_views(model, batch, device, mean, std)
        logits = logits.float().mean(dim=1)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        hits = topk_correct(logits, labels, (1, 5))
        sums["val_clips"] += labels.shape[0]
        sums["val_top1"] += hits[1]
        sums["val_top5"] += hits[5]
        sums["val_skipped"] += batch_skipped(batch)
        failed += batch_failed(batch)
    sums["val_loss_sum"] = float(loss_sum.item())
    sums["failed"] = failed
    return sums
