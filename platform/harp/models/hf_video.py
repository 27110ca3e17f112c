"""Video transformers on Hugging Face transformers' own classes: TimeSformer, ViViT, VideoMAE.

Each family is a thin subclass of the transformers ``*ForVideoClassification`` class, so its
parameter names are exactly the Hugging Face ones (``timesformer.*``, ``vivit.*``, ``videomae.*``,
``classifier.*``): the public checkpoints load as they are, and ``save_pretrained`` /
``from_pretrained`` work on our models. The subclasses change only the edge:

- ``forward(clips)`` takes harp's ``(B, C, T, H, W)`` normalised clips, hands transformers the
  ``(B, T, C, H, W)`` it expects, and returns logits ``(B, classes)`` (not a ModelOutput);
- a dropout before the classifier (``config.harp_head_dropout``, the family's ``dropout``); the
  pooling is the transformers class's own (CLS token for TimeSformer/ViViT, mean of the tokens +
  ``fc_norm`` for VideoMAE).

Attention: ViViT and VideoMAE run PyTorch SDPA (``attn_implementation="sdpa"``); TimeSformer's
transformers class has eager attention only, so harp swaps its self-attention module for one on
SDPA with the same parameters (``harp.models.timesformer_sdpa``; ``model.options.attn_implementation=eager``
keeps transformers' own). TimeSformer is configured with
``attention_type="divided_space_time"`` (temporal attention over the T tokens of one patch, then
spatial attention over the patches of one frame, per block; 000/001), which
``tests/models/test_timesformer.py`` checks against a hand computation.

The models are built for one clip shape (frames x frame_size): TimeSformer and VideoMAE take their
token grid from the config. Checkpoints of another shape (e.g. K400 8x224 into a 16x224 model) get
their learned position/time embeddings interpolated on load (``_resize_position_embeddings``).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    TimesformerConfig,
    TimesformerForVideoClassification,
    VideoMAEConfig,
    VideoMAEForVideoClassification,
    VivitConfig,
    VivitForVideoClassification,
)

from harp.errors import ConfigError
from harp.models.spec import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD, BuildArgs, FamilySpec, SizePreset
from harp.models.timesformer_sdpa import ATTENTION_KINDS, set_timesformer_attention

logger = logging.getLogger(__name__)

# ViT-B/16 (the paper size of all three) and a narrow tiny transformer that trains on CPU in seconds.
VIT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
VIT_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
# Config keys a user may set through model.options (besides the size's own preset).
_TRANSFORMER_OPTIONS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "drop_path_rate",
)


class _ClipClassifier:
    """Mixin: harp's (B, C, T, H, W) -> logits contract on a transformers video classifier."""

    def _init_head_dropout(self, config) -> None:
        self.head_dropout = nn.Dropout(float(getattr(config, "harp_head_dropout", 0.0)))

    def _pool(self, sequence_output: torch.Tensor) -> torch.Tensor:  # CLS token
        return sequence_output[:, 0]

    def forward(self, clips: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if clips.dim() != 5:
            raise ValueError(f"expected clips (B, C, T, H, W), got shape {tuple(clips.shape)}")
        pixel_values = clips.transpose(1, 2)  # (B, C, T, H, W) -> (B, T, C, H, W)
        backbone = getattr(self, self.base_model_prefix)
        sequence_output = backbone(pixel_values=pixel_values).last_hidden_state
        return self.classifier(self.head_dropout(self._pool(sequence_output)))


class TimesformerClassifier(_ClipClassifier, TimesformerForVideoClassification):
    def __init__(self, config: TimesformerConfig):
        super().__init__(config)
        self._init_head_dropout(config)


class VivitClassifier(_ClipClassifier, VivitForVideoClassification):
    def __init__(self, config: VivitConfig):
        super().__init__(config)
        self._init_head_dropout(config)


class VideoMAEClassifier(_ClipClassifier, VideoMAEForVideoClassification):
    def __init__(self, config: VideoMAEConfig):
        super().__init__(config)
        self._init_head_dropout(config)

    def _pool(self, sequence_output: torch.Tensor) -> torch.Tensor:  # mean of the tokens + fc_norm
        if self.fc_norm is None:
            return sequence_output[:, 0]
        return self.fc_norm(sequence_output.mean(1))


def _config_kwargs(args: BuildArgs, patch: int) -> dict[str, Any]:
    """The config values every transformer family shares: width/depth from the size, clip shape, head."""
    options = dict(args.options)
    unknown = sorted(set(options) - set(_TRANSFORMER_OPTIONS) - {"patch_size", "tubelet_size", "attn_implementation"})
    if unknown:
        raise ConfigError(
            f"model.options {unknown} are not options of the transformer families; valid: {', '.join(_TRANSFORMER_OPTIONS)}, "
            "patch_size, tubelet_size, attn_implementation"
        )
    if args.frame_size % patch:
        raise ConfigError(f"model.frame_size={args.frame_size} must be a multiple of the patch size {patch}")
    base = VIT_TINY if args.size == "tiny" else VIT_BASE
    kwargs = {**base, **{k: options[k] for k in _TRANSFORMER_OPTIONS if k in options}}
    if kwargs["hidden_size"] % kwargs["num_attention_heads"]:
        raise ConfigError(
            f"hidden_size={kwargs['hidden_size']} must be divisible by num_attention_heads={kwargs['num_attention_heads']}"
        )
    return {
        **kwargs,
        "image_size": args.frame_size,
        "num_frames": args.frames,
        "num_labels": args.num_classes,
        "harp_head_dropout": args.dropout,
    }


def build_timesformer(args: BuildArgs) -> TimesformerClassifier:
    """TimeSformer with its divided attention on PyTorch SDPA (``model.options.attn_implementation``
    ``sdpa``, the default: faster, same weights and logits; ``harp.models.timesformer_sdpa``) or
    on transformers' own eager attention (``eager``)."""
    patch = _patch(args)
    kind = str(args.options.get("attn_implementation", "sdpa"))
    if kind not in ATTENTION_KINDS:
        raise ConfigError(f"timesformer: model.options.attn_implementation={kind!r}; choose one of {', '.join(ATTENTION_KINDS)}")
    config = TimesformerConfig(
        patch_size=patch,
        attention_type="divided_space_time",
        attn_implementation="eager",  # the only one transformers' TimeSformer class accepts; SDPA is swapped in below
        **_config_kwargs(args, patch),
    )
    return set_timesformer_attention(TimesformerClassifier(config), kind)  # type: ignore[return-value]


def _patch(args: BuildArgs) -> int:
    """Spatial patch size: ViT-B/16 at base, 8 px at tiny (a 32 px frame is then 4x4 patches)."""
    return int(args.options.get("patch_size", 16 if args.size == "base" else 8))


def _tubelet(args: BuildArgs) -> int:
    tubelet = int(args.options.get("tubelet_size", 2))
    if args.frames % tubelet:
        raise ConfigError(f"model.frames={args.frames} must be a multiple of the tubelet size {tubelet}")
    return tubelet


def build_vivit(args: BuildArgs) -> VivitClassifier:
    patch = _patch(args)
    config = VivitConfig(
        tubelet_size=[_tubelet(args), patch, patch],
        attn_implementation=args.options.get("attn_implementation", "sdpa"),
        **_config_kwargs(args, patch),
    )
    return VivitClassifier(config)


def build_videomae(args: BuildArgs) -> VideoMAEClassifier:
    patch = _patch(args)
    config = VideoMAEConfig(
        patch_size=patch,
        tubelet_size=_tubelet(args),
        use_mean_pooling=True,
        attn_implementation=args.options.get("attn_implementation", "sdpa"),
        **_config_kwargs(args, patch),
    )
    return VideoMAEClassifier(config)


def _resize(tensor: torch.Tensor, size: tuple[int, ...], mode: str) -> torch.Tensor:
    """Interpolate a (1, D, *grid) tensor to a new grid, in float32."""
    return F.interpolate(tensor.float(), size=size, mode=mode, align_corners=False if mode != "nearest" else None)


def _resize_position_embeddings(state: dict[str, torch.Tensor], source: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """Interpolate learned position/time embeddings of a checkpoint to this model's clip shape.

    TimeSformer: ``time_embeddings`` (1, T, D) over time; ``position_embeddings`` (1, 1+h*w, D) over
    the patch grid. ViViT: ``position_embeddings`` (1, 1+t*h*w, D) over the tubelet grid, tokens in
    (time, row, column) order; its (t, h) factorisation comes from the checkpoint's config when the
    source has one, else from :func:`_vivit_token_grid`; time is interpolated linearly and space
    bicubically, each only when it differs (same frames: the rows stay exactly as they were). The
    CLS entry is kept as it is. Anything else is left for the loader to report as a shape mismatch.
    """
    own = model.state_dict()
    config = model.config
    for key, value in list(state.items()):
        target = own.get(key)
        if target is None or target.shape == value.shape or value.dim() != 3 or value.shape[-1] != target.shape[-1]:
            continue
        dim = value.shape[-1]
        if key.endswith("time_embeddings"):  # (1, T, D)
            grid = value.transpose(1, 2)
            state[key] = _resize(grid, (target.shape[1],), "linear").transpose(1, 2).to(value.dtype)
        elif key.endswith("position_embeddings"):
            cls, tokens = value[:, :1], value[:, 1:]
            if isinstance(config, VivitConfig):
                t_new = config.num_frames // config.tubelet_size[0]
                h_new = config.image_size // config.tubelet_size[1]
                found = _vivit_token_grid(tokens.shape[1], t_new, h_new, _checkpoint_vivit_grid(source))
                if found is None:
                    continue
                t_old, h_old = found
                grid = tokens.reshape(1, t_old, h_old, h_old, dim).permute(0, 4, 1, 2, 3)  # (1, D, t, h, w)
                if t_old != t_new:  # time only: linear over t, every (row, column) on its own
                    series = grid.permute(0, 1, 3, 4, 2).reshape(1, dim * h_old * h_old, t_old)
                    grid = _resize(series, (t_new,), "linear").reshape(1, dim, h_old, h_old, t_new).permute(0, 1, 4, 2, 3)
                if h_old != h_new:  # space only: bicubic over (row, column), every time step on its own
                    frames = grid.permute(0, 2, 1, 3, 4).reshape(t_new, dim, h_old, h_old)
                    frames = _resize(frames, (h_new, h_new), "bicubic")
                    grid = frames.reshape(1, t_new, dim, h_new, h_new).permute(0, 2, 1, 3, 4)
            else:
                h_old = int(round(tokens.shape[1] ** 0.5))
                if h_old * h_old != tokens.shape[1]:
                    continue
                h_new = int(round((target.shape[1] - 1) ** 0.5))
                grid = tokens.reshape(1, h_old, h_old, dim).permute(0, 3, 1, 2)
                grid = _resize(grid, (h_new, h_new), "bicubic")
            state[key] = torch.cat([cls, grid.flatten(2).transpose(1, 2).to(value.dtype)], dim=1)
    return state


# The published ViViT-B/16x2 checkpoints: 32 frames / tubelet 2 at 224 px / patch 16 -> a 16 x 14 x 14 grid.
_PUBLISHED_VIVIT_SIDE = 14


def _vivit_token_grid(
    num_tokens: int, t_new: int, h_new: int, checkpoint: tuple[int, int] | None = None
) -> tuple[int, int] | None:
    """``(t, side)`` of a checkpoint's ViViT token table (``t * side * side == num_tokens``), or None.

    A token count has several factorisations (16 x 14 x 14 = 4 x 28 x 28 = 3136), and reading the
    table with the wrong one scrambles every row. In order: the checkpoint's own grid (its config's
    frames, image size and tubelet); the model's spatial side (only the clip length differs, so only
    time is interpolated); the published checkpoints' 14 x 14 (224 px / 16); the model's temporal
    length (only the image size differs). A guess that another reading would also fit is logged.
    """
    options = []
    for t in range(1, num_tokens + 1):
        if num_tokens % t == 0:
            side = math.isqrt(num_tokens // t)
            if side * side == num_tokens // t:
                options.append((t, side))
    if checkpoint is not None and checkpoint in options:
        return checkpoint
    preferences = (
        ("the model's spatial grid", lambda o: o[1] == h_new),
        (f"the published checkpoints' {_PUBLISHED_VIVIT_SIDE}x{_PUBLISHED_VIVIT_SIDE} grid", lambda o: o[1] == _PUBLISHED_VIVIT_SIDE),
        ("the model's temporal length", lambda o: o[0] == t_new),
    )
    plausible = [o for _, test in preferences for o in options if test(o)]
    for reason, test in preferences:
        chosen = next((o for o in options if test(o)), None)
        if chosen is not None:
            others = sorted({o for o in plausible if o != chosen})
            if others:
                logger.warning(
                    "ViViT position table of %d tokens read as %d x %d x %d (%s); it could also be %s. Load it with "
                    "hf:DIR (a directory with its config.json) to use the checkpoint's own grid",
                    num_tokens, chosen[0], chosen[1], chosen[1], reason, ", ".join(f"{t} x {s} x {s}" for t, s in others),
                )
            return chosen
    return options[0] if len(options) == 1 else None


def _checkpoint_vivit_grid(source: str) -> tuple[int, int] | None:
    """The (t, side) token grid a source's config.json declares (hf:/file: directories, a weights file
    next to its config.json, a cached named source); None when the source has no config."""
    import json

    config_file = None
    if source.startswith(("hf:", "file:")):
        local = Path(source.split(":", 1)[1]).expanduser()
        config_file = local / "config.json" if local.is_dir() else local.parent / "config.json"
        if not config_file.is_file() and source.startswith("hf:") and not local.exists() and source.count("/") == 1:
            from harp.models.pretrained import cached_hub_snapshot

            snapshot = cached_hub_snapshot(source[len("hf:"):])
            config_file = snapshot / "config.json" if snapshot else None
    elif source in VIVIT.hub_checkpoints:
        from harp.models.pretrained import cached_hub_snapshot

        snapshot = cached_hub_snapshot(VIVIT.hub_checkpoints[source])
        config_file = snapshot / "config.json" if snapshot else None
    if config_file is None or not config_file.is_file():
        return None
    try:
        raw = json.loads(config_file.read_text())
        tubelet = raw.get("tubelet_size", [2, 16, 16])
        image = raw.get("image_size", 224)
        image = image[0] if isinstance(image, (list, tuple)) else image
        return int(raw.get("num_frames", 32)) // int(tubelet[0]), int(image) // int(tubelet[1])
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def _transformer_spec(**fields) -> FamilySpec:
    """What the three transformer families share: HF head name, position-embedding resizing, no head dropout."""
    return FamilySpec(
        default_dropout=0.0,
        head_prefixes=("classifier.",),
        convert_state_dict=_resize_position_embeddings,
        **fields,
    )


TIMESFORMER = _transformer_spec(
    name="timesformer",
    description="TimeSformer: ViT with divided space-time attention (HF transformers TimesformerForVideoClassification)",
    paper="chen2022",
    build=build_timesformer,
    sizes={"tiny": SizePreset(frames=8, frame_size=32), "base": SizePreset(frames=8, frame_size=224)},
    mean=KINETICS_MEAN,
    std=KINETICS_STD,
    pretrained_sources=("kinetics400", "kinetics600", "ssv2"),
    hub_checkpoints={
        "kinetics400": "facebook/timesformer-base-finetuned-k400",
        "kinetics600": "facebook/timesformer-base-finetuned-k600",
        "ssv2": "facebook/timesformer-base-finetuned-ssv2",
    },
)

VIVIT = _transformer_spec(
    name="vivit",
    description="ViViT-B/16x2 factorised-embedding video ViT, tubelet embedding (HF transformers VivitForVideoClassification, SDPA)",
    paper="kaur",
    build=build_vivit,
    sizes={"tiny": SizePreset(frames=8, frame_size=32), "base": SizePreset(frames=32, frame_size=224)},
    # The Scenic ViViT checkpoints take pixels scaled to [-1, 1]: (x - 0.5) / 0.5.
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    pretrained_sources=("kinetics400",),
    hub_checkpoints={"kinetics400": "google/vivit-b-16x2-kinetics400"},
)

VIDEOMAE = _transformer_spec(
    name="videomae",
    description="VideoMAE ViT-B/16 (masked-autoencoder pretrained), tubelet 2, mean pooling (HF transformers, SDPA)",
    paper="kaur",
    build=build_videomae,
    sizes={"tiny": SizePreset(frames=8, frame_size=32), "base": SizePreset(frames=16, frame_size=224)},
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    pretrained_sources=("kinetics400", "ssv2"),
    hub_checkpoints={
        "kinetics400": "MCG-NJU/videomae-base-finetuned-kinetics",
        "ssv2": "MCG-NJU/videomae-base-finetuned-ssv2",
    },
)
