"""PNG strips of sampled frames: the frames as the model saw them, and the same frames under their
heat maps, with the top labels written above (what ``harp explain`` saves and the page shows)."""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_TILE = 128  # frames are drawn at least this many pixels wide (tiny models see 32 px)
GAP = 4
HEAT_ALPHA = 0.5


def heat_overlay(frames: np.ndarray, heat: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """uint8 (T, H, W, 3) frames blended with the 'jet' colours of heat (T, H, W) in [0, 1]; the
    blend grows with the heat, so cold regions keep their own pixels."""
    from matplotlib import colormaps

    heat = np.clip(heat, 0.0, 1.0)
    colours = colormaps["jet"](heat)[..., :3] * 255.0
    weight = alpha * (0.1 + 0.9 * heat)[..., None]
    return np.clip(frames * (1.0 - weight) + colours * weight, 0, 255).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def strip_image(rows: Sequence[np.ndarray], *, title: Sequence[str] = (), captions: Sequence[str] = ()) -> Image.Image:
    """One image: ``title`` lines, then each row of frames (uint8 (T, H, W, 3)) side by side, with
    ``captions`` under the last row's frames."""
    t, h, w = rows[0].shape[:3]
    scale = max(1, -(-MIN_TILE // max(h, w)))
    tile_w, tile_h = w * scale, h * scale
    font, small = _font(16), _font(12)
    title_h = 22 * len(title) + (8 if title else 0)
    caption_h = 18 if captions else 0
    width = t * tile_w + (t + 1) * GAP
    height = title_h + len(rows) * (tile_h + GAP) + GAP + caption_h
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(title):
        draw.text((GAP + 2, 4 + 22 * i), line, fill=(20, 20, 20), font=font)
    for r, row in enumerate(rows):
        top = title_h + GAP + r * (tile_h + GAP)
        for i in range(t):
            tile = Image.fromarray(np.ascontiguousarray(row[i])).resize((tile_w, tile_h), Image.Resampling.NEAREST)
            image.paste(tile, (GAP + i * (tile_w + GAP), top))
    for i, caption in enumerate(captions[:t]):
        draw.text((GAP + i * (tile_w + GAP) + 2, height - caption_h + 2), caption, fill=(60, 60, 60), font=small)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def frame_captions(indices: np.ndarray | None, fps: float) -> list[str]:
    """'frame 12 · 0.48 s' under each sampled frame (empty when the frames were synthesised)."""
    if indices is None:
        return []
    return [f"frame {int(i)} · {int(i) / fps:.2f} s" if fps else f"frame {int(i)}" for i in indices]


__all__ = ["frame_captions", "heat_overlay", "png_bytes", "strip_image"]
