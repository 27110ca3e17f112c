"""Model zoo: every family of the seed papers behind one registry (``harp.models.registry``).

Input contract for all families: normalised float clips ``(B, C, T, H, W)`` -> logits ``(B, classes)``.
"""
from __future__ import annotations

from harp.models.registry import FAMILIES, build_model, family_names, get_family, resolve

__all__ = ["FAMILIES", "build_model", "family_names", "get_family", "resolve"]
