"""Use a trained model: predict the actions in videos, explain what the model looked at, serve it.

- ``model_loading``: find a model (an export's ``best/``, a study cell's ``best/<cell>/``, a sweep
  directory, or a ``.safetensors`` file) and rebuild it from the file's own metadata:
  ``model, card = load_model("runs/my-sweep/best")``;
- ``predict``: a video -> the model's clips (its own sampling and multi-view protocol) -> top-k;
- ``explain``: Grad-CAM (CNN families) or attention rollout (transformer families) over the
  sampled frames; ``strip`` draws them as a PNG strip;
- ``app`` and ``server``: an HTTP service on Ray Serve (upload page and ``POST /predict``).

Layer: above ``harp.tune`` (a sweep directory is read through ``harp.tune.sweep_dir``), beside
``harp.export``; only ``harp.commands`` imports it.
"""
from __future__ import annotations

from harp.serve.model_loading import load_model, resolve_weights

__all__ = ["load_model", "resolve_weights"]
