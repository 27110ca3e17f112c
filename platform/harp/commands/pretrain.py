"""``harp pretrain``: build a pretraining source on this machine (``synthetic-src``) into the weights cache.

A built source is used like a downloaded one (``model.pretrained=synthetic-src``): each family that
declares it is trained once on the source task (``harp.train.pretrain``: the synthetic generator's
rotate/blink/still classes on other scenes), per architecture, and cached under
``$TORCH_HOME/hub/checkpoints/harp-synthetic-src/``. ``harp sweep`` builds the ones its space can
sample before its trials start (``ensure_sweep_sources``), so the README's main job needs no step
of its own; a run that finds its source missing says to run this.

Examples:
  harp pretrain                                   # synthetic-src for every family that declares it (tiny)
  harp pretrain synthetic-src --family tsm model.size=tiny
  harp pretrain --space default                   # what `harp sweep` would build for that space
  harp pretrain --family cnn3d_attention --force train.epochs=12   # rebuild with a longer source run
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp.config.flags import add_hydra_flags, refuse_multirun, show_job_config
from harp.config.load import load_config
from harp.config.schema import HarpConfig, ModelConfig
from harp.errors import ConfigError

if TYPE_CHECKING:
    from harp.train.pretrain import BuiltSource
    from harp.tune.params import SearchSpace

DEFAULT_SOURCE = "synthetic-src"
_MAX_VARIANTS = 32  # architectures per family a space may ask for before harp refuses to guess


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harp pretrain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("words", nargs="*", metavar="[SOURCE] [key=value ...]",
                        help=f"the source to build (default {DEFAULT_SOURCE}), then Hydra "
                             "overrides: model.size/model.options pick the architecture, other keys change the source run")
    parser.add_argument("--family", action="append", metavar="FAMILY",
                        help="a family to build it for (repeatable; default: every family that declares the source)")
    parser.add_argument("--space", help="build what a sweep of this search space samples (as `harp sweep --space` does)")
    parser.add_argument("--data-root", help="where the source videos go (default: beside the weights in the cache)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache holds the weights")
    add_hydra_flags(parser)
    return parser


def _split_words(words: Sequence[str]) -> tuple[str, list[str]]:
    """(source, overrides): a leading word without ``=`` names the source."""
    if words and "=" not in words[0]:
        return words[0], list(words[1:])
    return DEFAULT_SOURCE, list(words)


def declaring_families(source: str) -> list[str]:
    """The families whose spec declares ``source``."""
    from harp.models.registry import family_names, get_family

    return [name for name in family_names() if source in get_family(name).pretrained_sources]


def main(argv: list[str]) -> int:
    args = _parser().parse_intermixed_args(argv)
    refuse_multirun(args)
    source, overrides = _split_words(args.words)
    from harp.models.built_sources import BUILT_SOURCES  # torch: not for `harp pretrain --help`

    if source not in BUILT_SOURCES:
        raise ConfigError(f"harp pretrain builds {', '.join(BUILT_SOURCES)}; {source!r} is not one (downloaded sources: `harp models fetch`)")
    if args.space:
        if args.family:
            raise ConfigError("pass either --space (the families it samples) or --family, not both")
        from harp.tune.space import base_config, find_space, load_space

        space = load_space(find_space(args.space))
        ensure_sweep_sources(base_config(space, overrides), space, force=args.force, data_root=args.data_root, only=source)
        return 0
    families = args.family or declaring_families(source)
    for family in families:
        model = load_config([*overrides, f"model.family={family}"]).model
        if args.cfg == "job":  # the source run's config, nothing built
            from harp.train.pretrain import source_config

            show_job_config(args, source_config(source, model, data_root=args.data_root, overrides=overrides))
            continue
        _build(source, model, overrides=overrides, data_root=args.data_root, force=args.force, verbose=True)
    return 0


def _build(
    source: str, model: ModelConfig, *, overrides: Sequence[str] = (), data_root: str | None = None, force: bool = False, verbose: bool = False
) -> BuiltSource:
    """Find or build one family's weights, and say which in a line (plus one per epoch when ``verbose``)."""
    from harp.train.pretrain import ensure_source, source_task

    what = f"pretraining source {source} for {model.family} ({model.size})"

    def starting(path: Path) -> None:
        print(f"{what}: building it once ({source_task(source).summary}) -> {path}", flush=True)

    def epoch(metrics: dict[str, float]) -> None:
        if verbose:
            print(f"  epoch {int(metrics['epoch'])}: train_loss {metrics.get('train_loss', math.nan):.4f}  "
                  f"val_top1 {metrics.get('val_top1', math.nan):.3f}", flush=True)

    result = ensure_source(source, model, data_root=data_root, overrides=overrides, force=force, on_start=starting, on_epoch=epoch)
    if result.built:
        val = f"; source val_top1 {result.val_top1:.3f}" if result.val_top1 is not None else ""
        print(f"  built in {result.seconds:.0f} s{val}", flush=True)
    else:
        print(f"{what}: cached ({result.path})", flush=True)
    return result


