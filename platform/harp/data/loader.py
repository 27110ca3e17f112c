"""Build the dataset of a config and split, its DataLoader; read the batch dicts it yields and
check the bad-file budget.

The batch dict a loader yields (collated ``VideoClipDataset`` items):

- ``video``: uint8 ``(B, T, H, W, C)``; ``(B, V, T, H, W, C)`` for multi-view test sets
  (V = clips x crops). Convert on the device with ``harp.data.transforms.to_model_input``,
  which flattens (B, V) into N; average the V scores per video.
- ``label``: int64 ``(B,)``; ``index``: int64 ``(B,)`` (row of the split);
- ``skipped``: int64 ``(B,)`` files that failed and were replaced; ``failed``: list of B strings
  (``;``-joined paths, ``""`` when none).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from harp.config.schema import HarpConfig, SamplingConfig
from harp.data.dataset import DecodeSettings, VideoClipDataset
from harp.data.manifest import class_names, ensure_manifest, load_manifest
from harp.data.sampling import FrameSampler
from harp.data.transforms import ClipTransform
from harp.data.video_table import VideoTable
from harp.errors import ConfigError, HarpError

log = logging.getLogger("harp.data")


def flip_settings(cfg: HarpConfig, names: list[str]) -> tuple[bool, dict[int, int]]:
    """Whether training may flip horizontally, and which label indices a flip swaps."""
    if not cfg.augment.hflip or cfg.data.flip == "never":
        return False, {}
    if cfg.data.flip == "safe":
        return True, {}
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(n for n in {*cfg.data.flip_swap, *cfg.data.flip_swap.values()} if n not in index)
    if unknown and cfg.data.format != "synthetic":  # the synthetic preset names all ten classes; fewer may exist
        raise ConfigError(f"data.flip_swap names unknown classes {unknown}; classes are: {', '.join(names)}")
    return True, {index[a]: index[b] for a, b in cfg.data.flip_swap.items() if a in index and b in index}


def build_dataset(
    cfg: HarpConfig,
    split: str,
    train: bool,
    frames: int,
    frame_size: int,
    *,
    num_views_clips: int = 1,
    num_crops: int = 1,
    sampling: SamplingConfig | None = None,
) -> VideoClipDataset:
    """The clips of ``split`` (train / val / test) of the data set ``cfg.data`` describes, assembled
    from the config's sections: the manifest's rows (``data``), the frame sampler (``sampling``,
    ``data.short_video``), the transform (``augment``, ``data.flip``) and the decoder (``data``).

    ``frames`` and ``frame_size`` come from the model family (``harp.models.resolve``);
    ``cfg.sampling.num_frames`` overrides ``frames``. ``sampling`` is the run's sampling with the
    family's defaults filled in (``harp.train.run.resolve_run``'s ``RunData.sampling``: MDT-Net's
    adjacent frames per segment, ...); without it, ``cfg.sampling`` with ``uniform`` when unset.
    At test time an item is ``num_views_clips`` clips x ``num_crops`` crops. The manifest is built
    (and the synthetic data synthesised) on first use.
    """
    path = ensure_manifest(cfg.data)
    df = load_manifest(path)
    names = class_names(df)
    part = df[(df["split"] == split) & (df["error"] == "")]
    if part.empty:
        counts = df["split"].value_counts().to_dict()
        raise HarpError(f"split {split!r} of {path} has no usable videos (splits: {counts})")
    root = Path(cfg.data.root)
    if not root.is_dir() and df.attrs.get("root"):
        root = Path(df.attrs["root"])
    flip, swap = flip_settings(cfg, names)
    how = sampling or cfg.sampling
    sampler = FrameSampler.build(
        how.method or "uniform",
        num_frames=how.num_frames or frames,
        interval=how.interval,
        num_clips=how.num_clips,
        train=train,
        short_video=cfg.data.short_video,
        test_clips=num_views_clips,
        segment_frames=how.segment_frames or 1,
    )
    transform = ClipTransform(
        frame_size=frame_size,
        train=train,
        resize_short=cfg.augment.resize_short_side,
        scales=tuple(cfg.augment.crop_scales),
        flip=flip,
        jitter=cfg.augment.color_jitter,
        num_crops=num_crops,
    )
    return VideoClipDataset(
        VideoTable.from_manifest(part, root, names),
        sampler,
        transform,
        decode=DecodeSettings(cfg.data.decode_backend, cfg.data.decode_timeout_s),
        flip_swap=swap,
        seed=cfg.data.seed,
        max_retries=cfg.data.max_retries,
    )


def _worker_init(_: int) -> None:
    # One decode thread and one torch thread per loader worker: workers are the parallelism.
    torch.set_num_threads(1)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int,
    sampler: Sampler | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with worker processes (persistent), pinned memory on GPU machines, and a
    ``DistributedSampler`` (or any sampler) when given; yields the batch dicts described above."""
    kwargs: dict = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=2, worker_init_fn=_worker_init)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        **kwargs,
    )


def failed_paths(batch_failed: Iterable[str]) -> list[str]:
    """The file paths in a batch's ``failed`` field (``;``-joined per sample)."""
    return [p for entry in batch_failed for p in entry.split(";") if p]


def batch_failed(batch: Mapping[str, Any]) -> list[str]:
    """The paths of the files that failed to decode for this batch."""
    failed = batch.get("failed")
    if not failed:
        return []
    return failed_paths([failed] if isinstance(failed, str) else failed)


def batch_skipped(batch: Mapping[str, Any]) -> int:
    """How many samples of this batch replace a file that failed to decode."""
    skipped = batch.get("skipped")
    if skipped is None:
        return 0
    return int(torch.as_tensor(skipped).sum().item())


def check_skip_budget(skipped: int, seen: int, max_fraction: float, failed_paths: list[str]) -> None:
    """Raise HarpError naming the files when more than ``max_fraction`` of the ``seen`` samples
    had to be replaced because their file failed to decode."""
    if seen <= 0 or skipped <= 0:
        return
    fraction = skipped / seen
    if fraction > max_fraction:
        unique = list(dict.fromkeys(failed_paths))
        shown = ", ".join(unique[:10]) + (f" and {len(unique) - 10} more" if len(unique) > 10 else "")
        raise HarpError(
            f"{skipped} of {seen} samples ({fraction:.1%}) came from videos that failed to decode, above "
            f"data.max_bad_fraction={max_fraction:g}: {shown or 'no file names recorded'}. "
            "Fix or remove them and re-run `harp data index` (or raise data.max_bad_fraction)."
        )
