"""Command-line ``key=value`` overrides: read with Hydra's grammar, applied with OmegaConf.

Hydra's own parser reads each override, so quoting, lists (``optim.milestones=[30,40]``), dicts
(``model.options={depth:18}``), interpolations and the ``~``/``+``/``++`` prefixes mean what a
Hydra user expects. harp runs no Hydra job, though, so the override is then applied here:

* ``key=value`` sets an existing key (``data=NAME`` picks a data preset: ``harp.config.load``);
* ``~key`` resets the key to its schema default, the dataclass's own value before any preset,
  config file or override (``~optim.lr`` -> 0.001, ``~data.flip_swap`` -> ``{}``); an entry of an
  open mapping (``~model.options.depth``) is removed; ``~key=value`` resets only while the key
  holds that value;
* ``+key=value`` adds a new entry to an open mapping (``model.options``, ``data.flip_swap``);
* ``++key=value`` sets a key, or adds it to an open mapping when it is not there yet;
* sweeps (``choice(...)``, ``a,b``, ``range(...)``, ``interval(...)``, ``glob(...)``), ``hydra.*``
  keys, ``key@package`` and ``-m/--multirun`` are refused, each with a line saying what harp
  does instead.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigTypeError, OmegaConfBaseException

from harp.config.explain import bad_value, explain, unknown_key
from harp.config.keys import key_type, open_mapping_of
from harp.config.schema import OPEN_MAPPINGS, HarpConfig
from harp.errors import ConfigError

MULTIRUN_FLAGS = ("-m", "--multirun")
MULTIRUN_REFUSED = (
    "harp does not run Hydra jobs, so -m/--multirun does not apply; "
    "run several configurations with `harp sweep` and a search space"
)
_ABSENT = object()  # OmegaConf.select's answer for a key that is not there


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()


def _sweep_refused(override: Override) -> str:
    value = override.value()
    if isinstance(value, IntervalSweep):
        spec = f"{{type: uniform, low: {value.start:g}, high: {value.end:g}}}"
    elif isinstance(value, ChoiceSweep):
        spec = f"{{type: categorical, values: [{', '.join(map(str, value.list))}]}}"
    else:
        spec = "{type: categorical, values: [...]}"
    return (
        f"`{override.input_line}` is a Hydra sweep; use `harp sweep` with a search space "
        f"(params: {override.key_or_group}: {spec})"
    )


def _check_supported(override: Override) -> None:
    """Refuse what only a Hydra job would do with this override."""
    key = override.key_or_group
    if key == "hydra" or key.startswith(("hydra.", "hydra/")):
        raise ConfigError(
            f"`{override.input_line}`: harp does not run Hydra jobs, so hydra.* settings do not apply; "
            "set harp's own keys (train.output_dir, sweep.output_dir, ...)"
        )
    if override.package is not None:
        raise ConfigError(f"`{override.input_line}`: harp configs have no packages (key@package); set the key itself, {key}=VALUE")
    if override.is_sweep_override():
        raise ConfigError(_sweep_refused(override))


def parse_overrides(lines: Iterable[str]) -> list[Override]:
    """Parse ``key=value`` strings with Hydra's override grammar; one ConfigError line per problem."""
    parsed = []
    for line in lines:
        if line in MULTIRUN_FLAGS:
            raise ConfigError(MULTIRUN_REFUSED)
        try:
            (override,) = _parser().parse_overrides([line])
        except OverrideParseException as exc:
            hint = "write key=value, e.g. optim.lr=0.01" if "=" not in line and not line.startswith("~") else "quote values with spaces or special characters"
            raise ConfigError(f"cannot read override {line!r} (Hydra's override grammar); {hint}") from exc
        _check_supported(override)
        parsed.append(override)
    return parsed


def preset_named(overrides: Sequence[Override]) -> str | None:
    """The data preset the last ``data=NAME`` picks, if any."""
    names = [str(o.value()) for o in overrides if _is_preset_choice(o)]
    return names[-1] if names else None


def _is_preset_choice(override: Override) -> bool:
    return override.key_or_group == "data" and not override.is_delete() and isinstance(override.value(), str)


def schema_default(key: str) -> Any:
    """The value ``HarpConfig()`` gives a dotted key (a section's dataclass for a section)."""
    node: Any = HarpConfig()
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _exists(conf: DictConfig, key: str) -> bool:
    """A schema key, or an entry an open mapping holds now."""
    if key_type(key) is not None:
        return True
    return open_mapping_of(key) is not None and OmegaConf.select(conf, key, default=_ABSENT) is not _ABSENT


def _reset(conf: DictConfig, override: Override) -> None:
    """``~key`` / ``~key=value``: back to the schema default, or out of its open mapping."""
    key, line = override.key_or_group, override.input_line
    if not _exists(conf, key):
        raise ConfigError(f"`{line}`: {key} is not set, so there is nothing to remove" if open_mapping_of(key) else unknown_key(key))
    current = OmegaConf.select(conf, key)
    if override.value_type is not None and current != override.value():
        raise ConfigError(f"`{line}`: {key} is {current!r}, not {override.value()!r}; `~{key}` resets it whatever its value")
    if open_mapping_of(key) is None:
        OmegaConf.update(conf, key, schema_default(key), merge=False)
    else:
        parent, _, leaf = key.rpartition(".")
        del OmegaConf.select(conf, parent)[leaf]


def _check_addable(conf: DictConfig, override: Override) -> None:
    """``+key=value`` adds a new entry to an open mapping, and nothing else."""
    key, line = override.key_or_group, override.input_line
    where = " and ".join(OPEN_MAPPINGS)
    if open_mapping_of(key) is None:
        if key_type(key) is not None:
            raise ConfigError(f"`{line}`: {key} is already a config key; set it without the plus, {key}=VALUE (a plus adds new keys under {where} only)")
        raise ConfigError(f"{unknown_key(key)}; a plus adds new keys under {where} only")
    if _exists(conf, key):
        raise ConfigError(f"`{line}`: {key} is already set; drop the plus to change it, {key}=VALUE")


def _apply_one(conf: DictConfig, override: Override) -> None:
    if override.is_delete():
        _reset(conf, override)
        return
    key = override.key_or_group
    entry = open_mapping_of(key) is not None
    if override.is_add():
        _check_addable(conf, override)
    elif not _exists(conf, key) and not (override.is_force_add() and entry):
        raise ConfigError(unknown_key(key))  # for a missing entry: "add it with a plus"
    OmegaConf.update(conf, key, override.value(), merge=True, force_add=entry)


def apply_overrides(conf: DictConfig, overrides: Sequence[Override]) -> None:
    """Apply parsed overrides in order (``data=NAME`` is skipped: the preset is chosen before)."""
    for override in overrides:
        if _is_preset_choice(override):
            continue
        try:
            _apply_one(conf, override)
        except ConfigTypeError as exc:  # a mapping for a list or the like: OmegaConf keeps no value
            raise ConfigError(bad_value(override.key_or_group, override.value())) from exc
        except OmegaConfBaseException as exc:
            raise ConfigError(explain(exc)) from exc


__all__ = ["MULTIRUN_FLAGS", "MULTIRUN_REFUSED", "apply_overrides", "parse_overrides", "preset_named", "schema_default"]
