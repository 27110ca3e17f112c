"""Named data-set presets: ``data=ucf101`` on the command line, or ``data: ucf101`` in a config
file or a search space's ``config:``, picks one (``harp.config.load``; the default is ``synthetic``).

A preset only fills in what differs from ``DataConfig``'s defaults for that format, and sits just
above the schema: a config file, a search space and command-line overrides all override it.
"""
from __future__ import annotations

from harp.config.schema import DataConfig, DataFormat, FlipPolicy
from harp.errors import ConfigError

# The synthetic classes a horizontal flip exchanges: the one copy of this map (the generator in
# harp.data.synthetic records it with the data set, the preset below makes training swap labels).
SYNTHETIC_HFLIP_SWAP: dict[str, str] = {
    "move_left": "move_right",
    "move_right": "move_left",
    "rotate_cw": "rotate_ccw",
    "rotate_ccw": "rotate_cw",
}

# The preset a config gets when nothing names one.
DEFAULT_PRESET = "synthetic"

DATA_PRESETS: dict[str, DataConfig] = {
    # The embedded demo set: horizontal flip turns "moves left" into "moves right" (and clockwise
    # into anticlockwise), so flipping swaps those labels instead of corrupting them.
    "synthetic": DataConfig(
        format=DataFormat.synthetic,
        root="data/synthetic",
        flip=FlipPolicy.swap,
        flip_swap=dict(SYNTHETIC_HFLIP_SWAP),
    ),
    "ucf101": DataConfig(format=DataFormat.ucf101, root="data/UCF-101"),
    "hmdb51": DataConfig(format=DataFormat.hmdb51, root="data/hmdb51"),
    # Something-Something-like and Kinetics data can hold direction-dependent labels; Kinetics does not.
    "kinetics": DataConfig(format=DataFormat.kinetics, root="data/kinetics"),
    # Something-Something: labels name directions ("... from left to right"), so never flip unless
    # data.flip=swap with data.flip_swap pairs is given.
    "ssv2": DataConfig(format=DataFormat.manifest, root="data/ssv2", flip=FlipPolicy.never),
    "folder": DataConfig(format=DataFormat.folder, root="data/videos"),
    "manifest": DataConfig(format=DataFormat.manifest, root="data/videos"),
}


def data_preset(name: str) -> DataConfig:
    """The preset called ``name``; a one-line error listing the presets for an unknown one."""
    if name not in DATA_PRESETS:
        raise ConfigError(f"unknown data preset '{name}'; choose one of: {', '.join(sorted(DATA_PRESETS))}")
    return DATA_PRESETS[name]
