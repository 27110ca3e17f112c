"""Search spaces: ``search_spaces/*.yaml`` -> a fixed base config + the parameters that vary.

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
with its own ``when`` (the first that holds is sampled), e.g. a data root per data format.
Sampling is define-by-run on an Optuna trial.

Precedence: schema defaults < the file's ``config``/``sweep`` < command-line overrides. Every
problem is one ``ConfigError`` line that names the file and the key.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harp.config.load import all_keys, from_dict, load_config, to_dict
from harp.config.schema import HarpConfig
from harp.errors import ConfigError

PARAM_TYPES = ("loguniform", "uniform", "int", "categorical", "grid")
TOP_LEVEL_KEYS = ("description", "name", "config", "sweep", "params")
_FIELDS = {
    "loguniform": ({"low", "high"}, {"when"}),
    "uniform": ({"low", "high"}, {"when"}),
    "int": ({"low", "high"}, {"step", "log", "when"}),
    "categorical": ({"values"}, {"when"}),
    "grid": ({"values"}, {"when"}),
}
# Mapping-valued config keys whose children may be new keys (family-specific options).
_OPEN_MAPPINGS = ("model.options", "data.flip_swap")
_PRIMITIVES = (str, int, float, bool, type(None))


def _is_primitive(value: Any) -> bool:
    return isinstance(value, _PRIMITIVES)


@dataclass(frozen=True)
class Param:
    """One varying config key: its distribution and the condition under which it applies."""

    key: str
    type: str
    name: str = ""  # the Optuna parameter name: the key, or key#i for one of several alternatives
    low: float | None = None
    high: float | None = None
    step: int | None = None
    log: bool = False
    values: tuple[Any, ...] = ()
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def applies(self, chosen: Mapping[str, Any]) -> bool:
        """True when every condition holds for the values chosen so far in this trial."""
        return all(key in chosen and _matches(chosen[key], allowed) for key, allowed in self.when.items())

    @property
    def is_choice(self) -> bool:
        return self.type in ("categorical", "grid")

    def _encoded(self) -> tuple[Any, ...]:
        # Optuna's categorical choices must be primitives: lists/dicts travel as JSON strings.
        return tuple(v if _is_primitive(v) else json.dumps(v, sort_keys=True) for v in self.values)

    def decode(self, value: Any) -> Any:
        if self.is_choice and isinstance(value, str):
            for raw, enc in zip(self.values, self._encoded()):
                if enc == value:
                    return raw
        return value

    @property
    def optuna_name(self) -> str:
        return self.name or self.key

    def suggest(self, trial: Any) -> Any:
        """Sample this parameter on an Optuna trial (define-by-run)."""
        name = self.optuna_name
        if self.type == "loguniform":
            return trial.suggest_float(name, self.low, self.high, log=True)
        if self.type == "uniform":
            return trial.suggest_float(name, self.low, self.high)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=self.step or 1, log=self.log)
        return self.decode(trial.suggest_categorical(name, list(self._encoded())))

    def distribution(self) -> Any:
        import optuna.distributions as d

        if self.type == "loguniform":
            return d.FloatDistribution(self.low, self.high, log=True)
        if self.type == "uniform":
            return d.FloatDistribution(self.low, self.high)
        if self.type == "int":
            return d.IntDistribution(int(self.low), int(self.high), step=self.step or 1, log=self.log)
        return d.CategoricalDistribution(list(self._encoded()))


def _matches(value: Any, allowed: tuple[Any, ...]) -> bool:
    return any(value == a for a in allowed)


@dataclass
class SearchSpace:
    """The parsed file: its name, description, parameters (in sampling order) and raw sections."""

    name: str
    path: Path | None
    description: str
    params: list[Param]
    fixed: dict[str, Any]
    sweep: dict[str, Any]

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys(p.key for p in self.params))

    def sample(self, trial: Any) -> dict[str, Any]:
        """Define-by-run: sample each parameter whose condition holds, in file order (of a key's
        alternatives, the first whose condition holds)."""
        chosen: dict[str, Any] = {}
        for param in self.params:
            if param.key not in chosen and param.applies(chosen):
                chosen[param.key] = param.suggest(trial)
        return chosen

    def grid_points(self) -> list[dict[str, Any]]:
        """Every distinct combination of a space made only of grid/categorical parameters,
        honouring conditions (a parameter that does not apply is not multiplied in).
        Keys are Optuna parameter names, values as Optuna stores them (``study.enqueue_trial``)."""
        bad = [p.key for p in self.params if not p.is_choice]
        if bad:
            raise ConfigError(
                f"{self._where()}: sweep.searcher=grid needs every parameter to be grid or categorical; "
                f"these are not: {', '.join(bad)}"
            )
        points: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {})]  # (by key, by Optuna name)
        for param in self.params:
            grown = []
            for by_key, by_name in points:
                if param.key not in by_key and param.applies(by_key):
                    grown.extend(
                        ({**by_key, param.key: raw}, {**by_name, param.optuna_name: enc})
                        for raw, enc in zip(param.values, param._encoded())
                    )
                else:
                    grown.append((by_key, by_name))
            points = grown
        return [by_name for _, by_name in points]

    def max_value(self, key: str, default: Any) -> Any:
        """The largest value a key can take in this space (e.g. train.epochs for ASHA's max_t)."""
        found = [max(p.values) if p.is_choice else p.high for p in self.params if p.key == key]
        return max(found) if found else default

    def _where(self) -> str:
        return str(self.path) if self.path else self.name


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested and dotted keys alike -> {dotted: value}; mapping leaves under open mappings stay whole."""
    out: dict[str, Any] = {}
    if not isinstance(node, Mapping):
        return {prefix: node}
    for key, value in node.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and dotted not in _OPEN_MAPPINGS and value:
            out.update(_flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _known_key(key: str, valid: set[str]) -> bool:
    if key in valid:
        return True
    return any(key.startswith(m + ".") and key.count(".") == m.count(".") + 1 for m in _OPEN_MAPPINGS)


def _number(where: str, key: str, spec: Mapping[str, Any], name: str) -> float:
    value = spec[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: params.{key}.{name}={value!r} must be a number") from None
    return float(value)


def _parse_param(where: str, key: str, spec: Any, valid: set[str], earlier: dict[str, list[Param]], name: str = "") -> Param:
    if not _known_key(key, valid):
        section = key.rpartition(".")[0]
        hint = [k for k in sorted(valid) if k.rpartition(".")[0] == section]
        hint_text = f"; valid keys under {section}: {', '.join(k.rpartition('.')[2] for k in hint)}" if hint else ""
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
    when: dict[str, tuple[Any, ...]] = {}
    for cond_key, cond_value in (spec.get("when") or {}).items():
        if cond_key not in earlier:
            raise ConfigError(
                f"{where}: params.{key}.when: '{cond_key}' must be a parameter declared before '{key}'"
            )
        allowed_values = tuple(cond_value) if isinstance(cond_value, (list, tuple)) else (cond_value,)
        parents = earlier[cond_key]
        if all(parent.is_choice for parent in parents):
            possible = [v for parent in parents for v in parent.values]
            unknown = [v for v in allowed_values if not _matches(v, tuple(possible))]
            if unknown:
                raise ConfigError(
                    f"{where}: params.{key}.when: {cond_key}={unknown[0]!r} is not one of its values {possible}"
                )
        when[cond_key] = allowed_values
    if kind in ("categorical", "grid"):
        values = spec["values"]
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"{where}: params.{key}.values must be a non-empty list")
        return Param(key=key, type=kind, name=name, values=tuple(values), when=when)
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
    return Param(key=key, type=kind, name=name, low=low, high=high, step=int(step) if step else None, log=log, when=when)


def parse_space(data: Mapping[str, Any], *, path: Path | None = None, name: str | None = None) -> SearchSpace:
    """Check and parse the content of a space file (already loaded as a plain dict)."""
    where = str(path) if path else (name or "search space")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a search space must be a mapping with sections {', '.join(TOP_LEVEL_KEYS)}")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{where}: unknown top-level key '{key}'; valid: {', '.join(TOP_LEVEL_KEYS)}")
    valid = set(all_keys())
    fixed = _flatten(data.get("config") or {})
    for key in fixed:
        if key == "data" and isinstance(fixed[key], str):
            continue  # a data preset name (Hydra group), e.g. data: ucf101
        if not _known_key(key, valid):
            raise ConfigError(f"{where}: config.{key}: unknown config key '{key}' (`harp config --keys` lists all)")
    sweep = dict(data.get("sweep") or {})
    sweep_keys = {k.partition(".")[2] for k in valid if k.startswith("sweep.")}
    for key in sweep:
        if key not in sweep_keys:
            raise ConfigError(f"{where}: sweep.{key}: unknown sweep setting; valid: {', '.join(sorted(sweep_keys))}")
    params: dict[str, list[Param]] = {}
    raw_params = data.get("params") or {}
    if not isinstance(raw_params, Mapping):
        raise ConfigError(f"{where}: params must be a mapping of config key -> distribution")
    for key, spec in raw_params.items():
        key = str(key)
        if key in fixed:
            raise ConfigError(f"{where}: params.{key} is also fixed under config:; keep one")
        if isinstance(spec, (list, tuple)):
            # Alternatives for one key, each under its own condition (e.g. a data root per format).
            if len(spec) < 2 or not all(isinstance(a, Mapping) and a.get("when") for a in spec):
                raise ConfigError(
                    f"{where}: params.{key}: a list of alternatives needs two or more entries, each with a 'when'"
                )
            params[key] = [_parse_param(where, key, alt, valid, params, name=f"{key}#{i}") for i, alt in enumerate(spec)]
        else:
            params[key] = [_parse_param(where, key, spec, valid, params)]
    space_name = name or data.get("name") or (path.stem if path else "sweep")
    return SearchSpace(
        name=str(space_name),
        path=path,
        description=str(data.get("description") or ""),
        params=[p for alternatives in params.values() for p in alternatives],
        fixed=fixed,
        sweep=sweep,
    )


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
    return parse_space(data or {}, path=file)


def apply_params(base: HarpConfig, params: Mapping[str, Any]) -> HarpConfig:
    """The trial's config: ``base`` with each sampled dotted key set, validated."""
    conf = OmegaConf.create(to_dict(base))
    for key, value in params.items():
        OmegaConf.update(conf, key, value, merge=False, force_add=True)
    return from_dict(OmegaConf.to_container(conf))  # type: ignore[arg-type]


def base_config(space: SearchSpace, overrides: Sequence[str] = ()) -> HarpConfig:
    """Schema defaults < the space's config + sweep sections < command-line overrides."""
    flat = {k: v for k, v in space.fixed.items() if not (k == "data" and isinstance(v, str))}
    preset = space.fixed.get("data") if isinstance(space.fixed.get("data"), str) else None
    content = _nest(flat)
    if space.sweep:
        content.setdefault("sweep", {}).update(space.sweep)
    if space.path is not None:
        content.setdefault("sweep", {}).setdefault("search_space", str(space.path))
    cli = list(overrides)
    if preset and not any(o.startswith("data=") for o in cli):
        cli = [f"data={preset}", *cli]
    where = space._where()
    with tempfile.TemporaryDirectory(prefix="harp-space-") as tmp:
        file = Path(tmp) / "space_config.yaml"
        file.write_text(yaml.safe_dump(content, sort_keys=False))
        try:
            cfg = load_config(cli, file)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    check_space_against(cfg, space)
    return cfg


def check_space_against(cfg: HarpConfig, space: SearchSpace) -> None:
    """Every choice of every categorical/grid parameter must make a valid config on its own."""
    where = space._where()
    for param in space.params:
        candidates: Iterable[Any]
        if param.is_choice:
            candidates = param.values
        elif param.type == "int":
            candidates = (int(param.low), int(param.high))  # type: ignore[arg-type]
        else:
            candidates = (param.low, param.high)
        for value in candidates:
            try:
                apply_params(cfg, {param.key: value})
            except ConfigError as exc:
                raise ConfigError(f"{where}: params.{param.key}={value!r}: {exc}") from exc


def grid_size(space: SearchSpace) -> int:
    return len(space.grid_points())


def describe(space: SearchSpace) -> str:
    """A few lines for the console: what varies and how."""
    lines = []
    for p in space.params:
        if p.is_choice:
            how = f"{p.type} {list(p.values)}"
        elif p.type == "int":
            how = f"int [{int(p.low)}, {int(p.high)}]" + (" log" if p.log else "")
        else:
            how = f"{p.type} [{p.low:g}, {p.high:g}]"
        cond = ""
        if p.when:
            cond = "  when " + ", ".join(f"{k} in {list(v)}" for k, v in p.when.items())
        lines.append(f"  {p.key:<24} {how}{cond}")
    return "\n".join(lines)


__all__ = [
    "PARAM_TYPES",
    "Param",
    "SearchSpace",
    "apply_params",
    "base_config",
    "check_space_against",
    "describe",
    "grid_size",
    "load_space",
    "parse_space",
]
