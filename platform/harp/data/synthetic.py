"""The embedded synthetic data set: classes that only time can tell apart.

``render_clip`` is a pure in-memory renderer (numpy only) of one clip of a class; ``synthesize``
writes a whole data set of real H.264 ``.mp4`` files (PyAV) in the folder-per-class layout with
split files, deterministic from a seed.

The classes come in pairs that mirror each other in time (``move_left``/``move_right``,
``move_up``/``move_down``, ``grow``/``shrink``, ``rotate_cw``/``rotate_ccw``), so a single frame
does not reveal which of the pair a clip belongs to:

- the object's position wraps around the frame (toroidal motion) and starts anywhere, so at any
  frame its position is uniform for both directions of a pair;
- sizes follow a log-scale ramp symmetric around a random mid size, and rotations start at a
  uniform random angle, so pooled over frames the two classes of a pair look the same;
- appearance is random and shared by all classes: shape, colour, textured background, static
  distractor shapes, sensor noise, camera shake, clip length and frame rate.

Two unpaired classes complete the ten: ``blink`` (the object appears and disappears) and
``still`` (nothing moves but the camera).

A horizontal flip turns ``move_left`` into ``move_right`` and ``rotate_cw`` into ``rotate_ccw``:
the ``synthetic`` data preset declares that swap (``data.flip=swap``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from harp.config.presets import SYNTHETIC_HFLIP_SWAP
from harp.errors import HarpError

log = logging.getLogger("harp.data")

CLASS_NAMES: tuple[str, ...] = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "grow",
    "shrink",
    "rotate_cw",
    "rotate_ccw",
    "blink",
    "still",
)
# Labels a horizontal flip exchanges: defined once, with the synthetic data preset.
HFLIP_SWAP = SYNTHETIC_HFLIP_SWAP
SHAPES = ("square", "circle", "bar", "triangle", "ell")
_ROTATION_SHAPES = ("square", "bar", "triangle", "ell")  # a circle does not show rotation
FPS_CHOICES = (12, 15, 24, 25, 30)
SPLIT_DIR = "splits"
CLASSES_FILE = "classes.txt"
INFO_FILE = "harp_synthetic.json"


def _luma(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A (size, size) field in [0, 1]: a random coarse grid, bilinearly upsampled."""
    grid = rng.random((cells + 1, cells + 1))
    pos = np.linspace(0, cells, size)
    i0 = np.minimum(pos.astype(int), cells - 1)
    f = pos - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]  # (size, cells+1)
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-mask of a unit shape in object coordinates (u right, v down)."""
    au, av_ = np.abs(u), np.abs(v)
    if shape == "square":
        return (au <= 1) & (av_ <= 1)
    if shape == "circle":
        return u * u + v * v <= 1
    if shape == "bar":
        return (au <= 1) & (av_ <= 0.35)
    if shape == "triangle":
        return (v <= 0.8) & (au <= (v + 1) * 0.6)
    if shape == "ell":
        return ((au <= 1) & (v >= 0.4) & (v <= 1)) | ((u >= -1) & (u <= -0.4) & (av_ <= 1))
    raise ValueError(f"unknown shape {shape!r}")


def make_scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background with static distractor shapes: float32 (size, size, 3) in [0, 255].

    Clips of one synthetic "group" share a scene, like the clips cut from one long video in UCF101.
    """
    # Mid-range backgrounds: tiny CPU models must find the moving object within a few hundred steps.
    base = rng.uniform(115, 140, size=3)
    tint = rng.uniform(-15, 15, size=3)
    field = _smooth_noise(rng, size, int(rng.integers(2, 6)))
    bg = base[None, None, :] + (field[..., None] - 0.5) * tint[None, None, :] * 2
    # Fine texture: stripes or checks of random frequency and orientation, low amplitude.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(0.15, 0.6)
    pattern = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq)
    if rng.random() < 0.5:
        pattern = pattern * np.sin((-xx * np.sin(angle) + yy * np.cos(angle)) * freq)
    bg = bg + pattern[..., None] * rng.uniform(0, 3)
    for _ in range(int(rng.integers(0, 3))):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        r = size * rng.uniform(0.05, 0.12)
        cx, cy, th = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0, 2 * np.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * np.cos(th) + dy * np.sin(th)) / r
        v = (-dx * np.sin(th) + dy * np.cos(th)) / r
        bg[_shape_mask(shape, u, v)] = rng.uniform(0, 255, size=3)
    return np.clip(bg, 0, 255).astype(np.float32)


