"""Where the model looked: a heat map over every sampled frame of a clip.

- CNN families (3D, and 2D + temporal modelling): Grad-CAM (Selvaraju et al. 2017, "Grad-CAM:
  Visual Explanations from Deep Networks via Gradient-based Localization") on the layer the family
  declares (``FamilySpec.explain_layers``, deepest first: the deepest whose map is at least
  ``MIN_MAP_SIDE`` wide, since a tiny model's last stage can be 1x1). A 3D layer's map is
  ``(C, t, h, w)``; a 2D family's is ``(B*t, C, h, w)``, read as ``t`` maps of one clip. The channel
  weights are the gradients averaged over time and space, so the map is one spatio-temporal volume.
- Transformer families: attention rollout (Abnar and Zuidema 2020, "Quantifying Attention Flow in
  Transformers"): per block the heads' mean attention plus the residual identity, rows
  renormalised, multiplied through the blocks; the relevance of each patch token is the pooled
  output's row (the CLS token for TimeSformer and ViViT, the mean over tokens for VideoMAE's mean
  pooling). TimeSformer's divided attention is two steps per block: temporal attention among the T
  tokens of one patch, then spatial attention among the patches of one frame (plus the CLS token,
  whose update is averaged over the frames), composed as such, so rollout follows the real path.

Every map is upsampled to the clip's ``(T, S, S)`` and scaled to [0, 1].
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harp.data.transforms import to_model_input
from harp.errors import HarpError
from harp.models import get_family
from harp.models.timesformer_sdpa import SdpaTimesformerSelfAttention, set_timesformer_attention
from harp.train.checkpoint import ModelCard

MIN_MAP_SIDE = 4  # the narrowest feature map Grad-CAM can still place heat on
_EAGER_SWITCH = threading.Lock()  # rollout switches a transformer to eager attention for one pass


@dataclasses.dataclass
class Heatmap:
    """Heat in [0, 1] per pixel of each sampled frame, for class ``target``, and how it was made."""

    heat: np.ndarray  # float32 (T, S, S)
    target: int
    method: str  # e.g. "Grad-CAM on layer2", "attention rollout (divided space-time)"


def explain_clip(model: nn.Module, card: ModelCard, clip: torch.Tensor, target: int | None = None) -> Heatmap:
    """The heat map of one uint8 clip ``(T, S, S, C)`` for class ``target`` (default: the clip's top class)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = to_model_input(clip[None].to(device), card.mean, card.std)
    layers = get_family(card.family).explain_layers
    if layers:
        heat, target, layer = grad_cam(model, x, layers, target)
        return Heatmap(heat, target, f"Grad-CAM on {layer}")
    if not hasattr(model, "config") or not hasattr(model, "base_model_prefix"):
        raise HarpError(f"family {card.family} declares no explain_layers and has no attention maps; it cannot be explained")
    heat, target, kind = attention_rollout(model, x, target)
    return Heatmap(heat, target, f"attention rollout ({kind})")


# ------------------------------------------------------------------------------------------
# Grad-CAM
# ------------------------------------------------------------------------------------------
def _as_volume(maps: torch.Tensor, batch: int) -> torch.Tensor:
    """A layer's output as ``(B, C, t, h, w)``: 3D layers as they are, 2D ones ``(B*t, C, h, w)`` regrouped."""
    if maps.dim() == 5:
        return maps
    if maps.dim() == 4 and maps.shape[0] % batch == 0:
        b_t, c, h, w = maps.shape
        return maps.view(batch, b_t // batch, c, h, w).transpose(1, 2)
    raise HarpError(f"cannot read a feature map of shape {tuple(maps.shape)} as frames of a clip")


def _pick_layer(maps: dict[str, torch.Tensor], layers: Sequence[str], batch: int) -> str:
    """The deepest listed layer with a map at least MIN_MAP_SIDE wide, else the widest."""
    sides = {name: min(_as_volume(maps[name], batch).shape[-2:]) for name in layers}
    for name in layers:
        if sides[name] >= MIN_MAP_SIDE:
            return name
    return max(layers, key=lambda name: sides[name])


def grad_cam(model: nn.Module, x: torch.Tensor, layers: Sequence[str], target: int | None = None) -> tuple[np.ndarray, int, str]:
    """Grad-CAM of the normalised clip ``x`` (1, C, T, H, W): (heat (T, H, W), target class, layer used)."""
    maps: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            maps[name] = output

        return hook

    try:
        handles = [model.get_submodule(name).register_forward_hook(keep(name)) for name in layers]
    except AttributeError as exc:
        raise HarpError(f"explain layer not found in the model: {exc}") from exc
    # cuDNN's RNN backward (LRCN's LSTM) refuses eval mode; the plain kernels do not.
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        try:
            logits = model(x.detach().requires_grad_(True))
        finally:
            for handle in handles:
                handle.remove()
        target = int(logits[0].argmax()) if target is None else int(target)
        name = _pick_layer(maps, layers, x.shape[0])
        (grads,) = torch.autograd.grad(logits[0, target], maps[name])
    acts, grads = _as_volume(maps[name].detach(), 1).float(), _as_volume(grads, 1).float()
    weights = grads.mean(dim=(2, 3, 4), keepdim=True)
    cam = F.relu((weights * acts).sum(dim=1, keepdim=True))  # (1, 1, t, h, w)
    return _upsample(cam, x.shape[2:]), target, name


# ------------------------------------------------------------------------------------------
# attention rollout
# ------------------------------------------------------------------------------------------
def _with_residual(attention: torch.Tensor) -> torch.Tensor:
    """0.5 A + 0.5 I, rows renormalised: the residual path's share of each block (Abnar and Zuidema)."""
    eye = torch.eye(attention.shape[-1], dtype=attention.dtype, device=attention.device)
    mixed = 0.5 * attention + 0.5 * eye
    return mixed / mixed.sum(dim=-1, keepdim=True)


def attention_rollout(model: nn.Module, x: torch.Tensor, target: int | None = None) -> tuple[np.ndarray, int, str]:
    """Rollout of the normalised clip ``x`` (1, C, T, H, W): (heat (T, H, W), the clip's top class or
    ``target``, which attention). Rollout itself is class-agnostic: ``target`` is only reported."""
    config: Any = model.config
    if getattr(config, "attention_type", None) == "divided_space_time":
        relevance, logits = _divided_rollout(model, x)
        kind = "divided space-time"
    else:
        relevance, logits = _joint_rollout(model, x)
        kind = "joint space-time"
    chosen = int(logits[0].argmax()) if target is None else int(target)
    return _upsample(relevance[None, None], x.shape[2:]), chosen, kind


def _divided_rollout(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TimeSformer: tokens are CLS + (patch p, frame t) at ``1 + p*T + t`` (its own layout). The
    attention probabilities are the inputs of each attention's dropout (the identity in eval mode)."""
    config: Any = model.config
    backbone: Any = getattr(model, str(model.base_model_prefix))
    temporal: list[torch.Tensor] = []
    spatial: list[torch.Tensor] = []
    handles = []
    for layer in backbone.encoder.layer:
        handles.append(layer.temporal_attention.attention.attn_drop.register_forward_hook(lambda m, i, o: temporal.append(o.detach())))
        handles.append(layer.attention.attention.attn_drop.register_forward_hook(lambda m, i, o: spatial.append(o.detach())))
    with _EAGER_SWITCH:  # SDPA never materialises the probabilities: one pass on eager attention
        was_sdpa = any(isinstance(m, SdpaTimesformerSelfAttention) for m in model.modules())
        set_timesformer_attention(model, "eager")
        try:
            with torch.inference_mode():
                logits = model(x)
        finally:
            for handle in handles:
                handle.remove()
            if was_sdpa:
                set_timesformer_attention(model, "sdpa")
    frames = int(config.num_frames)
    side = int(config.image_size) // int(config.patch_size)
    patches = side * side
    n = 1 + patches * frames
    index = 1 + torch.arange(patches)[:, None] * frames + torch.arange(frames)[None, :]  # (P, T) token of (p, t)
    rollout = torch.eye(n, dtype=torch.float64)
    for t_att, s_att in zip(temporal, spatial):
        a_t = t_att.double().mean(dim=1)  # (P, T, T): each patch's frames attend each other
        a_s = s_att.double().mean(dim=1)  # (T, 1+P, 1+P): each frame's CLS + patches
        temporal_step = torch.eye(n, dtype=torch.float64)
        temporal_step[index[:, :, None], index[:, None, :]] = a_t
        spatial_step = torch.zeros(n, n, dtype=torch.float64)
        per_frame = index.T  # (T, P)
        spatial_step[per_frame[:, :, None], per_frame[:, None, :]] = a_s[:, 1:, 1:]
        spatial_step[per_frame, 0] = a_s[:, 1:, 0]
        spatial_step[0, 0] = a_s[:, 0, 0].mean()
        spatial_step[0, per_frame] = a_s[:, 0, 1:] / frames  # CLS: its update is averaged over the frames
        rollout = _with_residual(spatial_step) @ _with_residual(temporal_step) @ rollout
    relevance = rollout[0, 1:].view(side, side, frames).permute(2, 0, 1)  # (T, h, w)
    return relevance.float(), logits


def _joint_rollout(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ViViT / VideoMAE: one attention over all tubelet tokens (``(t, h, w)`` order, after a CLS
    token when the model has one), read from the backbone's ``output_attentions`` in eager mode."""
    config: Any = model.config
    backbone: Any = getattr(model, str(model.base_model_prefix))
    tubelet = config.tubelet_size[0] if isinstance(config.tubelet_size, (list, tuple)) else int(config.tubelet_size)
    patch = config.tubelet_size[1] if isinstance(config.tubelet_size, (list, tuple)) else int(config.patch_size)
    grid = (int(config.num_frames) // int(tubelet), int(config.image_size) // int(patch), int(config.image_size) // int(patch))
    with _EAGER_SWITCH:
        previous = config._attn_implementation
        backbone.set_attn_implementation("eager")
        try:
            with torch.inference_mode():
                logits = model(x)
                attentions = backbone(pixel_values=x.transpose(1, 2), output_attentions=True).attentions
        finally:
            backbone.set_attn_implementation(previous)
    if not attentions or attentions[0] is None:
        raise HarpError(f"{type(model).__name__} returned no attention maps; it cannot be explained by rollout")
    n = attentions[0].shape[-1]
    rollout = torch.eye(n, dtype=torch.float64)
    for attention in attentions:
        rollout = _with_residual(attention[0].double().mean(dim=0)) @ rollout
    tokens = grid[0] * grid[1] * grid[2]
    if n == tokens + 1:
        relevance = rollout[0, 1:]  # the CLS token's row
    elif n == tokens:
        relevance = rollout.mean(dim=0)  # mean pooling: every token's row counts alike
    else:
        raise HarpError(f"{n} attention tokens do not match a {grid[0]}x{grid[1]}x{grid[2]} tubelet grid")
    return relevance.view(*grid).float(), logits


def _upsample(volume: torch.Tensor, size: Sequence[int]) -> np.ndarray:
    """(1, 1, t, h, w) -> float32 (T, H, W) in [0, 1] (trilinear; a flat map stays all zeros)."""
    up = F.interpolate(volume.float(), size=tuple(int(s) for s in size), mode="trilinear", align_corners=False)[0, 0]
    up = up - up.min()
    top = float(up.max())
    return (up / top if top > 0 else up).cpu().numpy().astype(np.float32)


__all__ = ["Heatmap", "MIN_MAP_SIDE", "attention_rollout", "explain_clip", "grad_cam"]