# ----------------------------------------------------------------------------- what a sweep samples


def _applies(param: Any, context: dict[str, Any]) -> bool:
    """Whether a parameter can apply given the values fixed so far (conditions on other keys may hold)."""
    from harp.tune.params import matches

    return all(key not in context or matches(context[key], allowed) for key, allowed in param.when.items())


def _choices(space: SearchSpace, key: str, context: dict[str, Any]) -> list[Any]:
    """The values a categorical/grid parameter of ``key`` can take given ``context`` (none: not sampled)."""
    values: list[Any] = []
    for param in space.params:
        if param.key == key and param.is_choice and _applies(param, context):
            values += [v for v in param.values if v not in values]
    return values


def sweep_builds(cfg: HarpConfig, space: SearchSpace, only: str | None = None) -> list[tuple[str, ModelConfig]]:
    """(source, model) for every built source the space can sample together with a family that
    declares it, one per architecture the space can give that family (its sampled ``model.size``
    and ``model.options.*`` choices; numeric ranges of those keys keep the base value)."""
    from harp.models.built_sources import BUILT_SOURCES
    from harp.models.registry import get_family
    from harp.tune.space import apply_params

    builds: list[tuple[str, ModelConfig]] = []
    for family in _choices(space, "model.family", {}) or [cfg.model.family]:
        context = {"model.family": family}
        sources = _choices(space, "model.pretrained", context) or [cfg.model.pretrained]
        wanted = [s for s in sources if s in BUILT_SOURCES and s in get_family(family).pretrained_sources and only in (None, s)]
        if not wanted:
            continue
        keys = [k for k in space.keys if k == "model.size" or k.startswith("model.options.")]
        axes = [axis for axis in ([(key, value) for value in _choices(space, key, context)] for key in keys) if axis]
        combos = list(itertools.islice(itertools.product(*axes), _MAX_VARIANTS + 1))
        if len(combos) > _MAX_VARIANTS:
            raise ConfigError(
                f"{space.where}: more than {_MAX_VARIANTS} architectures of {family} to pretrain for {', '.join(wanted)}; "
                "build the ones you need with `harp pretrain` first"
            )
        for combo in combos:
            model = apply_params(cfg, {"model.family": family, **dict(combo)}).model
            builds += [(source, model) for source in wanted]
    return builds


def ensure_sweep_sources(
    cfg: HarpConfig, space: SearchSpace, *, force: bool = False, data_root: str | None = None, only: str | None = None
) -> list[BuiltSource]:
    """Before a sweep's trials: build every built source (``synthetic-src``) the space can sample that
    the cache lacks, once; the trials then load it. One line per family and architecture."""
    builds = sweep_builds(cfg, space, only)
    if not builds:
        return []
    from harp.train.pretrain import cache_path

    done: dict[Any, BuiltSource] = {}
    for source, model in builds:
        key = (source, cache_path(source, model))
        if key not in done:
            done[key] = _build(source, model, data_root=data_root, force=force)
    if cfg.sweep.ray_address not in ("", "local"):
        print("  (trials on other nodes read the weights cache of their own node: put $TORCH_HOME on shared storage)", file=sys.stderr)
    return list(done.values())


__all__ = ["DEFAULT_SOURCE", "declaring_families", "ensure_sweep_sources", "main", "sweep_builds"]
