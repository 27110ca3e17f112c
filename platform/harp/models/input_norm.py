"""Which input normalisation a run's weights want (``harp.models.spec.InputNorm``): from its
pretraining source, and how a weights file says what it wants.

Precedence (``resolve_input_norm``):

1. ``model.input_norm``: a name of ``harp.models.spec.INPUT_NORMS`` or the path of a JSON file as below;
2. what a ``file:`` / ``hf:`` source declares about itself:
   - ``<weights file>.norm.json`` next to a weights file, or ``input_norm.json`` in a weights folder;
   - a safetensors file's metadata: ``input_norm`` (the same JSON as a string), or ``mean`` and
     ``std`` (harp's own exported weights carry these, ``harp.train.checkpoint.weights_metadata``);
   - a Hugging Face folder's ``preprocessor_config.json`` (``image_mean`` / ``image_std`` after a
     1/255 rescale, as the VideoMAE and TimeSformer processors write it);
3. the family's entry for a named source (``FamilySpec.source_norms``), else the family's mean/std.

The JSON: ``{"mean": [.., .., ..], "std": [.., .., ..], "pixel_range": 255, "channels": "bgr"}``, the
three values in the order of ``channels`` (default ``rgb``) and in the units of ``pixel_range`` (1:
pixels in [0, 1], the default; 255: raw pixel values), or ``{"name": "c3d_sports1m"}``. E.g. a
Sports-1M C3D converted from Caffe: ``{"mean": [90, 98, 102], "std": [1, 1, 1], "pixel_range": 255,
"channels": "bgr"}`` (which is ``c3d_sports1m``).

A ``file:`` source that does not exist cannot say what it wants: that is an error naming
``model.input_norm`` (e.g. when evaluating a run elsewhere than where its pretraining file lives),
never a silent fall-back to the family's normalisation.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harp.errors import ConfigError
from harp.models.pretrained import PretrainedError, cached_hub_snapshot
from harp.models.spec import CHANNEL_ORDERS, INPUT_NORMS, FamilySpec, InputNorm

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".norm.json"  # next to a weights file: c3d.pickle -> c3d.pickle.norm.json
FOLDER_FILE = "input_norm.json"  # inside a weights folder
_FORMAT = '{"mean": [3 values], "std": [3 values], "pixel_range": 1 or 255, "channels": "rgb" or "bgr"} or {"name": NAME}'


def _three(raw: Any, key: str, where: str) -> tuple[float, float, float]:
    if isinstance(raw, str):
        raw = json.loads(raw)
    values = list(raw) if isinstance(raw, (list, tuple)) else []
    if len(values) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise PretrainedError(f"{where}: {key} must be 3 numbers, got {raw!r}; expected {_FORMAT}")
    return float(values[0]), float(values[1]), float(values[2])


def parse_norm(raw: Any, where: str) -> InputNorm:
    """An ``InputNorm`` from a declaration (the JSON above, already parsed), RGB order and [0, 1] units."""
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise PretrainedError(f"{where}: an input normalisation is a JSON object, got {type(raw).__name__}; expected {_FORMAT}")
    if "name" in raw:
        return named_norm(str(raw["name"]), where)
    channels = str(raw.get("channels", "rgb")).lower()
    if channels not in CHANNEL_ORDERS:
        raise PretrainedError(f"{where}: channels={raw.get('channels')!r}; choose one of {', '.join(CHANNEL_ORDERS)}")
    scale = raw.get("pixel_range", 1)
    if not isinstance(scale, (int, float)) or scale <= 0:
        raise PretrainedError(f"{where}: pixel_range={scale!r} must be a positive number (1 or 255)")
    mean, std = _three(raw.get("mean"), "mean", where), _three(raw.get("std"), "std", where)
    if min(std) <= 0:
        raise PretrainedError(f"{where}: std must be positive, got {list(std)}")
    if channels == "bgr":  # stored in RGB order
        mean, std = (mean[2], mean[1], mean[0]), (std[2], std[1], std[0])
    rgb_mean = (mean[0] / scale, mean[1] / scale, mean[2] / scale)
    rgb_std = (std[0] / scale, std[1] / scale, std[2] / scale)
    return InputNorm(rgb_mean, rgb_std, channels=channels, name=where)


def named_norm(name: str, where: str = "model.input_norm") -> InputNorm:
    if name not in INPUT_NORMS:
        raise ConfigError(f"{where}: unknown input normalisation {name!r}; choose one of: {', '.join(INPUT_NORMS)} (or a JSON file)")
    return INPUT_NORMS[name]


def read_norm_file(path: str | Path) -> InputNorm:
    """A JSON declaration file (the format above)."""
    path = Path(path).expanduser()
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise PretrainedError(f"cannot read the input normalisation file {path} ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise PretrainedError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}); expected {_FORMAT}") from exc
    return parse_norm(raw, str(path))


def _safetensors_norm(path: Path) -> InputNorm | None:
    """``input_norm`` (or harp's ``mean``/``std``) in a safetensors header; reads the header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception:  # noqa: BLE001 - not a readable safetensors file: it declares nothing (loading reports it)
        return None
    where = f"{path} (safetensors metadata)"
    if "input_norm" in meta:
        raw = meta["input_norm"]
        return parse_norm(json.loads(raw) if raw.strip().startswith("{") else raw, where)
    if "mean" in meta and "std" in meta:
        return parse_norm({"mean": meta["mean"], "std": meta["std"]}, where)
    return None


def _preprocessor_norm(path: Path) -> InputNorm | None:
    """A Hugging Face ``preprocessor_config.json`` that rescales by 1/255 then normalises."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    rescale = raw.get("rescale_factor", 1 / 255) if raw.get("do_rescale", True) else None
    plain = rescale is not None and abs(float(rescale) - 1 / 255) < 1e-9 and not raw.get("offset", False)
    if not (plain and raw.get("do_normalize", True) and "image_mean" in raw and "image_std" in raw):
        log.debug("%s: not a 1/255-rescale + normalise processor; its input normalisation is not read", path)
        return None
    return parse_norm({"mean": raw["image_mean"], "std": raw["image_std"]}, str(path))


def _declared_in_folder(folder: Path) -> InputNorm | None:
    if (folder / FOLDER_FILE).is_file():
        return read_norm_file(folder / FOLDER_FILE)
    if (folder / "preprocessor_config.json").is_file():
        found = _preprocessor_norm(folder / "preprocessor_config.json")
        if found is not None:
            return found
    weights = sorted(folder.glob("*.safetensors"))
    return _safetensors_norm(weights[0]) if len(weights) == 1 else None


def declared_input_norm(source: str) -> InputNorm | None:
    """What a ``file:`` / ``hf:`` source says about its input (None: nothing declared; named
    sources and ``none`` declare through the family's table instead)."""
    if source.startswith("file:"):
        path = Path(source[len("file:"):]).expanduser()
        if path.is_dir():
            return _declared_in_folder(path)
        if not path.is_file():
            raise PretrainedError(
                f"model.pretrained={source!r}: no such file, so its input normalisation is unknown; fix the path, "
                f"or set model.input_norm (one of {', '.join(INPUT_NORMS)}, or a JSON file)"
            )
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if sidecar.is_file():
            return read_norm_file(sidecar)
        with open(path, "rb") as handle:
            head = handle.read(16)
        if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
            return _safetensors_norm(path)
        return None
    if source.startswith("hf:"):
        target = source[len("hf:"):]
        local = Path(target).expanduser()
        folder = local if local.is_dir() else (cached_hub_snapshot(target) if target.count("/") == 1 else None)
        return _declared_in_folder(folder) if folder is not None else None
    return None


def resolve_input_norm(spec: FamilySpec, source: str, override: str = "") -> InputNorm:
    """The normalisation a model of ``spec`` starting from ``source`` is fed with (precedence above)."""
    if override:
        if override in INPUT_NORMS:
            return INPUT_NORMS[override]
        path = Path(override).expanduser()
        if path.suffix == ".json" or path.is_file():
            return read_norm_file(path)
        raise ConfigError(f"model.input_norm={override!r} is neither a name ({', '.join(INPUT_NORMS)}) nor a JSON file")
    declared = declared_input_norm(source)
    if declared is not None:
        log.info("%s declares its input normalisation: mean %s, std %s, %s", source, declared.mean, declared.std, declared.channels)
        return declared
    return spec.source_norm(source)


__all__ = ["FOLDER_FILE", "SIDECAR_SUFFIX", "declared_input_norm", "named_norm", "parse_norm", "read_norm_file", "resolve_input_norm"]
