"""A video -> the clips its model was trained to see -> the top-k actions.

Each video is read with the model's own test-time protocol, from the config its weights carry:
its frame sampler (``sampling.*``, ``data.short_video``) places ``eval.num_clips`` clips over the
video, each seen as ``eval.num_crops`` crops (``harp evaluate``'s N x M views); the softmax scores
of the views are averaged. Decoding goes through ``harp.data`` (the probe, then the decoder at the
transform's size), so a clip here is the clip ``harp evaluate`` would have scored.

A file that is not a readable video raises ``VideoError`` with one line saying why; callers that
read many files report it and go on.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harp.data.dataset import DecodeSettings, VideoClipDataset
from harp.data.decode import DecodeError
from harp.data.determinism import as_key, item_rng
from harp.data.probe import probe_video
from harp.data.sampling import FrameSampler
from harp.data.transforms import ClipTransform, to_model_input
from harp.data.video_table import VideoTable
from harp.errors import HarpError
from harp.models import resolve
from harp.serve.model_loading import load_model
from harp.train.checkpoint import ModelCard
from harp.train.run import autocast, autocast_dtype, sampling_config

TOP_K = 5


class VideoError(HarpError):
    """A file that is not a usable video (unreadable, not a video, corrupt, too long)."""

    def __init__(self, message: str, path: Path | None = None, *, too_long: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.too_long = too_long


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How a video becomes the model's input: which frames, which crops, which decoder."""

    sampler: FrameSampler
    transform: ClipTransform
    decode: DecodeSettings
    num_clips: int
    num_crops: int
    seed: int = 0

    @property
    def views(self) -> int:
        return self.num_clips * self.num_crops

    @property
    def centre_view(self) -> int:
        """The middle clip's centre crop: the view ``explain`` shows (views are clip-major)."""
        return (self.num_clips // 2) * self.num_crops + self.num_crops // 2

    def describe(self) -> str:
        return f"{self.sampler.notation()}, {self.num_clips} clip(s) x {self.num_crops} crop(s)"


def inference_protocol(card: ModelCard, num_clips: int | None = None, num_crops: int | None = None) -> Protocol:
    """The model's test-time protocol from its config (``eval.num_clips`` x ``eval.num_crops``
    unless overridden), at its clip shape."""
    cfg = card.config
    clips, crops = int(num_clips or cfg.eval.num_clips), int(num_crops or cfg.eval.num_crops)
    if clips < 1 or crops not in (1, 3):
        raise HarpError(f"{clips} clips x {crops} crops: use at least 1 clip and 1 (centre) or 3 crops")
    how = sampling_config(cfg, resolve(card.model_config()))  # the family's defaults filled in, as training had them
    sampler = FrameSampler.build(
        str(how.method),
        num_frames=card.frames,
        interval=how.interval,
        num_clips=how.num_clips,
        train=False,
        short_video=cfg.data.short_video,
        test_clips=clips,
        segment_frames=int(how.segment_frames or 1),
    )
    transform = ClipTransform(frame_size=card.frame_size, train=False, resize_short=cfg.augment.resize_short_side, num_crops=crops)
    decode = DecodeSettings(cfg.data.decode_backend, cfg.data.decode_timeout_s)
    return Protocol(sampler, transform, decode, clips, crops, seed=cfg.data.seed)


@dataclasses.dataclass
class VideoClips:
    """One video read for its model: uint8 views ``(V, T, S, S, C)`` and what the probe found."""

    path: Path
    views: torch.Tensor
    frame_indices: np.ndarray | None  # (clips, T) source frames of each clip; None when a short video was lengthened
    fps: float
    frames: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


def read_video(path: str | Path, protocol: Protocol, *, max_duration_s: float | None = None) -> VideoClips:
    """Probe and decode one video into its model's views; ``VideoError`` (one line) when it cannot."""
    path = Path(path)
    info = probe_video(path)
    if info["error"]:
        reason = str(info["error"]).replace(str(path), path.name)  # the folder is the caller's business (a server's temp dir)
        raise VideoError(f"{path.name}: not a readable video ({reason})", path)
    duration = float(info["duration"])
    if max_duration_s is not None and duration > max_duration_s:
        raise VideoError(f"{path.name}: the video lasts {duration:.1f} s, longer than the {max_duration_s:g} s allowed; trim it", path, too_long=True)
    table = VideoTable.from_columns(
        path.parent, [path.name], [0], [int(info["frames"])], [int(info["width"])], [int(info["height"])], [float(info["keyframe_interval"])]
    )
    dataset = VideoClipDataset(table, protocol.sampler, protocol.transform, decode=protocol.decode, seed=protocol.seed, max_retries=0)
    rng = item_rng(as_key(0), protocol.seed)
    try:
        decoded = dataset.load_clips(0, rng)
    except DecodeError as exc:
        raise VideoError(f"{path.name}: could not decode it ({exc})", path) from exc
    views: list[torch.Tensor] = []
    for clip in decoded:
        views.extend(protocol.transform(torch.from_numpy(np.ascontiguousarray(clip)), rng)[0])
    n = int(info["frames"])
    lengthened = protocol.sampler.lengthen_short and n < protocol.sampler.frames_needed
    indices = None if lengthened else protocol.sampler.clips(n, item_rng(as_key(0), protocol.seed))
    return VideoClips(path, torch.stack(views), indices, float(info["fps"]), n, int(info["width"]), int(info["height"]))


@dataclasses.dataclass
class Prediction:
    """A video's averaged class probabilities and its top-k labels."""

    path: Path
    probabilities: torch.Tensor  # (K,) on the CPU
    top: list[tuple[str, float]]
    video: VideoClips

    def to_json(self) -> dict[str, Any]:
        return {
            "video": str(self.path),
            "top": [{"label": label, "probability": round(prob, 6)} for label, prob in self.top],
            "frames": self.video.frames,
            "duration_s": round(self.video.duration, 3),
        }


class Predictor:
    """A loaded model with its protocol: reads videos and scores them, several at a time."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str | torch.device | None = None,
        num_clips: int | None = None,
        num_crops: int | None = None,
        model: tuple[nn.Module, ModelCard] | None = None,
    ) -> None:
        self.model, self.card = model if model is not None else load_model(model_path, device)
        self.device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        self.protocol = inference_protocol(self.card, num_clips, num_crops)
        self.amp = autocast_dtype(self.card.config, self.device)
        # One user of the model at a time: explanations hook its layers, and a forward pass in
        # another thread would fire those hooks (a service scores and explains in threads).
        self.lock = threading.Lock()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.card.class_names

    def read(self, path: str | Path, *, max_duration_s: float | None = None) -> VideoClips:
        return read_video(path, self.protocol, max_duration_s=max_duration_s)

    def probabilities(self, videos: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One forward pass over the views of several videos; each video's view-averaged softmax (K,)."""
        counts = [int(v.shape[0]) for v in videos]
        chunk = max(1, int(self.card.config.eval.batch_size)) * self.protocol.views  # clips per forward pass, as `harp evaluate` runs
        parts = []
        with self.lock, torch.inference_mode(), autocast(self.device, self.amp):
            for clips in torch.cat(list(videos)).split(chunk):
                logits = self.model(to_model_input(clips.to(self.device, non_blocking=True), self.card.mean, self.card.std))
                parts.append(logits.float().softmax(dim=-1).cpu())
        return [part.mean(dim=0) for part in torch.split(torch.cat(parts), counts)]

    def top(self, probabilities: torch.Tensor, k: int = TOP_K) -> list[tuple[str, float]]:
        values, indices = probabilities.topk(min(k, probabilities.numel()))
        return [(self.class_names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]

    def predict_videos(self, videos: Sequence[VideoClips], k: int = TOP_K) -> list[Prediction]:
        return [Prediction(v.path, p, self.top(p, k), v) for v, p in zip(videos, self.probabilities([v.views for v in videos]))]

    def predict(self, path: str | Path, k: int = TOP_K) -> Prediction:
        return self.predict_videos([self.read(path)], k)[0]


__all__ = ["Prediction", "Predictor", "Protocol", "TOP_K", "VideoClips", "VideoError", "read_video", "inference_protocol"]
