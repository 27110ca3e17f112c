"""THE per-worker training loop: one copy, run locally, in a Ray Tune trial, or on Ray Train
workers; where it runs is its ``TrainSession`` (``harp.train.sessions``).

Per epoch the loop reports ``epoch`` (completed epochs, 1-based: ASHA's time_attr), ``train_loss``,
``val_loss``, ``val_top1``, ``val_top5``, ``lr``, ``clips_per_s``, ``data_wait_frac``,
``skipped_files`` (+ ``global_step``, ``epoch_time_s``, ``num_workers``), and saves a checkpoint
that resumes the run exactly: weights, optimiser, LR schedule and the model's RNG streams are in
the checkpoint, and the data order and augmentation are functions of (seed, epoch, sample)
(``harp.data.determinism``), so neither loader workers nor a restart change what the model sees.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from harp.config.schema import HarpConfig
from harp.data.dataset import VideoClipDataset
from harp.data.determinism import EpochSampler, ShardSampler
from harp.data.loader import batch_failed, batch_skipped, build_dataset, build_loader, check_skip_budget
from harp.errors import HarpError
from harp.models import build_model
from harp.train.checkpoint import load_checkpoint, save_checkpoint, unwrap
from harp.train.lr_schedule import build_lr_schedule
from harp.train.metrics import RunningSums, all_gather_strings, all_reduce_counts, confusion_matrix, topk_correct
from harp.train.optim import build_optimizer, decayed_params, l2_penalty
from harp.train.reproduce import apply_runtime, current_environment, read_history, write_environment, write_history
from harp.train.run import RunData, autocast, autocast_dtype, forward_views, micro_batch_size, model_config, resolve_run
from harp.train.sessions import TrainSession
from harp.train.val_confusion import write_val_confusion

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


def open_datasets(cfg: HarpConfig, run: RunData) -> tuple[VideoClipDataset, VideoClipDataset | None]:
    """(train, val or None when the manifest has no val split) datasets for the model's clip shape."""
    train = build_dataset(cfg, "train", True, run.frames, run.frame_size, sampling=run.sampling)
    if not run.split_sizes.get("val"):
        log.warning("the manifest has no val split: val_* metrics are NaN (set data.val_fraction > 0 and re-index)")
        return train, None
    return train, build_dataset(cfg, "val", False, run.frames, run.frame_size, sampling=run.sampling)


