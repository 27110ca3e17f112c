"""Compose a ``HarpConfig`` from the schema, an optional YAML file and ``key=value`` overrides.

Hydra does the composition (so ``data=ucf101`` picks a preset and ``data.root=...`` overrides a
value, with Hydra's override grammar), OmegaConf enforces the schema's types, and every failure
is turned into one line that names the key and the fix.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harp.config.presets import DATA_PRESETS
from harp.config.schema import HarpConfig
from harp.errors import ConfigError

_SCHEMA_NAME = "harp_schema"
# Mapping-valued keys that take new entries (Hydra's `+key=value` syntax).
_OPEN_MAPPINGS = ("model.options", "data.flip_swap")
_registered = False


def _register() -> None:
    """Put the schema and the data presets in Hydra's ConfigStore (once per process)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    # The schema plus a defaults list that picks the synthetic data preset unless `data=NAME` says otherwise.
    node = OmegaConf.create({"defaults": ["_self_", {"data": "synthetic"}]})
    node.merge_with(OmegaConf.to_container(OmegaConf.structured(HarpConfig)))
    store.store(name=_SCHEMA_NAME, node=node)
    for name, preset in DATA_PRESETS.items():
        store.store(group="data", name=name, node=preset)
    _registered = True


def _valid_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys of a dataclass tree, for 'did you mean' style messages."""
    keys = []
    for f in fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        keys.append(key)
        if is_dataclass(value):
            keys.extend(_valid_keys(value, key + "."))
    return keys


def _one_line(exc: BaseException) -> str:
    """Hydra and OmegaConf errors span several lines and hide the cause; keep the essentials."""
    chain, node = [], exc
    while node is not None:
        chain.append(str(node))
        node = node.__cause__ or node.__context__
    text = "\n".join(chain)
    full_key = re.search(r"full_key: ([\w.]+)", text)
    if re.search(r"Key '[^']+' (not in|is not in struct)", text) and full_key:
        key = full_key.group(1)
        section = key.rpartition(".")[0]
        if section in _OPEN_MAPPINGS:
            return f"'{section}' is a mapping: add the new key with a plus, +{key}=VALUE"
        valid = [k.rpartition(".")[2] for k in all_keys() if k.rpartition(".")[0] == section]
        where = f" under {section}" if section else ""
        return f"unknown config key '{key}'; valid keys{where}: {', '.join(valid)} (`harp config --keys` lists all)"
    missing_group = re.search(r"Could not find '(\w+)/([^']+)'", text)
    if missing_group:
        group, name = missing_group.groups()
        return f"unknown {group} preset '{name}'; choose one of: {', '.join(sorted(DATA_PRESETS))}"
    bad_value = re.search(r"Value '([^']*)'(?: of type '\w+')? (?:could not be converted to|is not a valid) (\w+)", text)
    if bad_value and full_key:
        value, kind = bad_value.groups()
        return f"{full_key.group(1)}={value!r} is not a valid {kind.lower()}; fix the value"
    return text.splitlines()[0] if text else type(exc).__name__


def _compose(overrides: Sequence[str], config_file: str | os.PathLike | None) -> Any:
    from hydra import compose, initialize, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    _register()
    GlobalHydra.instance().clear()
    if config_file is None:
        with initialize(version_base=None, config_path=None):
            return compose(config_name=_SCHEMA_NAME, overrides=list(overrides))
    path = Path(config_file)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; pass an existing YAML file to --config")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML ({exc.__class__.__name__}); fix its syntax") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (data:, model:, ...)")
    content["defaults"] = [_SCHEMA_NAME, "_self_"]
    with tempfile.TemporaryDirectory(prefix="harp-config-") as tmp:
        (Path(tmp) / "primary.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
        with initialize_config_dir(version_base=None, config_dir=tmp):
            return compose(config_name="primary", overrides=list(overrides))


def load_config(
    overrides: Iterable[str] = (),
    config_file: str | os.PathLike | None = None,
) -> HarpConfig:
    """Schema defaults < config file < overrides, validated; raises ConfigError with one line."""
    from hydra.errors import HydraException

    try:
        composed = _compose(list(overrides), config_file)
        merged = OmegaConf.merge(OmegaConf.structured(HarpConfig), OmegaConf.to_container(composed))
        cfg: HarpConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(_one_line(exc)) from exc
    from harp.config.validate import validate

    validate(cfg)
    return cfg


def to_yaml(cfg: HarpConfig) -> str:
    """The fully resolved config as YAML: `harp train --config` on it reproduces the run."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: HarpConfig) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def from_dict(data: dict[str, Any]) -> HarpConfig:
    """Rebuild a validated config from a plain dict (e.g. one a Ray trial received)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(HarpConfig), OmegaConf.create(data))
        cfg: HarpConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise ConfigError(_one_line(exc)) from exc
    from harp.config.validate import validate

    validate(cfg)
    return cfg


def all_keys() -> list[str]:
    """Every valid dotted config key (``harp config --keys``)."""
    return _valid_keys(HarpConfig())

