"""Pretraining sources: where a family's starting weights come from, and loading them safely.

A source is one of
- ``none``: the family's own initialisation;
- ``file:PATH``: a safetensors file, a torch state dict (read with ``weights_only=True``, never a
  pickle of arbitrary objects), or a directory holding one (``model.safetensors``, ...);
- ``hf:REPO_OR_DIR``: a Hugging Face model directory (``save_pretrained`` output) or a hub repo id;
- a named source the family declares (``imagenet``, ``kinetics400``, ``kinetics600``, ``ssv2``),
  mapped by ``spec.hub_checkpoints`` to a hub repo id or to an https URL of a torch weights file
  (e.g. torchvision's), cached under ``$TORCH_HOME/hub/checkpoints/<original file name>``;
- a named source harp builds on this machine (``synthetic-src``, ``harp.models.built_sources``),
  cached under ``$TORCH_HOME/hub/checkpoints/harp-<source>/`` by ``harp pretrain``.

Loading never touches the network: a hub source that is not in the local cache fails at once with
how to fetch it (``harp models fetch SOURCE --family F`` on a connected machine, then copy the
cache to ``$HF_HOME`` / ``$TORCH_HOME``, or point ``hf:``/``file:`` at a local copy); a built
source that is not there fails with how to build it (``harp pretrain``).

Matching (``load_pretrained``): ``spec.convert_state_dict`` first (e.g. 2D -> 3D inflation,
position-embedding resizing); weights whose first layer reads BGR (``input_channels="bgr"``, from
the source's input normalisation, ``harp.models.input_norm``) get that layer's colour axis
reversed, so the model takes RGB like every other; then every checkpoint tensor is matched by
name and shape. The classification head (``spec.head_prefixes``) is replaced when the class count differs (it keeps
its fresh initialisation); other missing, unexpected or mis-shaped tensors are reported in one
readable summary; a load that matched less than ``min_fraction`` of the model's non-head weights is
refused before anything is copied.

Why it is long: finding, reading, converting and matching a source are one sequence that every
family goes through, each step used only by the next; split, none of the parts would stand alone.
"""
from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from harp.errors import HarpError
from harp.models.built_sources import architecture_key, build_hint, built_source_file, is_built_source
from harp.models.spec import FamilySpec

logger = logging.getLogger(__name__)

# Files of a hub repo that loading needs (config + weights in either format, sharded or not).
HF_WEIGHT_PATTERNS = (
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module")
_STRIP_PREFIXES = ("module.", "_orig_mod.")


class PretrainedError(HarpError):
    """A pretraining source cannot be found, read, or matched to the model."""


# ----------------------------------------------------------------------------- where things live


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def torch_checkpoint_dir() -> Path:
    """Where torch.hub caches weight files: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def url_cache_path(url: str) -> Path:
    """The cached copy of a weights URL: its original file name under torch_checkpoint_dir()."""
    return torch_checkpoint_dir() / os.path.basename(urlparse(url).path)


def is_url(target: str) -> bool:
    return target.startswith(("https://", "http://"))


def _not_available(spec: FamilySpec, source: str) -> PretrainedError:
    return PretrainedError(
        f"model.pretrained={source!r} is not available for {spec.name}; choose one of: {', '.join(spec.all_sources())}"
    )


def hub_target(spec: FamilySpec, source: str, model: nn.Module | None = None) -> str:
    """The hub repo id or URL behind a named source of a family (for ``model``: the checkpoint that
    fits its options, e.g. the ImageNet ResNet-152 for a depth-152 backbone, when the family says)."""
    if source not in spec.pretrained_sources:
        raise _not_available(spec, source)
    if is_built_source(source):
        raise PretrainedError(f"{source} is built on this machine, not downloaded: {build_hint(source, spec.name)}")
    chosen = spec.checkpoint_for(source, model) if (model is not None and spec.checkpoint_for is not None) else None
    target = chosen or spec.hub_checkpoints.get(source)
    if not target:
        raise PretrainedError(
            f"{spec.name} declares source {source!r} but no checkpoint location for it; use file:PATH or hf:REPO_OR_DIR"
        )
    return target


def built_source_path(spec: FamilySpec, source: str, model: nn.Module | None, *, must_exist: bool = True) -> Path:
    """The cached weights of a built source (``harp.models.built_sources``) for ``model``'s architecture;
    with ``must_exist``, a missing file is one line saying how to build it."""
    if model is None:
        raise PretrainedError(f"{source} is stored per architecture: load it into a built {spec.name} model")
    path = built_source_file(source, spec.name, architecture_key(model, tuple(spec.head_prefixes)), torch_checkpoint_dir())
    if must_exist and not path.is_file():
        raise PretrainedError(
            f"{spec.name} {source} weights for this architecture are not in the local cache ({path}): {build_hint(source, spec.name)}"
        )
    return path


def _fetch_hint(spec: FamilySpec, source: str, target: str) -> str:
    if is_url(target):
        where = f"copy the file to {url_cache_path(target)} (the cache under $TORCH_HOME/hub/checkpoints), or use file:PATH"
    else:
        where = (
            f"copy the cache ($HF_HOME/hub, here {hf_cache_dir()}) to this machine, "
            f"or use hf:/path/to/a/local/copy of {target} (e.g. from `huggingface-cli download {target} --local-dir DIR`)"
        )
    return f"on a machine with network run `harp models fetch {source} --family {spec.name}`, then {where}"


# ----------------------------------------------------------------------------- reading a source


def _unwrap(obj: object, path: str) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a loaded object: a state dict, or a training checkpoint holding one."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                return _unwrap(inner, path)
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise PretrainedError(f"{path} holds no state dict (no name -> tensor mapping found)")


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes every key carries (DDP's ``module.``, torch.compile's ``_orig_mod.``)."""
    for prefix in _STRIP_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a torch file, loaded with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"no weights file at {path}")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # a corrupt or truncated file
            raise PretrainedError(f"cannot read safetensors file {path}: {exc}") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PretrainedError(
            f"cannot read {path} as a torch state dict with weights_only=True (harp never unpickles arbitrary "
            f"objects): {first}"
        ) from exc
    return _unwrap(obj, str(path))