def render_clip(
    class_name: str,
    rng: np.random.Generator,
    size: int,
    frames: int,
    *,
    scene: np.ndarray | None = None,
) -> np.ndarray:
    """Render one clip of ``class_name``: uint8 (frames, size, size, 3). Pure: depends only on rng.

    ``scene`` (from ``make_scene``) lets several clips share a background; by default each clip
    draws its own.
    """
    if class_name not in CLASS_NAMES:
        raise HarpError(f"unknown synthetic class {class_name!r}; choose one of: {', '.join(CLASS_NAMES)}")
    if size < 8 or frames < 1:
        raise HarpError(f"render_clip needs size >= 8 and frames >= 1 (got size={size}, frames={frames})")
    bg = make_scene(rng, size) if scene is None else scene.astype(np.float32)
    if bg.shape != (size, size, 3):
        raise HarpError(f"scene shape {bg.shape} does not match size {size}")
    mean_luma = _luma(bg.reshape(-1, 3).mean(0))
    rotating = class_name.startswith("rotate")
    shapes = _ROTATION_SHAPES if rotating else SHAPES
    shape = shapes[int(rng.integers(len(shapes)))]
    for _ in range(64):  # an object colour that stands out from the background
        colour = rng.uniform(0, 255, size=3)
        if abs(_luma(colour) - mean_luma) > 70:
            break
    radius = size * rng.uniform(0.12, 0.20)
    cx0, cy0 = rng.uniform(0, size), rng.uniform(0, size)
    theta0 = rng.uniform(0, 2 * np.pi)
    # Motion must survive tiny models' 32 px input and frame subsampling: several px per sampled step.
    speed = size * rng.uniform(0.05, 0.08)  # pixels per frame
    growth = np.log(rng.uniform(2.5, 3.5))  # total log-size change over the clip
    spin = rng.uniform(0.12, 0.2)  # radians per frame (x2 per sampled step stays below a square's pi/4 symmetry)
    period = int(rng.integers(3, 7))
    phase = int(rng.integers(0, 2 * period))
    stripes = rng.uniform(2.0, 5.0)
    shake = 1 if rng.random() < 0.25 else 0
    noise_sigma = rng.uniform(1.0, 3.0)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    mid = (frames - 1) / 2
    for t in range(frames):
        cx, cy, theta, r, visible = cx0, cy0, theta0, radius, True
        if class_name == "move_left":
            cx = cx0 - speed * t
        elif class_name == "move_right":
            cx = cx0 + speed * t
        elif class_name == "move_up":
            cy = cy0 - speed * t
        elif class_name == "move_down":
            cy = cy0 + speed * t
        elif class_name in ("grow", "shrink"):
            sign = 1.0 if class_name == "grow" else -1.0
            r = radius * float(np.exp(sign * growth * ((t - mid) / max(frames - 1, 1))))
        elif class_name == "rotate_cw":  # image y points down: a growing angle turns clockwise on screen
            theta = theta0 + spin * t
        elif class_name == "rotate_ccw":
            theta = theta0 - spin * t
        elif class_name == "blink":
            visible = ((t + phase) // period) % 2 == 0
        frame = bg.copy()
        if visible:
            # Toroidal offsets: the object wraps around the frame edges.
            dx = (xx - cx + size / 2) % size - size / 2
            dy = (yy - cy + size / 2) % size - size / 2
            c, s = np.cos(theta), np.sin(theta)
            u = (dx * c + dy * s) / r
            v = (-dx * s + dy * c) / r
            mask = _shape_mask(shape, u, v)
            texture = 0.85 + 0.15 * np.sign(np.sin(u[mask] * stripes))
            frame[mask] = colour[None, :] * texture[:, None]
        if shake:
            frame = np.roll(frame, (int(rng.integers(-shake, shake + 1)), int(rng.integers(-shake, shake + 1))), axis=(0, 1))
        frame += rng.normal(0.0, noise_sigma, size=frame.shape).astype(np.float32)
        np.clip(frame, 0, 255, out=frame)
        out[t] = frame.astype(np.uint8)
    return out


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int, *, crf: int = 23, gop: int = 12) -> None:
    """Encode uint8 (T, H, W, 3) frames as H.264 .mp4 (yuv420p, constant frame rate) with PyAV."""
    import av

    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise HarpError(f"H.264 yuv420p needs even frame sizes, got {w}x{h}")
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # One encoder thread: the output is byte-for-byte reproducible from the seed.
        # sc_threshold=0: keyframes exactly every `gop` frames (no scene-cut extras), so seeks cost what the probe says.
        stream.options = {"crf": str(crf), "preset": "veryfast", "g": str(gop), "threads": "1", "bf": "0", "sc_threshold": "0"}
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def _clip_plan(cfg: Any) -> list[dict[str, Any]]:
    """Every clip's class, name, group, size, length, fps and split: cheap, deterministic from the seed."""
    if not 2 <= cfg.num_classes <= len(CLASS_NAMES):
        raise HarpError(f"data.synth.num_classes={cfg.num_classes} must be between 2 and {len(CLASS_NAMES)}")
    if cfg.clips_per_class < 2:
        raise HarpError(f"data.synth.clips_per_class={cfg.clips_per_class} must be >= 2 (a train and a test clip)")
    if not 8 <= cfg.min_size <= cfg.max_size:
        raise HarpError(f"data.synth sizes must satisfy 8 <= min_size <= max_size (got {cfg.min_size}, {cfg.max_size})")
    if not 2 <= cfg.min_frames <= cfg.max_frames:
        raise HarpError(f"data.synth frames must satisfy 2 <= min_frames <= max_frames (got {cfg.min_frames}, {cfg.max_frames})")
    rng = np.random.default_rng([cfg.seed, 7919])
    sizes = [s for s in range(cfg.min_size, cfg.max_size + 1) if s % 16 == 0] or [cfg.min_size + cfg.min_size % 2]
    # Small sets get smaller groups, so that test and validation can both take whole groups.
    group_size = max(1, min(int(getattr(cfg, "clips_per_group", 3)), cfg.clips_per_class // 5))
    plan = []
    for label, name in enumerate(CLASS_NAMES[: cfg.num_classes]):
        n_groups = -(-cfg.clips_per_class // group_size)
        # Whole groups go to test (about a fifth, at least one group), like UCF101's official splits.
        n_test_groups = max(1, round(n_groups * 0.2)) if n_groups > 1 else 0
        for clip in range(cfg.clips_per_class):
            group = clip // group_size
            short = rng.random() < cfg.short_fraction
            frames = int(rng.integers(5, max(6, cfg.min_frames // 2))) if short else int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
            split = "test" if (group >= n_groups - n_test_groups) or (n_groups == 1 and clip == cfg.clips_per_class - 1) else "train"
            plan.append(
                {
                    "label": label,
                    "class": name,
                    "path": f"{name}/{name}_g{group + 1:02d}_c{clip % group_size + 1:02d}.mp4",
                    "group": group,
                    "size": int(sizes[int(rng.integers(len(sizes)))]),
                    "frames": frames,
                    "fps": int(FPS_CHOICES[int(rng.integers(len(FPS_CHOICES)))]),
                    "split": split,
                    "seed": [int(cfg.seed), label, clip],
                    "scene_seed": [int(cfg.seed), label, group, 1],
                }
            )
    return plan


def _write_one(root: str, item: dict[str, Any]) -> str:
    path = Path(root) / item["path"]
    if path.exists():  # resumable: files are written under a temporary name, then renamed
        return item["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    scene = make_scene(np.random.default_rng(item["scene_seed"]), item["size"])
    clip = render_clip(item["class"], np.random.default_rng(item["seed"]), item["size"], item["frames"], scene=scene)
    write_mp4(path, clip, item["fps"])
    return item["path"]


def synthesize(cfg: Any, root: str | os.PathLike, *, workers: int = 0, progress: bool = True) -> Path:
    """Write the synthetic data set under ``root``; returns root.

    Layout: ``<root>/<class>/<class>_gGG_cCC.mp4``, ``<root>/classes.txt`` (label order),
    ``<root>/splits/{train,test}.txt`` (one relative path per line; whole groups go to test), and
    ``<root>/harp_synthetic.json`` (the settings it was made with). Deterministic from ``cfg.seed``;
    existing files are kept, so an interrupted run resumes.
    """
    from tqdm import tqdm

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    plan = _clip_plan(cfg)
    workers = workers or min(len(plan), os.cpu_count() or 1)
    todo = [item for item in plan if not (root / item["path"]).exists()]
    bar = tqdm(total=len(todo), desc="synthesise", unit="clip", disable=not progress or not todo)
    if workers <= 1 or len(todo) <= 2:
        for item in todo:
            _write_one(str(root), item)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_write_one, [str(root)] * len(todo), todo, chunksize=4):
                bar.update()
    bar.close()
    classes = CLASS_NAMES[: cfg.num_classes]
    (root / CLASSES_FILE).write_text("\n".join(classes) + "\n")
    (root / SPLIT_DIR).mkdir(exist_ok=True)
    for split in ("train", "test"):
        lines = [item["path"] for item in plan if item["split"] == split]
        (root / SPLIT_DIR / f"{split}.txt").write_text("\n".join(lines) + "\n")
    info = {
        "settings": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg),
        "classes": list(classes),
        "hflip_swap": {k: v for k, v in HFLIP_SWAP.items() if k in classes},
    }
    (root / INFO_FILE).write_text(json.dumps(info, indent=1, default=str) + "\n")
    log.info("synthetic data set: %d clips of %d classes in %s", len(plan), len(classes), root)
    return root
