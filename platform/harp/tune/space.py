"""Search-space files: ``search_spaces/*.yaml`` -> a fixed base config + the parameters that vary.

A space file (OmegaConf YAML, so ``${...}`` interpolation works) has four sections::

    description: what this study is
    config:        # fixed values: any HarpConfig key, nested or dotted (data: ucf101 picks a preset)
      model.size: tiny
      train.epochs: 4
    sweep:         # SweepConfig settings (num_samples, searcher, scheduler, metric, ...)
      num_samples: 8
    params:        # what varies: HarpConfig dotted keys
      optim.lr: {type: loguniform, low: 1.0e-4, high: 3.0e-2}
      optim.name: {type: categorical, values: [sgd, adam, adamw]}
      optim.momentum: {type: uniform, low: 0.8, high: 0.99, when: {optim.name: sgd}}
      model.options.shift_div: {type: grid, values: [4, 8], when: {model.family: [tsm, tea]}}

Types: ``loguniform`` / ``uniform`` (low, high), ``int`` (low, high, optional step, log),
``categorical`` and ``grid`` (values). ``when`` makes a parameter conditional on earlier
parameters (a value or a list of values each); a parameter that does not apply is never sampled,
so it never appears in that trial's config. A key may also take a list of alternatives, each
with its own ``when`` (the first that holds is sampled), e.g. a data root per data format; they
are of one kind (all categorical/grid, uniform, loguniform or int), as the Optuna study holds the
key once (``harp.tune.params``).
``data`` itself may vary over data preset names (``data: {type: grid, values: [ucf101, hmdb51]}``),
with ``data.root`` alternatives ``when: {data: ucf101}``; relative data paths among the values
point from where the space is loaded (``SearchSpace.base_dir``), since trials run elsewhere.
Sampling is define-by-run on an Optuna trial (``harp.tune.params``).

Precedence: schema defaults < the file's ``config``/``sweep`` < command-line overrides, layered
in memory by ``harp.config.load``. Every problem is one ``ConfigError`` line that names the file
and the key.

Where a space is found (``find_space``): the path as given, then ``./search_spaces/NAME.yaml``,
then the spaces shipped inside the package (``harp/search_spaces``, package data, so an installed
wheel has them too).
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harp.config.keys import is_known, keys_under
from harp.config.load import from_dict, load_config, to_dict
from harp.config.presets import DATA_PRESETS, data_preset
from harp.config.schema import OPEN_MAPPINGS, DataConfig, HarpConfig
from harp.errors import ConfigError
from harp.tune.params import Param, SearchSpace, describe_space, matches

PARAM_TYPES = ("loguniform", "uniform", "int", "categorical", "grid")
TOP_LEVEL_KEYS = ("description", "name", "config", "sweep", "params")
_FIELDS = {
    "loguniform": ({"low", "high"}, {"when"}),
    "uniform": ({"low", "high"}, {"when"}),
    "int": ({"low", "high"}, {"step", "log", "when"}),
    "categorical": ({"values"}, {"when"}),
    "grid": ({"values"}, {"when"}),
}


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested and dotted keys alike -> {dotted: value}; mapping leaves under open mappings stay whole."""
    out: dict[str, Any] = {}
    if not isinstance(node, Mapping):
        return {prefix: node}
    for key, value in node.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and dotted not in OPEN_MAPPINGS and value:
            out.update(_flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def _number(where: str, key: str, spec: Mapping[str, Any], name: str) -> float:
    value = spec[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: params.{key}.{name}={value!r} must be a number") from None
    return float(value)


def _conditions(where: str, key: str, spec: Mapping[str, Any], earlier: dict[str, list[Param]]) -> dict[str, tuple[Any, ...]]:
    """A parameter's ``when``: each condition on an earlier parameter, with values it can take."""
    when: dict[str, tuple[Any, ...]] = {}
    for cond_key, cond_value in (spec.get("when") or {}).items():
        if cond_key not in earlier:
            raise ConfigError(f"{where}: params.{key}.when: '{cond_key}' must be a parameter declared before '{key}'")
        allowed_values = tuple(cond_value) if isinstance(cond_value, (list, tuple)) else (cond_value,)
        parents = earlier[cond_key]
        if all(parent.is_choice for parent in parents):
            possible = [v for parent in parents for v in parent.values]
            unknown = [v for v in allowed_values if not matches(v, tuple(possible))]
            if unknown:
                raise ConfigError(f"{where}: params.{key}.when: {cond_key}={unknown[0]!r} is not one of its values {possible}")
        when[cond_key] = allowed_values
    return when


def _parse_param(where: str, key: str, spec: Any, earlier: dict[str, list[Param]]) -> Param:
    if not is_known(key):
        section = key.rpartition(".")[0]
        hint = sorted(keys_under(section))
        hint_text = f"; valid keys under {section}: {', '.join(hint)}" if hint else ""
        raise ConfigError(f"{where}: params.{key}: unknown config key '{key}'{hint_text}")
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"{where}: params.{key} must be a mapping with a 'type' ({', '.join(PARAM_TYPES)})")
    kind = spec["type"]
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{where}: params.{key}: unknown type '{kind}'; choose one of: {', '.join(PARAM_TYPES)}")
    required, optional = _FIELDS[kind]
    given = set(spec) - {"type"}
    missing = required - given
    if missing:
        raise ConfigError(f"{where}: params.{key}: type {kind} needs {', '.join(sorted(missing))}")
    extra = given - required - optional
    if extra:
        allowed = ", ".join(sorted(required | optional))
        raise ConfigError(f"{where}: params.{key}: unknown field '{sorted(extra)[0]}' for type {kind}; valid: {allowed}")
    when = _conditions(where, key, spec, earlier)
    if key == "data" and kind not in ("categorical", "grid"):
        raise ConfigError(f"{where}: params.data takes data preset names: use type categorical or grid")
    if kind in ("categorical", "grid"):
        values = spec["values"]
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"{where}: params.{key}.values must be a non-empty list")
        unknown = [v for v in values if key == "data" and v not in DATA_PRESETS]
        if unknown:
            raise ConfigError(f"{where}: params.data: {unknown[0]!r} is not a data preset; choose from: {', '.join(sorted(DATA_PRESETS))}")
        return Param(key=key, type=kind, values=tuple(values), when=when)
    low, high = _number(where, key, spec, "low"), _number(where, key, spec, "high")
    if not low < high:
        raise ConfigError(f"{where}: params.{key}: low={low} must be < high={high}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: params.{key}: loguniform needs low > 0 (got {low})")
    step = spec.get("step")
    log = bool(spec.get("log", False))
    if kind == "int":
        if low != math.floor(low) or high != math.floor(high):
            raise ConfigError(f"{where}: params.{key}: int bounds must be integers")
        if step is not None and log:
            raise ConfigError(f"{where}: params.{key}: int takes step or log, not both")
    return Param(key=key, type=kind, low=low, high=high, step=int(step) if step else None, log=log, when=when)


