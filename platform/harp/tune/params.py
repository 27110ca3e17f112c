"""A search space in memory: the parameters that vary, and how a trial samples them.

``Param`` is one varying config key (its distribution and the condition under which it applies);
``SearchSpace`` holds them in sampling order and samples define-by-run on an Optuna trial, or
expands a grid. Reading and checking a space file is ``harp.tune.space``.

A key may have several alternatives (``optim.lr``: one range for sgd, another for adamw). The
Optuna study holds such a key ONCE, under its own name, with the union of its alternatives'
distributions (``SearchSpace.distribution``), so ``study.best_params`` reads as overrides
(``optim.lr=0.03``) and importance evaluators and optuna-dashboard see one parameter. Why the
union rather than each alternative's own range under the one name: Optuna refuses a categorical
whose choices change between trials, and TPE's grouped search space keeps the first range it saw
for a name. That the value lies inside the alternative that applies is the sampler's job
(``harp.tune.alternatives.AlternativesSampler``); ``SearchSpace.sample`` checks it.
"""
from __future__ import annotations

import json
import math
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
    def bounds(self) -> tuple[float, float]:
        """(low, high) of a numeric parameter; the parser gives every numeric parameter both."""
        if self.low is None or self.high is None:
            raise ValueError(f"params.{self.key}: a {self.type} parameter has no bounds")
        return self.low, self.high

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (as the space file writes it) is one this parameter can take."""
        if self.is_choice:
            return matches(value, self.values)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        low, high = self.bounds
        if not low <= value <= high:
            return False
        return self.type != "int" or (value == int(value) and (int(value) - int(low)) % (self.step or 1) == 0)

    def describe(self) -> str:
        """``loguniform [0.01, 0.1]``, ``int [1, 8]``, ``categorical ['a', 'b']``: what ``describe_space`` prints."""
        if self.is_choice:
            return f"{self.type} {list(self.values)}"
        low, high = self.bounds
        if self.type == "int":
            return f"int [{int(low)}, {int(high)}]" + (" log" if self.log else "")
        return f"{self.type} [{low:g}, {high:g}]"

    def describe_when(self) -> str:
        """``optim.name=sgd``, ``model.family=tsm|tea``: the condition, short."""
        return ", ".join(f"{key}={'|'.join(map(str, values))}" for key, values in self.when.items())

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

    def __post_init__(self) -> None:
        for key in self.keys:
            _check_alternatives(self.where, key, self.alternatives(key))

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys(p.key for p in self.params))

    def alternatives(self, key: str) -> list[Param]:
        """The parameters of ``key``: one, or its alternatives in file order."""
        return [p for p in self.params if p.key == key]

    def has_alternatives(self, key: str) -> bool:
        return len(self.alternatives(key)) > 1

    def alternative_for(self, key: str, chosen: Mapping[str, Any]) -> Param | None:
        """The parameter of ``key`` that applies after the values ``chosen`` so far (decoded, by
        key): the first alternative whose condition holds; None when none does."""
        return next((p for p in self.alternatives(key) if p.applies(chosen)), None)

    def distribution(self, key: str) -> Any:
        """The one Optuna distribution the study holds ``key`` under: its own, or the union of its
        alternatives' (choices in file order; the widest range; for ints the step all share)."""
        params = self.alternatives(key)
        if len(params) == 1:
            return params[0].distribution()
        import optuna.distributions as d

        if params[0].is_choice:
            return d.CategoricalDistribution(list(dict.fromkeys(v for p in params for v in p._encoded())))
        low = min(p.bounds[0] for p in params)
        high = max(p.bounds[1] for p in params)
        if params[0].type != "int":
            return d.FloatDistribution(low, high, log=params[0].type == "loguniform")
        step = 0
        for p in params:  # every alternative's values lie on the union's grid
            step = math.gcd(step, p.step or 1, int(p.bounds[0] - low))
        high = low + (high - low) // step * step
        return d.IntDistribution(int(low), int(high), step=step, log=params[0].log)

    def decoded(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values as Optuna stores them (by key) -> as the space file writes them (lists back
        from their JSON strings); keys the space does not have are left out."""
        out = {}
        for key, value in values.items():
            params = self.alternatives(key)
            if params:
                out[key] = next((p.decode(value) for p in params if p.contains(p.decode(value))), params[0].decode(value))
        return out

    def sample(self, trial: Any) -> dict[str, Any]:
        """Define-by-run: sample each parameter whose condition holds, in file order (of a key's
        alternatives, the first whose condition holds), under its key with ``distribution(key)``.
        A value outside the alternative that applies means the study's sampler is not harp's
        (``harp.tune.study.make_sampler(..., space=...)``): an error, never a silent wrong range."""
        chosen: dict[str, Any] = {}
        for param in self.params:
            if param.key in chosen or not param.applies(chosen):
                continue
            value = param.decode(_suggest(trial, param.key, self.distribution(param.key)))
            if not param.contains(value):
                raise ValueError(
                    f"{param.key}={value!r} lies outside {param.describe()} (the range for {param.describe_when()}): "
                    "sample this space with the sampler of harp.tune.study.make_sampler(..., space=space)"
                )
            chosen[param.key] = value
        return anchored_paths(chosen, self.base_dir) if self.base_dir is not None else chosen

    def settled(self, proposal: Mapping[str, Any], fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A sampler's joint proposal (key -> value as Optuna stores it) without the values of keys
        of several alternatives that would not lie inside the alternative that applies, or whose
        alternative cannot be told from the proposal and the trial's ``fixed`` (enqueued) values:
        Optuna then samples those one at a time, when the trial asks for them."""
        known = {**proposal, **(fixed or {})}
        out = dict(proposal)
        chosen: dict[str, Any] = {}
        undecided: set[str] = set()
        for param in self.params:
            key = param.key
            if key in chosen or key in undecided:
                continue
            if undecided & set(param.when):  # whether it applies depends on a value not known yet
                undecided.add(key)
            elif not param.applies(chosen):
                continue
            elif key not in known:
                undecided.add(key)
            elif param.contains(param.decode(known[key])):
                chosen[key] = param.decode(known[key])
                continue
            else:
                undecided.add(key)
            if self.has_alternatives(key):
                out.pop(key, None)
        return out

    def grid_points(self) -> list[dict[str, Any]]:
        """Every distinct combination of a space made only of grid/categorical parameters,
        honouring conditions (a parameter that does not apply is not multiplied in).
        Values as Optuna stores them (``study.enqueue_trial``)."""
        bad = [p.key for p in self.params if not p.is_choice]
        if bad:
            raise ConfigError(
                f"{self.where}: sweep.searcher=grid needs every parameter to be grid or categorical; "
                f"these are not: {', '.join(bad)}"
            )
        points: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {})]  # (as written, as Optuna stores them)
        for param in self.params:
            grown: list[tuple[dict[str, Any], dict[str, Any]]] = []
            for raw_point, stored in points:
                if param.key not in raw_point and param.applies(raw_point):
                    grown.extend(
                        ({**raw_point, param.key: raw}, {**stored, param.key: enc})
                        for raw, enc in zip(param.values, param._encoded())
                    )
                else:
                    grown.append((raw_point, stored))
            points = grown
        return [stored for _, stored in points]

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
        cond = ""
        if p.when:
            cond = "  when " + ", ".join(f"{k} in {list(v)}" for k, v in p.when.items())
        lines.append(f"  {p.key:<24} {p.describe()}{cond}")
    return "\n".join(lines)


