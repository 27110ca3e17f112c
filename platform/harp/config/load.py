"""Build a ``HarpConfig`` from layers: schema < data preset < config file < in-memory layer < overrides.

Plain OmegaConf does the layering on the structured schema, so every value is type-checked as it
is set (an enum key takes only its choices); Hydra's override parser reads the command line
(``harp.config.overrides``). Nothing is written to disk on the way, and every failure is one
``ConfigError`` line that names the key and the fix (``harp.config.explain``).

The data preset (``harp.config.presets``) is picked by the highest layer that names one:
``data=NAME`` on the command line, else ``data: NAME`` in the in-memory layer, else in the config
file, else ``synthetic``. A file or layer that gives an open mapping (``data.flip_swap``,
``model.options``) gives all of it, so a config exported from a UCF101 run does not pick up the
synthetic preset's label swaps when it is read back.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harp.config.explain import bad_value, explain
from harp.config.keys import all_keys, key_type
from harp.config.overrides import apply_overrides, parse_overrides, preset_named
from harp.config.presets import DEFAULT_PRESET, data_preset
from harp.config.schema import OPEN_MAPPINGS, HarpConfig
from harp.config.validate import validate
from harp.errors import ConfigError


def _put(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set a (maybe dotted) key in a nested dict, merging mappings key by key."""
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"'{key}': '{part}' is given both as a value and as a section; keep one")
    if isinstance(value, Mapping):
        branch = tree.setdefault(leaf, {})
        if not isinstance(branch, dict):
            raise ConfigError(f"'{key}' is given both as a value and as a section; keep one")
        for child, child_value in value.items():
            _put(branch, str(child), child_value)
    else:
        tree[leaf] = value


def _split_layer(values: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """A layer's data preset name (a top-level ``data: NAME``) and its values, nested: dotted keys
    (``model.size: tiny``, as search spaces write them) and nested sections may be mixed."""
    preset: str | None = None
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if key == "data" and isinstance(value, str):
            preset = value
        else:
            _put(nested, str(key), value)
    return preset, nested


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _check_shape(values: Mapping[str, Any], where: str, prefix: str = "") -> None:
    """A section given as a plain value, or a list as a mapping: OmegaConf's merge error for
    these names no key, so say which one here."""
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        kind = key_type(dotted)
        section = dataclasses.is_dataclass(kind)
        if (section and not isinstance(value, Mapping)) or (typing.get_origin(kind) is list and isinstance(value, Mapping)):
            raise ConfigError(f"{where}{bad_value(dotted, value)}")
        if section:
            _check_shape(value, where, f"{dotted}.")


def _merge(conf: DictConfig, values: dict[str, Any], where: str) -> None:
    """Merge one layer into ``conf``; an open mapping the layer gives replaces the one below."""
    _check_shape(values, where)
    try:
        for mapping in OPEN_MAPPINGS:
            if isinstance(_lookup(values, mapping), Mapping):
                OmegaConf.update(conf, mapping, {}, merge=False)
        conf.merge_with(values)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{where}{explain(exc)}") from exc


def _read_file(path: str | os.PathLike) -> Mapping[str, Any]:
    """A YAML config file as a plain mapping (``${...}`` interpolations kept for the final config)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}; pass an existing YAML file to --config")
    try:
        content = OmegaConf.to_container(OmegaConf.load(file), resolve=False)
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        raise ConfigError(f"config file {file} is not valid YAML ({exc.__class__.__name__}); fix its syntax") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"config file {file} must hold a mapping of sections (data:, model:, ...)")
    return {str(key): value for key, value in content.items()}


def load_config(
    overrides: Iterable[str] = (),
    config_file: str | os.PathLike | None = None,
    *,
    layer: Mapping[str, Any] | None = None,
) -> HarpConfig:
    """Schema < data preset < ``config_file`` < ``layer`` < ``overrides``, validated.

    ``overrides`` are command-line ``key=value`` strings (``harp.config.overrides`` says what
    ``~``, ``+`` and ``++`` do); ``layer`` is an in-memory mapping between the file and the
    overrides, nested or with dotted keys (a search space's ``config:``/``sweep:`` sections, or a
    whole config as ``to_dict`` wrote it). Raises ConfigError with one line.
    """
    parsed = parse_overrides(overrides)
    file_preset, file_values = _split_layer(_read_file(config_file)) if config_file is not None else (None, {})
    layer_preset, layer_values = _split_layer(layer or {})
    preset = preset_named(parsed) or layer_preset or file_preset or DEFAULT_PRESET
    conf = OmegaConf.structured(HarpConfig)
    conf.data = data_preset(preset)
    _merge(conf, file_values, f"{config_file}: " if config_file is not None else "")
    _merge(conf, layer_values, "")
    apply_overrides(conf, parsed)
    try:
        cfg: HarpConfig = OmegaConf.to_object(conf)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise ConfigError(explain(exc)) from exc
    validate(cfg)
    return cfg


def from_dict(data: Mapping[str, Any]) -> HarpConfig:
    """Rebuild a validated config from plain data (``to_dict``'s output, e.g. what a Ray trial got)."""
    return load_config(layer=data)


def to_dict(cfg: HarpConfig) -> dict[str, Any]:
    """The config as plain data (enum values as strings): for JSON, Ray trial configs and W&B."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)  # type: ignore[return-value]


def to_yaml(cfg: HarpConfig) -> str:
    """The fully resolved config as YAML: ``harp train --config`` on it reproduces the run."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg), resolve=True)


__all__ = ["all_keys", "from_dict", "load_config", "to_dict", "to_yaml"]
