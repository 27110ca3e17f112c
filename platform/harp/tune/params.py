"""A search space in memory: the parameters that vary, and how a trial samples them.

``Param`` is one varying config key (its distribution and the condition under which it applies);
``SearchSpace`` holds them in sampling order and samples define-by-run on an Optuna trial, or
expands a grid. Reading and checking a space file is ``harp.tune.space``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harp.errors import ConfigError

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
        return all(key in chosen and matches(chosen[key], allowed) for key, allowed in self.when.items())

    @property
    def is_choice(self) -> bool:
        return self.type in ("categorical", "grid")

    def _encoded(self) -> tuple[Any, ...]:
        # Optuna's categorical choices must be primitives: lists/dicts travel as JSON strings.
        return tuple(v if _is_primitive(v) else json.dumps(v, sort_keys=True) for v in self.values)

    def decode(self, value: Any) -> Any:
        """A value as Optuna stored it -> the value the space file wrote (JSON strings back to lists)."""
        if self.is_choice and isinstance(value, str):
            for raw, enc in zip(self.values, self._encoded()):
                if enc == value:
                    return raw
        return value

    @property
    def optuna_name(self) -> str:
        return self.name or self.key

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of a numeric parameter; the parser gives every numeric parameter both."""
        if self.low is None or self.high is None:
            raise ValueError(f"params.{self.key}: a {self.type} parameter has no bounds")
        return self.low, self.high

    def suggest(self, trial: Any) -> Any:
        """Sample this parameter on an Optuna trial (define-by-run)."""
        name = self.optuna_name
        if self.is_choice:
            return self.decode(trial.suggest_categorical(name, list(self._encoded())))
        low, high = self.bounds
        if self.type == "int":
            return trial.suggest_int(name, int(low), int(high), step=self.step or 1, log=self.log)
        return trial.suggest_float(name, low, high, log=self.type == "loguniform")

    def distribution(self) -> Any:
        """The Optuna distribution of this parameter (for the searcher's study)."""
        import optuna.distributions as d  # here, not at the top: parsing a space needs no Optuna

        if self.is_choice:
            return d.CategoricalDistribution(list(self._encoded()))
        low, high = self.bounds
        if self.type == "int":
            return d.IntDistribution(int(low), int(high), step=self.step or 1, log=self.log)
        return d.FloatDistribution(low, high, log=self.type == "loguniform")


# Values that are paths (relative ones are anchored at ``base_dir``: trials run elsewhere), and the
# pretraining source, whose ``file:PATH`` form is a path too.
PATH_KEYS = ("data.root", "data.manifest", "data.annotations")
SOURCE_KEY = "model.pretrained"


def anchored(key: str, value: Any, base_dir: Path) -> Any:
    """``value`` of ``key`` made absolute against ``base_dir`` when it is a relative local path
    (a data path, or a ``file:`` pretraining source); anything else unchanged."""
    if not isinstance(value, str) or not value or "://" in value:
        return value
    if key == SOURCE_KEY:
        if not value.startswith("file:") or Path(value[5:]).is_absolute():
            return value
        return "file:" + str((base_dir / value[5:]).resolve())
    return value if Path(value).is_absolute() else str((base_dir / value).resolve())


def anchored_paths(chosen: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """``chosen`` with its relative data paths made absolute against ``base_dir``; a sampled data
    preset (``data: ucf101``) whose own root is relative gets that root anchored too (unless
    ``data.root`` was sampled as well), so every trial finds its data set wherever it runs."""
    from harp.config.presets import DATA_PRESETS

    out = dict(chosen)
    preset = DATA_PRESETS.get(out["data"]) if isinstance(out.get("data"), str) else None
    if preset is not None and "data.root" not in out:
        out["data.root"] = preset.root
    for key in (*PATH_KEYS, SOURCE_KEY):
        if key in out:
            out[key] = anchored(key, out[key], base_dir)
    return out


def matches(value: Any, allowed: tuple[Any, ...]) -> bool:
    """Whether a chosen value satisfies a ``when`` condition (equality, so lists and dicts work)."""
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
    # Where relative data paths among the sampled values point from (the directory `harp sweep`
    # was started in; ``load_space`` sets it). Trials run in their own directories, so the
    # driver makes those paths absolute before a trial gets them. None -> left as written.
    base_dir: Path | None = None

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
        return anchored_paths(chosen, self.base_dir) if self.base_dir is not None else chosen

    def grid_points(self) -> list[dict[str, Any]]:
        """Every distinct combination of a space made only of grid/categorical parameters,
        honouring conditions (a parameter that does not apply is not multiplied in).
        Keys are Optuna parameter names, values as Optuna stores them (``study.enqueue_trial``)."""
        bad = [p.key for p in self.params if not p.is_choice]
        if bad:
            raise ConfigError(
                f"{self.where}: sweep.searcher=grid needs every parameter to be grid or categorical; "
                f"these are not: {', '.join(bad)}"
            )
        points: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {})]  # (by key, by Optuna name)
        for param in self.params:
            grown: list[tuple[dict[str, Any], dict[str, Any]]] = []
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
        found = [max(p.values) if p.is_choice else p.bounds[1] for p in self.params if p.key == key]
        return max(found) if found else default

    @property
    def where(self) -> str:
        """What one-line errors name: the file, or the space's name when it has none."""
        return str(self.path) if self.path else self.name


def describe_space(space: SearchSpace) -> str:
    """A few lines for the console: what varies and how."""
    lines = []
    for p in space.params:
        if p.is_choice:
            how = f"{p.type} {list(p.values)}"
        elif p.type == "int":
            how = f"int [{int(p.bounds[0])}, {int(p.bounds[1])}]" + (" log" if p.log else "")
        else:
            how = f"{p.type} [{p.bounds[0]:g}, {p.bounds[1]:g}]"
        cond = ""
        if p.when:
            cond = "  when " + ", ".join(f"{k} in {list(v)}" for k, v in p.when.items())
        lines.append(f"  {p.key:<24} {how}{cond}")
    return "\n".join(lines)


__all__ = ["PATH_KEYS", "SOURCE_KEY", "Param", "SearchSpace", "anchored", "anchored_paths", "describe_space", "matches"]