def _suggest(trial: Any, name: str, distribution: Any) -> Any:
    """``trial.suggest_*`` for an Optuna distribution (an Optuna trial, a FixedTrial, or Ray's
    captor of one: each has the suggest methods, not always ``_suggest``)."""
    import optuna.distributions as d

    if isinstance(distribution, d.CategoricalDistribution):
        return trial.suggest_categorical(name, list(distribution.choices))
    if isinstance(distribution, d.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


# What may be alternatives of one key: the study holds the key once, under one distribution kind.
_KINDS = {"categorical": "choice", "grid": "choice", "uniform": "uniform", "loguniform": "loguniform", "int": "int"}


def _check_alternatives(where: str, key: str, params: list[Param]) -> None:
    """A key's alternatives must make one Optuna distribution: all categorical/grid, all uniform,
    all loguniform, or all int with the same ``log``."""
    kinds = {(_KINDS[p.type], p.log) for p in params}
    if len(kinds) > 1:
        shown = ", ".join(dict.fromkeys(p.type + (" log" if p.log else "") for p in params))
        raise ConfigError(
            f"{where}: params.{key}: its alternatives are {shown}; make them one kind (all categorical/grid, "
            f"all uniform, all loguniform, or all int) so the Optuna study holds {key} as one parameter"
        )


__all__ = ["PATH_KEYS", "SOURCE_KEY", "Param", "SearchSpace", "anchored", "anchored_paths", "describe_space", "matches"]