def _parse_params(where: str, raw_params: Any, fixed: Mapping[str, Any]) -> list[Param]:
    if not isinstance(raw_params, Mapping):
        raise ConfigError(f"{where}: params must be a mapping of config key -> distribution")
    params: dict[str, list[Param]] = {}
    for key, spec in raw_params.items():
        key = str(key)
        if key in fixed:
            raise ConfigError(f"{where}: params.{key} is also fixed under config:; keep one")
        if isinstance(spec, (list, tuple)):
            # Alternatives for one key, each under its own condition (e.g. a data root per format).
            if len(spec) < 2 or not all(isinstance(a, Mapping) and a.get("when") for a in spec):
                raise ConfigError(f"{where}: params.{key}: a list of alternatives needs two or more entries, each with a 'when'")
            params[key] = [_parse_param(where, key, alt, params) for alt in spec]
        else:
            params[key] = [_parse_param(where, key, spec, params)]
    return [p for alternatives in params.values() for p in alternatives]


def parse_space(data: Mapping[str, Any], *, path: Path | None = None, name: str | None = None) -> SearchSpace:
    """Check and parse the content of a space file (already loaded as a plain dict)."""
    where = str(path) if path else (name or "search space")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a search space must be a mapping with sections {', '.join(TOP_LEVEL_KEYS)}")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{where}: unknown top-level key '{key}'; valid: {', '.join(TOP_LEVEL_KEYS)}")
    fixed = _flatten(data.get("config") or {})
    for key in fixed:
        if key == "data" and isinstance(fixed[key], str):
            continue  # a data preset name, e.g. data: ucf101
        if not is_known(key):
            raise ConfigError(f"{where}: config.{key}: unknown config key '{key}' (`harp config --keys` lists all)")
    sweep = dict(data.get("sweep") or {})
    sweep_keys = keys_under("sweep")
    for key in sweep:
        if key not in sweep_keys:
            raise ConfigError(f"{where}: sweep.{key}: unknown sweep setting; valid: {', '.join(sorted(sweep_keys))}")
    space_name = name or data.get("name") or (path.stem if path else "sweep")
    return SearchSpace(
        name=str(space_name),
        path=path,
        description=str(data.get("description") or ""),
        params=_parse_params(where, data.get("params") or {}, fixed),
        fixed=fixed,
        sweep=sweep,
    )


