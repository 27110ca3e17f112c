"""A predicted video's pictures: its sampled frames, and the explanation strip (the frames under
their heat maps, titled with the top-3 labels and how the heat was made)."""
from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from harp.serve.explain import Heatmap, explain_clip
from harp.serve.predict import Prediction, Predictor
from harp.serve.strip import frame_captions, heat_overlay, strip_image

TOP_LABELS = 3


@dataclasses.dataclass
class Explanation:
    heatmap: Heatmap
    strip: Image.Image  # frames (top row) and their overlays (bottom row)
    frames: Image.Image  # the sampled frames alone


def _centre_clip_indices(prediction: Prediction, predictor: Predictor) -> np.ndarray | None:
    """The source frame numbers of the centre view's clip (None when a short video was lengthened)."""
    indices = prediction.video.frame_indices
    return None if indices is None else indices[min(predictor.protocol.num_clips // 2, len(indices) - 1)]


def frames_strip(predictor: Predictor, prediction: Prediction) -> Image.Image:
    """The centre view's sampled frames as the model saw them, with frame numbers and times."""
    clip = prediction.video.views[predictor.protocol.centre_view].numpy()
    return strip_image([clip], captions=frame_captions(_centre_clip_indices(prediction, predictor), prediction.video.fps))


def explain_prediction(predictor: Predictor, prediction: Prediction, target: str | None = None) -> Explanation:
    """Heat over the centre view for ``target`` (default: the video's top class); the strip's title
    has the top-3 labels."""
    clip = prediction.video.views[predictor.protocol.centre_view]
    label = target or prediction.top[0][0]
    index = predictor.class_names.index(label)
    with predictor.lock:
        heatmap = explain_clip(predictor.model, predictor.card, clip, index)
    frames = clip.numpy()
    title = [
        "   ".join(f"{i + 1}. {name} {prob:.1%}" for i, (name, prob) in enumerate(prediction.top[:TOP_LABELS])),
        f"{prediction.path.name} · {predictor.card.family} · heat for '{label}': {heatmap.method}",
    ]
    captions = frame_captions(_centre_clip_indices(prediction, predictor), prediction.video.fps)
    strip = strip_image([frames, heat_overlay(frames, heatmap.heat)], title=title, captions=captions)
    return Explanation(heatmap, strip, strip_image([frames], captions=captions))


__all__ = ["Explanation", "TOP_LABELS", "explain_prediction", "frames_strip"]
