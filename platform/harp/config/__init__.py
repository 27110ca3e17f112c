"""Structured configs (Hydra ConfigStore), validation with clear errors, YAML round trips."""
from __future__ import annotations

from harp.config.load import all_keys, from_dict, load_config, to_dict, to_yaml
from harp.config.schema import HarpConfig

__all__ = ["HarpConfig", "all_keys", "from_dict", "load_config", "to_dict", "to_yaml"]
