"""``harp evaluate``: a checkpoint on the test split with the multi-view protocol.

Each test video is seen as N temporal clips x M spatial crops (the MDT-Net paper of Xu, Cao and
Yi uses 10 x 3); the softmax
scores of its views are averaged and the average is the video's prediction. Reports top-1,
top-5, mean class accuracy and per-class accuracy, and writes the confusion matrix as CSV and
PNG next to ``metrics.json`` and per-video ``predictions.csv``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harp.config.schema import HarpConfig
from harp.confusion_figure import draw_confusion
from harp.data.dataset import VideoClipDataset
from harp.data.loader import batch_failed, batch_skipped, build_dataset, build_loader
from harp.errors import HarpError
from harp.models import build_model
from harp.train.checkpoint import check_checkpoint_dir, load_checkpoint, read_config, read_state
from harp.train.metrics import confusion_matrix, mean_class_accuracy, per_class_accuracy, topk_correct
from harp.train.run import autocast, autocast_dtype, default_device, forward_views, model_config, resolve_run

log = logging.getLogger("harp.evaluate")


def evaluate_checkpoint(
    checkpoint_dir: str | Path,
    *,
    split: str | None = None,
    num_clips: int | None = None,
    num_crops: int | None = None,
    cfg: HarpConfig | None = None,
    output_dir: str | Path | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint_dir`` on ``split`` (default ``eval.split``, i.e. test).

    ``cfg`` defaults to the checkpoint's own config.yaml; clips/crops/batch size default to its
    ``eval`` section. Returns the metrics dict (also written to ``output_dir/metrics.json``;
    ``output_dir`` defaults to ``<checkpoint_dir>/eval-<split>-<N>x<M>``). ``progress``: a bar
    over the batches (None: when stderr is a terminal, so logs and pipes stay clean).
    """
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    cfg = cfg if cfg is not None else read_config(checkpoint_dir)
    split = split or cfg.eval.split
    num_clips = int(num_clips or cfg.eval.num_clips)
    num_crops = int(num_crops or cfg.eval.num_crops)
    batch_size = int(batch_size or cfg.eval.batch_size)
    if num_crops not in (1, 3):
        raise HarpError(f"--crops {num_crops}: use 1 (centre) or 3 (left/centre/right)")
    output_dir = Path(output_dir) if output_dir else checkpoint_dir / f"eval-{split}-{num_clips}x{num_crops}"
    device = torch.device(device) if device is not None else default_device(cfg)

    run = resolve_run(cfg)
    saved_names = read_state(checkpoint_dir).get("class_names")
    if saved_names and list(saved_names) != run.class_names:
        raise HarpError(
            f"the checkpoint was trained on classes {saved_names[:5]}... but data {cfg.data.root} has {run.class_names[:5]}...; "
            "point data.* at the data set it was trained on"
        )
    # The weights come from the checkpoint: never fetch the pretraining source again.
    model = build_model(dataclasses.replace(model_config(cfg), pretrained="none"), len(run.class_names))
    model.to(device)
    load_checkpoint(checkpoint_dir, model, map_location=device)
    model.eval()
    amp = autocast_dtype(cfg, device)

    dataset = build_dataset(
        cfg, split, False, run.frames, run.frame_size, num_views_clips=num_clips, num_crops=num_crops, sampling=run.sampling
    )
    loader = build_loader(dataset, batch_size, shuffle=False, num_workers=cfg.data.num_workers)
    num_classes = len(run.class_names)
    all_scores: list[torch.Tensor] = []
    all_labels: list[torch.Tensor] = []
    all_index: list[torch.Tensor] = []
    skipped, failed = 0, []
    from tqdm import tqdm

    bar = tqdm(loader, desc=f"evaluate {split} ({num_clips}x{num_crops} views)", unit="batch",
               disable=None if progress is None else not progress, leave=False)
    with torch.no_grad():
        for batch in bar:
            with autocast(device, amp):
                logits, labels = forward_views(model, batch, device, run.model.mean, run.model.std)
            probs = logits.float().softmax(dim=-1).mean(dim=1)  # average the N x M views per video
            all_scores.append(probs.cpu())
            all_labels.append(labels.cpu())
            all_index.append(torch.as_tensor(batch.get("index", torch.arange(len(labels)))).view(-1).cpu())
            skipped += batch_skipped(batch)
            failed += batch_failed(batch)
    scores = torch.cat(all_scores)
    labels = torch.cat(all_labels)
    preds = scores.argmax(dim=1)
    hits = topk_correct(scores, labels, (1, 5))
    n = int(labels.numel())
    cm = confusion_matrix(preds, labels, num_classes)
    per_class = per_class_accuracy(cm)
    nll = float(-torch.log(scores.gather(1, labels.view(-1, 1)).clamp_min(1e-12)).mean())
    metrics: dict[str, Any] = {
        "split": split,
        "num_clips": num_clips,
        "num_crops": num_crops,
        "num_videos": n,
        "top1": hits[1] / n,
        "top5": hits[5] / n,
        "mean_class_accuracy": mean_class_accuracy(cm),
        "loss": nll,
        "skipped_files": skipped,
        "per_class_accuracy": {name: (None if math.isnan(a) else float(a)) for name, a in zip(run.class_names, per_class)},
        "checkpoint": str(checkpoint_dir.resolve()),
        "family": cfg.model.family,
    }
    if failed:
        metrics["failed_files"] = sorted(set(failed))

    output_dir.mkdir(parents=True, exist_ok=True)
    write_confusion_csv(output_dir / "confusion.csv", cm, run.class_names)
    title = f"{cfg.model.family} on {split}\n{num_clips} clips x {num_crops} crops, top-1 {metrics['top1']:.3f}"
    plot_confusion(output_dir / "confusion.png", cm, run.class_names, title=title)
    _write_predictions(output_dir / "predictions.csv", dataset, torch.cat(all_index), labels, preds, scores, run.class_names)
    metrics["confusion_matrix"] = cm.tolist()
    metrics["outputs"] = {name: str(output_dir / name) for name in ("metrics.json", "confusion.csv", "confusion.png", "predictions.csv")}
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def write_confusion_csv(path: str | Path, cm: np.ndarray, names: Sequence[str]) -> Path:
    """Rows = true class, columns = predicted class, with class names as header and first column."""
    path = Path(path)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true\\predicted", *names])
        for name, row in zip(names, cm):
            writer.writerow([name, *(int(v) for v in row)])
    return path


def plot_confusion(path: str | Path, cm: np.ndarray, names: Sequence[str], title: str = "") -> Path:
    """The confusion matrix as a PNG (row-normalised colours, counts written in small matrices)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    k = len(names)
    side = min(24.0, max(4.0, 0.35 * k + 2.0))
    fig, ax = plt.subplots(figsize=(side, side))
    draw_confusion(ax, cm, names, font=max(4, 10 - k // 12))
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _write_predictions(
    path: Path, dataset: VideoClipDataset, index: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, scores: torch.Tensor, names: Sequence[str]
) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "label", "predicted", "score"])
        for i, y, p, s in zip(index.tolist(), labels.tolist(), preds.tolist(), scores.max(dim=1).values.tolist()):
            writer.writerow([str(dataset.path(i)), names[y], names[p], f"{s:.4f}"])