def _read_sharded(index: Path) -> dict[str, torch.Tensor]:
    import json

    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(read_weights_file(index.parent / shard))
    return state


def _read_hf_model_dir(path: Path, model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Load a transformers checkpoint directory with the model's own class (its key renames included).

    Returns the state dict restricted to what the checkpoint really held (transformers initialises the
    rest randomly) and the checkpoint keys the class did not use."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        loaded, info = type(model).from_pretrained(str(path), local_files_only=True, output_loading_info=True)
    except Exception as exc:
        raise PretrainedError(f"cannot load the transformers checkpoint in {path} as {type(model).__name__}: {exc}") from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    absent = set(info.get("missing_keys", ())) | {entry[0] for entry in info.get("mismatched_keys", ())}
    state = {k: v for k, v in loaded.state_dict().items() if k not in absent}
    return state, sorted(info.get("unexpected_keys", ()))


def read_weights_dir(path: str | os.PathLike, model: nn.Module | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A state dict from a directory: a transformers model dir, or a dir with one weights file."""
    path = Path(path)
    from transformers import PreTrainedModel

    if (path / "config.json").is_file() and isinstance(model, PreTrainedModel):
        return _read_hf_model_dir(path, model)
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return read_weights_file(path / name), []
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            return _read_sharded(path / index), []
    candidates = sorted(p for ext in ("*.safetensors", "*.pth", "*.pt", "*.bin") for p in path.glob(ext))
    if len(candidates) == 1:
        return read_weights_file(candidates[0]), []
    found = ", ".join(p.name for p in candidates) or "no weights files"
    raise PretrainedError(f"{path}: expected model.safetensors (or one weights file); found {found}")


def cached_hub_snapshot(repo_id: str) -> Path | None:
    """The local snapshot directory of a hub repo, or None when it is not in the cache. No network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(
            snapshot_download(repo_id, cache_dir=str(hf_cache_dir()), local_files_only=True, allow_patterns=list(HF_WEIGHT_PATTERNS))
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    has_weights = any(snapshot.glob("*.safetensors")) or any(snapshot.glob("*.bin")) or any(snapshot.glob("*.pth"))
    return snapshot if has_weights else None


def read_source(source: str, spec: FamilySpec, model: nn.Module | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The raw state dict a source names (before conversion and matching), plus keys already known unused."""
    if source.startswith("file:"):
        path = Path(source[len("file:"):]).expanduser()
        if path.is_dir():
            return read_weights_dir(path, model)
        if not path.exists():
            raise PretrainedError(f"model.pretrained={source!r}: no such file or directory")
        return read_weights_file(path), []
    if source.startswith("hf:"):
        target = source[len("hf:"):]
        local = Path(target).expanduser()
        if local.is_dir():
            return read_weights_dir(local, model)
        if target.startswith((".", "/", "~")) or target.count("/") != 1:
            raise PretrainedError(f"model.pretrained={source!r}: no such directory, and not a hub repo id (owner/name)")
        snapshot = cached_hub_snapshot(target)
        if snapshot is None:
            raise PretrainedError(
                f"{target} is not in the local Hugging Face cache ({hf_cache_dir()}) and harp does not download while "
                f"loading: on a machine with network run `harp models fetch hf:{target}` (or `huggingface-cli download "
                f"{target}`), then copy the cache to $HF_HOME here, or use hf:/path/to/a/local/copy"
            )
        return read_weights_dir(snapshot, model)
    if is_built_source(source) and source in spec.pretrained_sources:
        return read_weights_file(built_source_path(spec, source, model)), []
    target = hub_target(spec, source, model)
    if is_url(target):
        cached = url_cache_path(target)
        if not cached.is_file():
            raise PretrainedError(f"{spec.name} {source} weights ({cached.name}) are not in the local cache: {_fetch_hint(spec, source, target)}")
        return read_weights_file(cached), []
    snapshot = cached_hub_snapshot(target)
    if snapshot is None:
        raise PretrainedError(
            f"{spec.name} {source} weights ({target}) are not in the local Hugging Face cache {hf_cache_dir()}: "
            f"{_fetch_hint(spec, source, target)}"
        )
    return read_weights_dir(snapshot, model)


# ----------------------------------------------------------------------------- matching


def _groups(keys: list[str], depth: int = 2, limit: int = 6) -> str:
    """Keys summarised by their leading components: 'decoder.layers.* (48), fc_norm.weight'."""
    counts = Counter(".".join(k.split(".")[:depth]) for k in keys)
    parts = []
    for prefix, count in counts.most_common():
        full = [k for k in keys if k.startswith(prefix)]
        parts.append(full[0] if count == 1 and full[0] == prefix else f"{prefix}.* ({count})" if count > 1 else full[0])
    shown = ", ".join(parts[:limit])
    return shown + (f", ... ({len(parts) - limit} more groups)" if len(parts) > limit else "")


def _shape(shape: torch.Size) -> str:
    return "x".join(map(str, shape)) or "scalar"


@dataclass
class LoadReport:
    """What a load did: which tensors came from the checkpoint and which did not, and why."""

    source: str
    family: str
    loaded: list[str] = field(default_factory=list)
    head_replaced: list[tuple[str, torch.Size, torch.Size]] = field(default_factory=list)  # name, ckpt, model
    head_missing: list[str] = field(default_factory=list)  # head tensors the checkpoint does not have
    missing: list[str] = field(default_factory=list)  # non-head model tensors the checkpoint does not have
    unexpected: list[str] = field(default_factory=list)  # checkpoint tensors the model does not have
    mismatched: list[tuple[str, torch.Size, torch.Size]] = field(default_factory=list)  # non-head, ckpt vs model shape
    matched_fraction: float = 0.0  # of the model's non-head weights (by element count)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        total = len(self.loaded) + len(self.missing) + len(self.mismatched) + len(self.head_replaced) + len(self.head_missing)
        lines = [
            f"{self.family} <- {self.source}: loaded {len(self.loaded)}/{total} tensors "
            f"({self.matched_fraction:.1%} of the non-head weights)"
        ]
        if self.head_replaced:
            changes = ", ".join(f"{k} {_shape(a)} -> {_shape(b)}" for k, a, b in self.head_replaced)
            lines.append(f"  head replaced for the new class count (fresh init): {changes}")
        if self.head_missing:
            lines.append(f"  head not in the checkpoint (fresh init): {_groups(self.head_missing)}")
        if self.missing:
            lines.append(f"  missing from the checkpoint ({len(self.missing)}, fresh init): {_groups(self.missing)}")
        if self.mismatched:
            shown = ", ".join(f"{k} {_shape(a)} vs {_shape(b)}" for k, a, b in self.mismatched[:4])
            more = f", ... ({len(self.mismatched) - 4} more)" if len(self.mismatched) > 4 else ""
            lines.append(f"  shape mismatch, kept fresh ({len(self.mismatched)}; checkpoint vs model): {shown}{more}")
        if self.unexpected:
            lines.append(f"  unused checkpoint tensors ({len(self.unexpected)}): {_groups(self.unexpected)}")
        return "\n".join(lines)


def match_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], head_prefixes: tuple[str, ...], source: str = "", family: str = ""
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Which checkpoint tensors go where: (tensors to load, report). Nothing is copied here."""
    own = model.state_dict()
    report = LoadReport(source=source, family=family)
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = own.get(key)
        if target is None:
            report.unexpected.append(key)
        elif target.shape != value.shape:
            entry = (key, value.shape, target.shape)
            (report.head_replaced if key.startswith(head_prefixes) else report.mismatched).append(entry)
        else:
            to_load[key] = value
            report.loaded.append(key)
    seen = set(to_load) | {k for k, _, _ in report.head_replaced} | {k for k, _, _ in report.mismatched}
    for key in own:
        if key not in seen:
            (report.head_missing if key.startswith(head_prefixes) else report.missing).append(key)
    body = [k for k in own if not k.startswith(head_prefixes)]
    total = sum(own[k].numel() for k in body)
    report.matched_fraction = sum(own[k].numel() for k in body if k in to_load) / total if total else 1.0
    return to_load, report


def first_input_layer(model: nn.Module) -> str:
    """The name of the first weight that reads the 3 colour channels (conv1, a patch embedding)."""
    for key, tensor in model.state_dict().items():
        if key.endswith("weight") and tensor.ndim >= 4 and tensor.shape[1] == 3:
            return key
    raise PretrainedError(f"{type(model).__name__} has no layer reading 3 colour channels to convert from BGR")


def bgr_to_rgb(state: dict[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """Weights trained on BGR input, made to read RGB: the first layer's input channels reversed
    (``w'[:, c] = w[:, 2 - c]``, so ``conv(rgb, w') == conv(bgr, w)``)."""
    key = first_input_layer(model)
    if key not in state:
        raise PretrainedError(f"{source} is declared BGR but holds no {key} (the model's first layer) to convert")
    return {**state, key: state[key].flip(1)}


def load_pretrained(
    model: nn.Module,
    spec: FamilySpec,
    source: str,
    *,
    min_fraction: float = 0.5,
    state: Mapping[str, torch.Tensor] | None = None,
    input_channels: str = "rgb",
) -> LoadReport | None:
    """Load a pretraining source into a built model; returns the report (None for ``none``).

    ``state`` skips reading (a state dict already in memory, e.g. for tests). ``input_channels``:
    the colour order the weights were trained on (``bgr`` reverses the first layer's input channels).
    Raises PretrainedError (one line) when the source is unavailable or matched less than
    ``min_fraction`` of the model's non-head weights; the model is untouched in that case.
    """
    if source == "none":
        return None
    if not spec.accepts(source):
        raise _not_available(spec, source)
    unused: list[str] = []
    if state is None:
        state, unused = read_source(source, spec, model)
    state = _strip_prefixes(dict(state))
    if spec.convert_state_dict is not None:
        state = spec.convert_state_dict(state, source, model)
    if input_channels == "bgr":
        state = bgr_to_rgb(state, model, source)
        logger.info("%s: weights trained on BGR input; %s now reads RGB", source, first_input_layer(model))
    to_load, report = match_state_dict(model, state, tuple(spec.head_prefixes), source, spec.name)
    report.unexpected.extend(k for k in unused if k not in report.unexpected)
    if report.matched_fraction < min_fraction:
        model_keys = [k for k in model.state_dict() if not k.startswith(tuple(spec.head_prefixes))]
        raise PretrainedError(
            f"refusing to load {source} into {spec.name}: it matched only {report.matched_fraction:.1%} of the model's "
            f"weights ({len(report.loaded)} tensors; {len(report.mismatched)} with other shapes, {len(report.unexpected)} "
            f"unknown). Checkpoint keys look like {', '.join(list(state)[:3]) or 'nothing'}; the model's like "
            f"{', '.join(model_keys[:3])}. Is it a checkpoint of this family and size (the published ones are model.size=base)?"
        )
    result = model.load_state_dict(to_load, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # match_state_dict only keeps the model's own keys
    announce(report)
    return report


def announce(report: LoadReport) -> None:
    """Say what a load did, never silently: to the log when it shows the level (``harp train``),
    else to stderr (a Ray Tune trial configures no logging; Tune keeps the trial's stderr in its
    directory and W&B as the run's console, so every trial records which tensors it loaded)."""
    level = logging.INFO if report.clean else logging.WARNING
    if logger.isEnabledFor(level) and logger.hasHandlers():
        logger.log(level, "%s", report.summary())
    else:
        print(report.summary(), file=sys.stderr, flush=True)
