"""Our TimeSformer configuration really is divided space-time attention (000/001), checked by hand.

Divided space-time attention (Bertasius et al. 2021), per block, with x the tokens of patch p in
frame t and one CLS token:
  1. temporal: each patch position attends over its own T frames only,
        x'  = x + W_t · MSA_time(LN_t(x))
  2. spatial: each frame attends over its own h·w patches plus the CLS token,
        x'' = x' + MSA_space(LN(x'))   (the CLS token's update is the mean over the T frames)
  3. MLP:  y = x'' + MLP(LN(x''))
The hand computation below is written from this definition (not from transformers' code) with our
own multi-head attention, and must equal the transformers layer our family builds.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harp.config.schema import ModelConfig
from harp.models import build_model, resolve
from harp.models.hf_video import TIMESFORMER, TimesformerClassifier


def _mha(x: torch.Tensor, qkv: torch.nn.Linear, out: torch.nn.Linear, heads: int) -> torch.Tensor:
    """Plain multi-head self-attention over the second-to-last axis of (..., N, D)."""
    *lead, n, d = x.shape
    q, k, v = qkv(x).reshape(*lead, n, 3, heads, d // heads).unbind(-3)  # each (..., N, H, d/H)
    q, k, v = (t.transpose(-3, -2) for t in (q, k, v))  # (..., H, N, d/H)
    weights = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1)
    return out((weights @ v).transpose(-3, -2).reshape(*lead, n, d))


def _divided_block_by_hand(layer, hidden: torch.Tensor, frames: int, patches: int, heads: int) -> torch.Tensor:
    b, _, d = hidden.shape
    cls, tokens = hidden[:, :1], hidden[:, 1:].reshape(b, patches, frames, d)  # token order: patch-major, then time

    # 1. temporal attention: a sequence of T tokens per (sample, patch)
    t_att = layer.temporal_attention
    temporal = _mha(layer.temporal_layernorm(tokens), t_att.attention.qkv, t_att.output.dense, heads)
    tokens = tokens + layer.temporal_dense(temporal)

    # 2. spatial attention: a sequence of CLS + h*w patches per (sample, frame)
    per_frame = torch.cat([cls.expand(b, frames, d).unsqueeze(2), tokens.transpose(1, 2)], dim=2)  # (B, T, 1+P, D)
    s_att = layer.attention
    spatial = _mha(layer.layernorm_before(per_frame), s_att.attention.qkv, s_att.output.dense, heads)
    cls = cls + spatial[:, :, 0].mean(dim=1, keepdim=True)
    tokens = tokens + spatial[:, :, 1:].transpose(1, 2)

    # 3. MLP on every token
    x = torch.cat([cls, tokens.reshape(b, patches * frames, d)], dim=1)
    mlp = layer.output.dense(F.gelu(layer.intermediate.dense(layer.layernorm_after(x))))
    return x + mlp


def _tiny(frames: int = 4, frame_size: int = 32, classes: int = 5) -> TimesformerClassifier:
    torch.manual_seed(0)
    cfg = ModelConfig(family="timesformer", size="tiny", frames=frames, frame_size=frame_size, dropout=0.0)
    return build_model(cfg, classes).eval()


def test_config_is_divided_space_time_vit():
    base = resolve(ModelConfig(family="timesformer", size="base"), 400)
    assert (base.frames, base.frame_size) == (8, 224)  # the paper's 8x224, ViT-B/16
    with torch.device("meta"):
        vit_b = TIMESFORMER.build(base.args).config
    assert (vit_b.patch_size, vit_b.hidden_size, vit_b.num_hidden_layers, vit_b.num_attention_heads) == (16, 768, 12, 12)
    assert vit_b.attention_type == "divided_space_time"
    model = _tiny()
    c = model.config
    assert c.attention_type == "divided_space_time"
    assert (c.num_frames, c.image_size, c.patch_size) == (4, 32, 8)
    # Divided attention has its own temporal attention, norm and projection in every block.
    for layer in model.timesformer.encoder.layer:
        assert layer.attention_type == "divided_space_time"
        assert hasattr(layer, "temporal_attention") and hasattr(layer, "temporal_dense")


def test_block_equals_hand_computed_divided_space_time_attention():
    frames, size, patch = 4, 32, 8
    model = _tiny(frames, size)
    patches = (size // patch) ** 2
    d, heads = model.config.hidden_size, model.config.num_attention_heads
    torch.manual_seed(1)
    hidden = torch.randn(2, 1 + patches * frames, d)
    layer = model.timesformer.encoder.layer[0]
    with torch.no_grad():
        ours = layer(hidden)[0]
        hand = _divided_block_by_hand(layer, hidden, frames, patches, heads)
    torch.testing.assert_close(ours, hand, rtol=1e-5, atol=1e-5)


def test_attention_is_factorised_not_joint():
    """Temporal attention mixes one patch position across time only, in the real layer.

    Perturbing the token of (patch 0, frame 0) changes the layer's temporal-attention output at
    patch 0 in every frame and nowhere else; joint space-time attention would change every token."""
    frames, size = 4, 32
    model = _tiny(frames, size)
    layer = model.timesformer.encoder.layer[0]
    patches, d = (size // 8) ** 2, model.config.hidden_size
    torch.manual_seed(2)
    tokens = torch.randn(1, patches, frames, d)
    bumped = tokens.clone()
    bumped[0, 0, 0] += torch.randn(d)  # not a constant: LayerNorm would remove that
    outputs = []
    handle = layer.temporal_attention.register_forward_hook(lambda module, args, out: outputs.append(out[0]))
    try:
        with torch.no_grad():
            for x in (tokens, bumped):
                layer(torch.cat([torch.zeros(1, 1, d), x.reshape(1, patches * frames, d)], dim=1))
    finally:
        handle.remove()
    assert outputs[0].shape == (patches, frames, d)  # one sequence of T tokens per patch position
    moved = (outputs[0] - outputs[1]).abs().amax(dim=-1) > 1e-6  # (P, T)
    assert moved[0].all() and not moved[1:].any()
    # ... while the spatial attention of the same layer sees sequences of 1 + h*w tokens, one per frame.
    shapes = []
    handle = layer.attention.register_forward_hook(lambda module, args, out: shapes.append(tuple(args[0].shape)))
    try:
        with torch.no_grad():
            layer(torch.cat([torch.zeros(1, 1, d), tokens.reshape(1, patches * frames, d)], dim=1))
    finally:
        handle.remove()
    assert shapes == [(frames, 1 + patches, d)]


def test_whole_model_forward_uses_cls_token_after_final_norm():
    model = _tiny()
    torch.manual_seed(3)
    clips = torch.randn(2, 3, 4, 32, 32)  # harp's (B, C, T, H, W)
    with torch.no_grad():
        logits = model(clips)
        hidden = model.timesformer.embeddings(clips.transpose(1, 2))
        for layer in model.timesformer.encoder.layer:
            hidden = _divided_block_by_hand(layer, hidden, 4, 16, model.config.num_attention_heads)
        expected = model.classifier(model.timesformer.layernorm(hidden)[:, 0])
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
