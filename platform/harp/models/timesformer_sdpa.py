"""TimeSformer's divided space-time attention on ``torch.nn.functional.scaled_dot_product_attention``.

transformers' ``TimesformerSelfAttention`` computes attention eagerly (``softmax(q kᵀ · scale) v``
with the whole probability matrix in memory); its TimeSformer class accepts no other
``attn_implementation``. Both attentions of a divided block (temporal: each patch over its T
frames; spatial: each frame over its patches and the CLS token; Bertasius, Wang, Torresani 2021,
"Is Space-Time Attention All You Need for Video Understanding?") go through that one module, so
replacing it swaps the kernel of both while the rest of the block (its reshapes, layer norms and
residuals) stays transformers' code.

``SdpaTimesformerSelfAttention`` is that module with the same parameters (``qkv`` and the dropout),
so transformers' TimeSformer weights load into it unchanged, and the same math on PyTorch's fused
kernel (flash / memory-efficient attention on a GPU, a fused CPU kernel here). When the caller asks
for the attention probabilities (``output_attentions``: harp explain's attention rollout), it
computes them the eager way, since SDPA never materialises them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.timesformer.modeling_timesformer import TimesformerSelfAttention

ATTENTION_KINDS = ("sdpa", "eager")


class SdpaTimesformerSelfAttention(TimesformerSelfAttention):
    """``TimesformerSelfAttention`` on ``scaled_dot_product_attention`` (same parameters, same math)."""

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False):  # type: ignore[override]
        if output_attentions:
            return super().forward(hidden_states, output_attentions=True)
        batch, tokens, channels = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, self.num_heads, channels // self.num_heads).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)  # each (B, heads, N, head_dim)
        dropout = self.attn_drop.p if self.training else 0.0
        context = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, scale=self.scale)
        return (context.transpose(1, 2).reshape(batch, tokens, channels),)


def set_timesformer_attention(model: nn.Module, kind: str) -> nn.Module:
    """Switch every TimeSformer self-attention in ``model`` to ``kind`` (``sdpa`` or ``eager``) in
    place, keeping its parameters; returns the model."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention kind {kind!r}; choose one of {', '.join(ATTENTION_KINDS)}")
    target = SdpaTimesformerSelfAttention if kind == "sdpa" else TimesformerSelfAttention
    for module in model.modules():
        if isinstance(module, TimesformerSelfAttention) and type(module) is not target:
            module.__class__ = target  # same __init__ and parameters: only forward differs
    return model


__all__ = ["ATTENTION_KINDS", "SdpaTimesformerSelfAttention", "set_timesformer_attention"]
