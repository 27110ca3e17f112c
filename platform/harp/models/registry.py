"""The model registry: a plain dict from family name to where its ``FamilySpec`` lives.

Modules are imported on first use, so listing names or validating a config does not pay for
importing every family (the transformer ones pull in Hugging Face transformers).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property

from torch import nn

from harp.config.schema import ModelConfig
from harp.errors import ConfigError
from harp.models.spec import BuildArgs, FamilySpec, InputNorm

FAMILIES: dict[str, str] = {
    # Transformers on Hugging Face classes (000, 001)
    "timesformer": "harp.models.hf_video:TIMESFORMER",
    "vivit": "harp.models.hf_video:VIVIT",
    "videomae": "harp.models.hf_video:VIDEOMAE",
    # 3D CNNs (002, 003)
    "c3d": "harp.models.c3d:C3D",
    "i3d": "harp.models.i3d:I3D",
    "i3d_nonlocal": "harp.models.i3d:I3D_NONLOCAL",
    "r3d": "harp.models.video_resnet:R3D",
    "r2plus1d": "harp.models.video_resnet:R2PLUS1D",
    "cnn3d_attention": "harp.models.cnn3d_attention:CNN3D_ATTENTION",
    # 2D backbone + temporal modelling (003, 004)
    "late_fusion": "harp.models.late_fusion:LATE_FUSION",
    "lrcn": "harp.models.lrcn:LRCN",
    "tsn": "harp.models.tsn:TSN",
    "tsm": "harp.models.tsm:TSM",
    "tea": "harp.models.tea:TEA",
    "mdt": "harp.models.mdt:MDT",
}


def family_names() -> list[str]:
    return list(FAMILIES)


def check_family(name: str) -> None:
    """A one-line error listing the valid names for an unknown family. Imports no family module,
    so commands and search spaces check ``model.family`` early and cheaply (the config layer
    itself does not import the models)."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family '{name}'; choose one of: {', '.join(FAMILIES)}")


def get_family(name: str) -> FamilySpec:
    """The spec of a family; a one-line error listing the valid names for an unknown one."""
    check_family(name)
    module_name, attribute = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass(frozen=True)
class ResolvedModel:
    """A ModelConfig with every None replaced by the family's default for its size.

    ``norm`` (and ``mean``/``std``) is what the pretraining source's weights want as input, read on
    first use (a ``file:`` source may declare it next to itself: ``harp.models.input_norm``)."""

    spec: FamilySpec
    args: BuildArgs
    pretrained: str
    input_norm: str = ""  # model.input_norm: "" -> from the source

    @property
    def frames(self) -> int:
        return self.args.frames

    @property
    def frame_size(self) -> int:
        return self.args.frame_size

    @cached_property
    def norm(self) -> InputNorm:
        from harp.models.input_norm import resolve_input_norm

        return resolve_input_norm(self.spec, self.pretrained, self.input_norm)

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.norm.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.norm.std

    @property
    def default_sampling(self) -> str:
        return self.spec.default_sampling


def resolve(cfg: ModelConfig, num_classes: int | None = None) -> ResolvedModel:
    """Fill in the family's defaults and check the combination (size, pretraining source)."""
    spec = get_family(cfg.family)
    if cfg.size not in spec.sizes:
        raise ConfigError(f"model.size={cfg.size!r} is not available for {spec.name}; choose one of: {', '.join(spec.sizes)}")
    if not spec.accepts(cfg.pretrained):
        raise ConfigError(
            f"model.pretrained={cfg.pretrained!r} is not available for {spec.name}; choose one of: {', '.join(spec.all_sources())}"
        )
    classes = num_classes if num_classes is not None else cfg.num_classes
    if classes is None or classes < 2:
        raise ConfigError(f"model.num_classes={classes!r}: a classifier needs at least 2 classes (set model.num_classes or index a data set)")
    preset = spec.sizes[cfg.size]
    options = {**preset.options, **cfg.options}
    args = BuildArgs(
        num_classes=int(classes),
        size=cfg.size,
        frames=cfg.frames or preset.frames,
        frame_size=cfg.frame_size or preset.frame_size,
        dropout=spec.default_dropout if cfg.dropout is None else cfg.dropout,
        options=options,
    )
    return ResolvedModel(spec=spec, args=args, pretrained=cfg.pretrained, input_norm=cfg.input_norm)


def build_model(cfg: ModelConfig, num_classes: int | None = None) -> nn.Module:
    """Build a family from config and load its pretraining source (head replaced for num_classes)."""
    resolved = resolve(cfg, num_classes)
    model = resolved.spec.build(resolved.args)
    if resolved.pretrained != "none":
        from harp.models.pretrained import load_pretrained

        load_pretrained(model, resolved.spec, resolved.pretrained, input_channels=resolved.norm.channels)
    return model
