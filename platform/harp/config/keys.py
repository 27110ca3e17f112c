"""The schema's dotted keys and the type each one holds.

One walk over the dataclasses serves ``harp config --keys``, the one-line messages that list a
section's valid keys or an enum's choices, and the key checks of search-space files.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from harp.config.schema import OPEN_MAPPINGS, HarpConfig


def _without_none(kind: Any) -> Any:
    """``Optional[int]`` -> ``int``: a message names the type a value must have."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return kind


@functools.cache
def _key_types() -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(cls: Any, prefix: str) -> None:
        hints = typing.get_type_hints(cls)  # the schema's annotations are strings (postponed)
        for f in dataclasses.fields(cls):
            kind = _without_none(hints[f.name])
            found[prefix + f.name] = kind
            if dataclasses.is_dataclass(kind):
                walk(kind, f"{prefix}{f.name}.")

    walk(HarpConfig, "")
    return found


def all_keys() -> list[str]:
    """Every valid dotted config key, sections included, in schema order (``harp config --keys``)."""
    return list(_key_types())


def key_type(key: str) -> Any:
    """The declared type of a schema key (``optim.name`` -> ``OptimizerName``), None for others."""
    return _key_types().get(key)


def keys_under(section: str) -> list[str]:
    """The names directly under a section ("" for the top level): what a typo most likely meant."""
    prefix = f"{section}." if section else ""
    return [k[len(prefix):] for k in _key_types() if k.startswith(prefix) and "." not in k[len(prefix):]]


def open_mapping_of(key: str) -> str | None:
    """The open mapping (``model.options``, ``data.flip_swap``) ``key`` is an entry of, if any."""
    return next((m for m in OPEN_MAPPINGS if key.startswith(m + ".")), None)


def is_known(key: str) -> bool:
    """A schema key, or a possible entry of an open mapping (which need not exist yet)."""
    return key in _key_types() or open_mapping_of(key) is not None


__all__ = ["all_keys", "is_known", "key_type", "keys_under", "open_mapping_of"]
