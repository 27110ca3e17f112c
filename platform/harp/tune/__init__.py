"""Sweeps: search spaces -> Optuna (ask/tell) -> Ray Tune (+ ASHA) -> Ray Train trials -> W&B."""
from __future__ import annotations