def _seed_everything(seed: int) -> None:
    """The model's random streams (initialisation, dropout); the data's are keyed, not seeded."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def train_loop(cfg: HarpConfig, session: TrainSession) -> list[dict[str, float]]:
    """Train ``cfg`` for ``train.epochs`` epochs under ``session``; returns the per-epoch metrics."""
    device = session.device
    rank, world = session.rank, session.world_size
    cfg = apply_runtime(cfg)  # threads + deterministic switch, recorded in every checkpoint's config
    environment = current_environment(cfg, device)
    run = resolve_run(cfg)
    num_classes = len(run.class_names)
    micro = micro_batch_size(cfg, world)
    accum = cfg.train.grad_accum_steps

    train_ds, val_ds = open_datasets(cfg, run)
    if len(train_ds) == 0:
        raise HarpError(f"the train split of {cfg.data.root} is empty; index the data set (`harp data index`) or check data.split")
    # One shuffling sampler for 1 and N workers: a permutation per (seed, epoch), and every item's
    # augmentation drawn from its key (seed, epoch, sample), independent of any RNG state: a
    # resumed run sees the same clips.
    train_sampler = EpochSampler(train_ds, rank, world, cfg.train.seed)
    drop_last = len(train_sampler) >= micro * 2  # never a 1-clip batch at the end (BatchNorm), never an empty epoch
    workers = cfg.data.num_workers
    train_loader = build_loader(train_ds, micro, shuffle=False, sampler=train_sampler, num_workers=workers, drop_last=drop_last)
    val_loader = None
    if val_ds is not None:
        val_loader = build_loader(val_ds, micro, shuffle=False, sampler=ShardSampler(len(val_ds), rank, world), num_workers=workers)

    micro_per_epoch = len(train_loader)
    if cfg.train.max_steps_per_epoch:
        micro_per_epoch = min(micro_per_epoch, cfg.train.max_steps_per_epoch * accum)
    steps_per_epoch = math.ceil(micro_per_epoch / accum)

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.train.deterministic  # its timing-based choice varies run to run
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    _seed_everything(cfg.train.seed)
    model = build_model(model_config(cfg), num_classes)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_lr_schedule(optimizer, cfg.optim, steps_per_epoch, cfg.train.epochs)
    model = session.prepare_model(model)
    amp = autocast_dtype(cfg, device)
    mean, std = run.model.mean, run.model.std

    start_epoch, global_step = 0, 0
    resume = session.resume_checkpoint()
    if resume is not None:
        state = load_checkpoint(resume, model, optimizer, scheduler, restore_rng=True, map_location=device)
        start_epoch, global_step = int(state["epoch"]), int(state["global_step"])
        log.info("resumed from %s at epoch %d (step %d)", resume, start_epoch, global_step)
    # every epoch of the run, resumed ones included, travels with each checkpoint (reproduce.HISTORY_FILE)
    record = [row for row in read_history(resume) if int(row.get("epoch", 0)) <= start_epoch] if resume is not None else []

    history: list[dict[str, float]] = []
    for epoch in range(start_epoch, cfg.train.epochs):
        train_sampler.set_epoch(epoch)
        train = _train_epoch(cfg, model, optimizer, scheduler, train_loader, micro_per_epoch, device, amp, mean, std)
        global_step += train["steps"]
        val = _validate(model, val_loader, device, amp, mean, std, num_classes) if val_loader is not None else None

        counts = RunningSums()
        counts.add(**{k: train[k] for k in ("loss_sum", "clips", "time", "wait", "skipped")})
        val_failed: list[str] = []
        confusion = None
        if val is not None:
            val_failed = val.pop("failed")
            confusion = all_reduce_counts(torch.from_numpy(val.pop("confusion")), device)
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
        record.append(metrics)
        if checkpoint_dir is not None:
            write_environment(checkpoint_dir, environment)
            write_history(checkpoint_dir, record)
            if confusion is not None:
                write_val_confusion(checkpoint_dir, run.class_names, confusion)
        session.report(metrics, checkpoint_dir)
        history.append(metrics)
    return history


def _check_finite(loss_sum: torch.Tensor, steps: int) -> None:
    """Fail the run as soon as the loss is NaN/inf, naming the usual fixes (not after hours of NaN)."""
    if not torch.isfinite(loss_sum):
        raise HarpError(f"training diverged: the loss is {loss_sum.item()} by optimiser step {steps} of this epoch; lower optim.lr or set train.clip_grad_norm")


def _iterate(loader: DataLoader) -> Iterator[Any]:
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
    loader: DataLoader,
    micro_per_epoch: int,
    device: torch.device,
    amp: torch.dtype | None,
    mean: Sequence[float],
    std: Sequence[float],
) -> dict[str, Any]:
    """One epoch of ``micro_per_epoch`` micro-batches on this rank: an optimiser step (and an LR
    schedule step) every ``grad_accum_steps`` of them, DDP's gradient sync only on those steps.
    Returns this rank's sums (loss, clips, time, data wait, skipped/failed files, steps): the
    caller reduces them over ranks, so the epoch's numbers are the whole split's."""
    model.train()
    accum = cfg.train.grad_accum_steps
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
        no_sync = model.no_sync() if (isinstance(model, nn.parallel.DistributedDataParallel) and not sync) else contextlib.nullcontext()
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
def _validate(
    model: nn.Module, loader: DataLoader, device: torch.device, amp: torch.dtype | None, mean: Sequence[float], std: Sequence[float],
    num_classes: int,
) -> dict[str, Any]:
    """This rank's share of the val split: sums of loss, top-1/top-5 hits, clips and skipped files
    and its confusion matrix (reduced over ranks by the caller), plus the failed files' paths."""
    model = unwrap(model)  # no DDP collectives: ranks may hold unequal shares of the val split
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    sums: dict[str, Any] = {"val_clips": 0.0, "val_top1": 0.0, "val_top5": 0.0, "val_skipped": 0.0}
    failed: list[str] = []
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for batch in _iterate(loader):
        with autocast(device, amp):
            logits, labels = forward_views(model, batch, device, mean, std)
        logits = logits.float().mean(dim=1)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        hits = topk_correct(logits, labels, (1, 5))
        sums["val_clips"] += labels.shape[0]
        sums["val_top1"] += hits[1]
        sums["val_top5"] += hits[5]
        confusion += confusion_matrix(logits.topk(1, dim=-1).indices, labels, num_classes)
        sums["val_skipped"] += batch_skipped(batch)
        failed += batch_failed(batch)
    sums["val_loss_sum"] = float(loss_sum.item())
    sums["failed"] = failed
    sums["confusion"] = confusion
    return sums
