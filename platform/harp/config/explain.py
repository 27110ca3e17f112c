"""OmegaConf's errors, each made one line that names the key and the fix.

Built from the exception's attributes (``full_key``, ``value``) and the schema's declared type for
that key, never from the wording of OmegaConf's message, which spans several lines and changes
between releases.
"""
from __future__ import annotations

import dataclasses
import enum
import typing
from typing import Any

from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    OmegaConfBaseException,
    ValidationError,
)

from harp.config.keys import key_type, keys_under, open_mapping_of

# The words a message uses for a scalar type.
_TYPE_WORDS = {bool: "boolean", int: "integer", float: "float", str: "string"}


def unknown_key(key: str) -> str:
    """'unknown config key ...' with the valid names next to it (or how to add an open-mapping entry)."""
    mapping = open_mapping_of(key)
    if mapping is not None:
        return f"'{mapping}' is a mapping: add the new key with a plus, +{key}=VALUE"
    section = key.rpartition(".")[0]
    where = f" under {section}" if section else ""
    return f"unknown config key '{key}'; valid keys{where}: {', '.join(keys_under(section))} (`harp config --keys` lists all)"


def bad_value(key: str, value: Any) -> str:
    """A value the key's type does not take: the enum's choices, or the type it must be."""
    kind = key_type(key)
    if dataclasses.is_dataclass(kind):
        return f"{key}={value!r}: {key} is a section; set its keys instead, e.g. {key}.{keys_under(key)[0]}=VALUE"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return f"{key}={value!r} is not valid; choose one of: {', '.join(m.value for m in kind)}"
    if kind is bool:
        return f"{key}={value!r} is not a valid boolean; write true or false"
    if kind in _TYPE_WORDS:
        return f"{key}={value!r} is not a valid {_TYPE_WORDS[kind]}; fix the value"
    origin = typing.get_origin(kind)
    if origin is list:
        return f"{key}={value!r} is not a list of the right type; write e.g. {key}=[1,2] (strings quoted if need be)"
    if origin is dict:
        return f"{key}={value!r} is not a mapping; write e.g. {key}={{name:value}}"
    return f"{key}={value!r} is not a valid value for this key; fix the value"


def _list_element(key: str) -> str:
    """``optim.milestones[1]`` -> ``optim.milestones``: a list element is judged by its list's type."""
    return key.partition("[")[0]


def explain(exc: OmegaConfBaseException) -> str:
    """One line for an OmegaConf error raised while layering or converting a config."""
    key = exc.full_key or ""
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)) and key:
        return unknown_key(key)
    if isinstance(exc, InterpolationResolutionError):
        return f"{key or 'config'}: its ${{...}} interpolation cannot be resolved; point it at an existing key"
    if isinstance(exc, ValidationError) and key:
        owner = _list_element(key)
        kind = key_type(owner)
        if owner != key and typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            word = _TYPE_WORDS.get(item, getattr(item, "__name__", "value"))
            return f"{key}={exc.value!r} is not a valid {word}; fix the list {owner}"
        return bad_value(key, exc.value)
    first = str(exc.msg or type(exc).__name__).splitlines()[0]
    return f"{key or 'config'}: {first}"


__all__ = ["bad_value", "explain", "unknown_key"]