SPACES_DIR = "search_spaces"


def shipped_spaces() -> list[str]:
    """Names of the search spaces that ship with harp (package data)."""
    folder = resources.files("harp") / SPACES_DIR
    return sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))


def find_space(name: str) -> Path:
    """A space file: ``name`` as a path, ``./search_spaces/NAME.yaml``, or a shipped space by name
    (``default``, ``002_cnn3d_attention_ucf101`` or ``search_spaces/default.yaml`` alike)."""
    given = Path(name)
    stem = given.name.removesuffix(".yaml").removesuffix(".yml")
    shipped = Path(str(resources.files("harp") / SPACES_DIR / f"{stem}.yaml"))
    for path in (given, Path(SPACES_DIR) / f"{stem}.yaml", shipped):
        if path.is_file():
            return path
    raise ConfigError(f"search space not found: {name}; pass a YAML file or one of the shipped spaces: {', '.join(shipped_spaces())}")


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Read and parse one ``search_spaces/*.yaml`` file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"search space not found: {file}; pass an existing YAML file to --space")
    try:
        conf = OmegaConf.load(file)
        data = OmegaConf.to_container(conf, resolve=True)
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{file}: not a valid search-space YAML ({first})") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{file}: a search space must be a mapping with sections {', '.join(TOP_LEVEL_KEYS)}")
    space = parse_space({str(key): value for key, value in data.items()}, path=file)
    space.base_dir = Path.cwd()  # relative data paths among its values point from here
    return space


def _check_family(name: str) -> None:
    # The registry owns the family names; it imports torch (seconds), which parsing a space and
    # `harp sweep --help` do without.
    from harp.models.registry import check_family

    check_family(name)


def apply_params(base: HarpConfig, params: Mapping[str, Any]) -> HarpConfig:
    """The trial's config: ``base`` with each sampled dotted key set (a sampled mapping replaces
    the base's whole), validated. A sampled ``data`` is a data preset: it sets the fields presets
    own (format, root, flip policy), the base's other ``data.*`` values stay, and sampled
    ``data.*`` keys apply on top."""
    values = OmegaConf.create(to_dict(base))
    preset = params.get("data")
    if isinstance(preset, str):
        chosen = OmegaConf.to_container(OmegaConf.structured(data_preset(preset)), enum_to_str=True)
        assert isinstance(chosen, dict)
        for field_name in _PRESET_FIELDS:
            OmegaConf.update(values, f"data.{field_name}", chosen[field_name], merge=False)
    for key, value in params.items():
        if key != "data":
            OmegaConf.update(values, key, value, merge=False, force_add=True)
    return from_dict(OmegaConf.to_container(values))  # type: ignore[arg-type]


# The data fields some preset sets to other than DataConfig's default: switching presets sets all
# of them (from ucf101 to synthetic flips with label swaps, and back again without).
_PRESET_FIELDS = sorted(
    {f.name for preset in DATA_PRESETS.values() for f in dataclasses.fields(preset) if getattr(preset, f.name) != getattr(DataConfig(), f.name)}
)


def base_config(space: SearchSpace, overrides: Sequence[str] = ()) -> HarpConfig:
    """Schema defaults < the space's config + sweep sections < command-line overrides."""
    layer = {**space.fixed, **{f"sweep.{key}": value for key, value in space.sweep.items()}}
    if space.path is not None:
        layer.setdefault("sweep.search_space", str(space.path))
    try:
        cfg = load_config(overrides, layer=layer)
        _check_family(cfg.model.family)
    except ConfigError as exc:
        raise ConfigError(f"{space.where}: {exc}") from exc
    check_space_against(cfg, space)
    return cfg


def check_space_against(cfg: HarpConfig, space: SearchSpace) -> None:
    """Every choice of every categorical/grid parameter must make a valid config on its own."""
    for param in space.params:
        candidates: Iterable[Any]
        if param.is_choice:
            candidates = param.values
        elif param.type == "int":
            candidates = tuple(int(bound) for bound in param.bounds)
        else:
            candidates = param.bounds
        for value in candidates:
            try:
                _check_family(apply_params(cfg, {param.key: value}).model.family)
            except ConfigError as exc:
                raise ConfigError(f"{space.where}: params.{param.key}={value!r}: {exc}") from exc


__all__ = [
    "PARAM_TYPES",
    "Param",
    "SearchSpace",
    "apply_params",
    "base_config",
    "check_space_against",
    "describe_space",
    "load_space",
    "parse_space",
]
