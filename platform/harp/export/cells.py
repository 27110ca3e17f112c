"""A study's cells: which trials belong together, what each cell is called, and where it sits in
the table.

``sweep.group_by`` names the keys that make a cell (``[data, model.family]``: one cell per data
set and family). ``data`` is the data set as a whole: two trials are on the same data set when
their format, root, annotations, official split, manifest (and class subset, where the config has
one) agree, whether the space varied a preset (``data: [ucf101, hmdb51]``) or ``data.format`` and
``data.root``. Any other key is compared by its resolved value in the trial's config.

``sweep.table`` lays the cells out as the paper's table: ``rows`` and ``columns`` split the
group_by keys between them (default: rows = the first key, columns = the rest).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from harp.config.keys import is_known
from harp.config.load import to_dict
from harp.config.schema import HarpConfig
from harp.errors import ConfigError
from harp.tune.space import SearchSpace

DATA_KEY = "data"
# What makes two trials' data one data set (their manifests and class lists follow from these).
DATA_IDENTITY = ("format", "root", "annotations", "split", "manifest", "classes", "per_class")
# The space parameters whose values order the data sets in a table (the order the paper gives them).
_DATA_PARAMS = ("data", "data.format", "data.root")

# A cell's value per group_by key, as canonical JSON (hashable, comparable, printable).
CellKey = tuple[str, ...]


@dataclass(frozen=True)
class StudyLayout:
    """The group_by keys and how the table splits them into rows and columns."""

    keys: tuple[str, ...]
    rows: tuple[str, ...]
    columns: tuple[str, ...]


def study_layout(cfg: HarpConfig) -> StudyLayout | None:
    """The sweep's table layout, or None for a sweep without ``sweep.group_by``; a bad key is one
    ConfigError line (checked before a sweep starts, and again by export)."""
    keys = [str(k) for k in cfg.sweep.group_by]
    rows, columns = [str(k) for k in cfg.sweep.table.rows], [str(k) for k in cfg.sweep.table.columns]
    if not keys:
        if rows or columns:
            raise ConfigError("sweep.table lays out a study's cells: set sweep.group_by (e.g. sweep.group_by=[data,model.family]) too")
        return None
    for key in keys:
        if key != DATA_KEY and not is_known(key):
            raise ConfigError(f"sweep.group_by: unknown config key {key!r}; use 'data' (the data set) or a config key such as model.family")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"sweep.group_by={keys} names a key twice")
    for name, placed in (("rows", rows), ("columns", columns)):
        stray = [k for k in placed if k not in keys]
        if stray:
            raise ConfigError(f"sweep.table.{name}: {stray[0]!r} is not one of sweep.group_by={keys}")
    if not rows:
        rows = [k for k in keys if k not in columns][:1] if columns else keys[:1]
    if not columns:
        columns = [k for k in keys if k not in rows]
    both = set(rows) & set(columns)
    missing = [k for k in keys if k not in rows and k not in columns]
    if both or missing:
        what = f"{sorted(both)[0]!r} is in both" if both else f"{missing[0]!r} is in neither"
        raise ConfigError(f"sweep.table: each group_by key goes to rows or to columns; {what}")
    return StudyLayout(tuple(keys), tuple(rows), tuple(columns))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def cell_key(cfg: HarpConfig, params: Mapping[str, Any], keys: Sequence[str]) -> CellKey:
    """The cell of a trial with resolved config ``cfg`` and sampled ``params``."""
    tree = to_dict(cfg)
    values = []
    for key in keys:
        if key == DATA_KEY:
            data = tree["data"]
            identity = {field: data[field] for field in DATA_IDENTITY if field in data}
            if isinstance(params.get(DATA_KEY), str):
                identity["preset"] = params[DATA_KEY]
            values.append(_canonical(identity))
        else:
            values.append(_canonical(_lookup(tree, key)))
    return tuple(values)


def _data_labels(values: Sequence[str]) -> dict[str, str]:
    """Short names for the data sets of a study: the preset, else the format, else the root's
    folder name, whichever tells them apart (the full identity when none does)."""
    found = [json.loads(v) for v in values]

    def named(how: Any) -> list[str] | None:
        names = [str(how(d)) for d in found]
        return names if len(set(names)) == len(names) and all(names) else None

    for how in (
        lambda d: d.get("preset") or "",
        lambda d: d.get("format") or "",
        lambda d: PurePath(str(d.get("root") or "")).name,
        lambda d: f"{d.get('format')}:{PurePath(str(d.get('root') or '')).name}:split{d.get('split')}",
    ):
        names = named(how)
        if names is not None:
            return dict(zip(values, names))
    return {v: v for v in values}


def cell_labels(cells: Iterable[CellKey], keys: Sequence[str]) -> dict[CellKey, tuple[str, ...]]:
    """Each cell's printable value per key (``ucf101``, ``tsm``, ``0.001``)."""
    cells = list(cells)
    per_key: list[dict[str, str]] = []
    for i, key in enumerate(keys):
        distinct = list(dict.fromkeys(cell[i] for cell in cells))
        if key == DATA_KEY:
            per_key.append(_data_labels(distinct))
        else:
            per_key.append({v: (json.loads(v) if isinstance(json.loads(v), str) else v) for v in distinct})
    return {cell: tuple(per_key[i][v] for i, v in enumerate(cell)) for cell in cells}


def value_order(space: SearchSpace, key: str, labels: Iterable[str]) -> list[str]:
    """``labels`` of one key in the order the space lists that key's values (the paper's order),
    those it does not list after them in the order given."""
    listed: list[str] = []
    for param in space.params:
        if param.is_choice and (param.key == key or (key == DATA_KEY and param.key in _DATA_PARAMS)):
            listed += [v if isinstance(v, str) else _canonical(v) for v in param.values]
            if key == DATA_KEY:
                listed += [PurePath(v).name for v in param.values if isinstance(v, str)]
    labels = list(dict.fromkeys(labels))
    rank = {label: listed.index(label) if label in listed else len(listed) + i for i, label in enumerate(labels)}
    return sorted(labels, key=rank.__getitem__)


def cell_dir_names(labels: Mapping[CellKey, tuple[str, ...]]) -> dict[CellKey, str]:
    """A folder name per cell under ``best/`` (``ucf101__tsm``), unique and shell-friendly."""
    names: dict[CellKey, str] = {}
    taken: set[str] = set()
    for cell, parts in labels.items():
        base = "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", part).strip("-.") or "x" for part in parts)
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        names[cell] = name
    return names


__all__ = ["CellKey", "DATA_KEY", "StudyLayout", "cell_dir_names", "cell_key", "cell_labels", "study_layout", "value_order"]
