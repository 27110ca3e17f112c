"""Find a trained model on disk and rebuild it from its weights file alone.

``best/model.safetensors`` carries its own description (``harp.train.checkpoint.ModelCard``:
family, size, options, clip shape, class names, normalisation, the run's config), so loading needs
neither the data set nor the training config::

    from harp.serve import load_model
    model, card = load_model("runs/my-sweep/best")      # card.class_names, card.mean, card.frames ...
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from harp.errors import HarpError
from harp.models import build_model
from harp.train.checkpoint import WEIGHTS, ModelCard, load_weights, read_model_card
from harp.tune.sweep_dir import SWEEP_FILE, SweepPaths

MODEL_HELP = "an export's best/, a study cell's best/<cell>/, a sweep directory, or a .safetensors file"


def resolve_weights(path: str | Path) -> Path:
    """The ``.safetensors`` file that ``path`` means.

    A weights file is itself; a directory holding ``model.safetensors`` (an export's ``best/``, a
    study cell, a training checkpoint) is its file; a sweep directory means its ``best/``; a
    ``best/`` of a study with several cells must name the cell.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise HarpError(f"{path} is not a weights file; pass {MODEL_HELP}")
        return path
    if not path.is_dir():
        raise HarpError(f"{path} does not exist; pass {MODEL_HELP}")
    if (path / WEIGHTS).is_file():
        return path / WEIGHTS
    if (path / SWEEP_FILE).is_file():
        best = SweepPaths(path).best
        if not best.is_dir():
            raise HarpError(f"sweep {path} has no best/ yet; run `harp export {path}` first")
        return resolve_weights(best)
    cells = sorted(child.name for child in path.iterdir() if (child / WEIGHTS).is_file())
    if len(cells) == 1:
        return path / cells[0] / WEIGHTS
    if cells:
        shown = ", ".join(cells[:8]) + (", ..." if len(cells) > 8 else "")
        raise HarpError(f"{path} holds the best models of {len(cells)} study cells ({shown}); pass one of them, e.g. {path / cells[0]}")
    raise HarpError(f"{path} holds no model ({WEIGHTS}); pass {MODEL_HELP}")


def inference_device() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def load_model(path: str | Path, device: str | torch.device | None = None) -> tuple[nn.Module, ModelCard]:
    """The model at ``path`` (see ``resolve_weights``), rebuilt from its file's metadata, with its
    weights loaded, in eval mode on ``device`` (default: a GPU when present), and its card."""
    card = read_model_card(resolve_weights(path))
    model = build_model(card.model_config())
    model.to(torch.device(device) if device is not None else inference_device())
    load_weights(card.path, model)
    model.eval()
    return model, card


__all__ = ["MODEL_HELP", "inference_device", "load_model", "resolve_weights"]
