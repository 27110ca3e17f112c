"""The structured config: the schema (enums for every enumerated key), data presets, layering
with OmegaConf and Hydra's override grammar, one-line errors, plain-data and YAML round trips."""
from __future__ import annotations

from harp.config.load import all_keys, from_dict, load_config, to_dict, to_yaml
from harp.config.schema import HarpConfig

__all__ = ["HarpConfig", "all_keys", "from_dict", "load_config", "to_dict", "to_yaml"]
