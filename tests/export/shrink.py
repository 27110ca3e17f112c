"""Shrink a shipped search space to a study that runs in seconds on the tiny synthetic data.

What stays: the space's fixed config (less what needs real data or downloaded weights), its
parameters, conditions and ``sweep.group_by``/``sweep.table``/``sweep.refit``/objectives. What
changes: tiny models from scratch, 2 epochs, synthetic data, and a grid of at most 4 points that
makes 2 cells: the data set takes two synthetic roots with different class counts when it is a
group_by key (else the first group_by key the space varies takes 2 values; a study whose group_by
keys are all fixed keeps its one cell), the other group_by keys 1, the first other parameter the
space varies 2 (so a cell ranks 2 trials), every other parameter 1; continuous ranges become their
geometric (loguniform) or arithmetic middle.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

DATA_PARAMS = ("data", "data.format", "data.root", "data.annotations", "data.manifest", "data.split")
EPOCHS = 2


def _alternatives(spec: Any) -> list[dict[str, Any]]:
    return [dict(a) for a in spec] if isinstance(spec, list) else [dict(spec)]


def _as_grid(spec: Mapping[str, Any]) -> list[Any]:
    kind = spec["type"]
    if kind in ("categorical", "grid"):
        return list(spec["values"])
    low, high = float(spec["low"]), float(spec["high"])
    if kind == "loguniform":
        return [math.sqrt(low * high)]
    if kind == "int":
        return [int((low + high) // 2)]
    return [(low + high) / 2]


def _first_two_distinct(values: Sequence[Any], count: int) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out[:count]


def _fixed(config: Mapping[str, Any], roots: Sequence[str], synth: Mapping[str, Any], protocol_clips: int) -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, Mapping) and dotted not in ("model.options",) and value:
                walk(value, dotted + ".")
            else:
                flat[dotted] = value

    walk(config, "")
    keep = {k: v for k, v in flat.items() if k != "data" and not (k.startswith("data.") and k != "data.short_video")}
    keep.update({
        "data": "synthetic",
        "data.root": roots[0],
        **{f"data.synth.{k}": v for k, v in synth.items()},
        "data.num_workers": 0,
        "model.size": "tiny",
        "model.pretrained": "none",
        "train.epochs": EPOCHS,
        "train.batch_size": 4,
        "train.grad_accum_steps": 1,
        "train.num_workers": 1,
        "train.use_gpu": False,
        "eval.num_clips": min(int(keep.get("eval.num_clips", 1)), protocol_clips),
        "eval.batch_size": 4,
        "wandb.mode": "disabled",
    })
    if keep.get("optim.milestones"):
        keep["optim.milestones"] = [1]
    return keep


def shrink_space(raw: Mapping[str, Any], *, roots: Sequence[str], synth: Mapping[str, Any], name: str, output_dir: str,
                 refit: bool | None = None, protocol_clips: int = 2) -> dict[str, Any]:
    """A tiny study (a raw space mapping, as a space file holds it) from a shipped one."""
    sweep = dict(raw.get("sweep") or {})
    params_in = dict(raw.get("params") or {})
    choice_keys = [k for k, spec in params_in.items() if all(a["type"] in ("categorical", "grid") for a in _alternatives(spec))]
    varied = [k for k in choice_keys if any(len(a["values"]) > 1 for a in _alternatives(params_in[k]))]
    table = dict(sweep.get("table") or {})
    group_by = list(sweep.get("group_by") or [])
    if not group_by:  # a space that declares no table: its first choice key, by data set if it varies data sets
        group_by = [next(k for k in choice_keys if k not in DATA_PARAMS)]
        if any(k in DATA_PARAMS for k in params_in):
            group_by.append("data")
            table = {"rows": group_by[:1], "columns": ["data"]}
    two_valued = "data" if "data" in group_by else next((k for k in group_by if k in varied), None)
    candidates = [k for k in varied if k not in group_by and k not in DATA_PARAMS and k != "model.pretrained"]
    # an unconditional one first: a conditional one may not apply to the values the study keeps
    spare = next((k for k in candidates if not isinstance(params_in[k], list) and not params_in[k].get("when")), None)
    spare = spare or next(iter(candidates), None)

    params: dict[str, Any] = {}
    kept: dict[str, list[Any]] = {}  # key -> the values it may take in the tiny study
    if "data" in group_by:
        kept["data.root"] = list(roots[:2] if two_valued == "data" else roots[:1])
        params["data.root"] = {"type": "grid", "values": kept["data.root"]}
    for key, spec in params_in.items():
        if key in DATA_PARAMS or key.startswith("data.") or key == "train.epochs":
            continue  # the data set is the synthetic roots; epochs are the test's
        alternatives = []
        for alt in _alternatives(spec):
            when = {}
            for parent, allowed in (alt.get("when") or {}).items():
                allowed = allowed if isinstance(allowed, list) else [allowed]
                if parent in kept:
                    allowed = [v for v in allowed if v in kept[parent]]
                    if not allowed:
                        break
                    when[parent] = allowed
                # a condition on a dropped (data) parameter: the first alternative stands for it
            else:
                values = _as_grid(alt)
                if key == "model.pretrained":
                    values = ["none"]
                count = 2 if key in (two_valued, spare) else 1
                alternatives.append({"type": "grid", "values": _first_two_distinct(values, count), **({"when": when} if when else {})})
        if not alternatives:
            continue
        if len(alternatives) > 1 and all(a.get("when") for a in alternatives):
            params[key] = alternatives
        else:
            params[key] = {k: v for k, v in alternatives[0].items() if k != "when"} if len(alternatives) > 1 else alternatives[0]
        kept[key] = [v for a in alternatives for v in a["values"]]
    if "data" in group_by and "data" not in kept:
        kept["data"] = kept["data.root"]
    tiny_sweep = {
        **{k: v for k, v in sweep.items() if k in ("group_by", "table", "refit", "objectives", "metric", "mode")},
        "group_by": group_by,
        "table": table,
        "name": name,
        "output_dir": output_dir,
        "searcher": "grid",
        "scheduler": "none",
        "max_concurrent_trials": 2,
        "cpus_per_trial": 1,
        "gpus_per_trial": 0,
        "max_failures": 0,
    }
    if refit is not None:
        tiny_sweep["refit"] = refit
    fixed = _fixed(raw.get("config") or {}, roots, synth, protocol_clips)
    for key in params:
        fixed.pop(key, None)
    return {
        "description": raw.get("description", ""),
        "config": fixed,
        "sweep": tiny_sweep,
        "params": params,
    }
