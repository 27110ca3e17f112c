"""Named data-set presets for the ``data`` config group (``harp ... data=ucf101``).

A preset only fills in what differs from ``DataConfig``'s defaults for that format.
"""
from __future__ import annotations

from harp.config.schema import DataConfig

# The synthetic classes a horizontal flip exchanges: the one copy of this map (the generator in
# harp.data.synthetic records it with the data set, the preset below makes training swap labels).
SYNTHETIC_HFLIP_SWAP: dict[str, str] = {
    "move_left": "move_right",
    "move_right": "move_left",
    "rotate_cw": "rotate_ccw",
    "rotate_ccw": "rotate_cw",
}

DATA_PRESETS: dict[str, DataConfig] = {
    # The embedded demo set: horizontal flip turns "moves left" into "moves right" (and clockwise
    # into anticlockwise), so flipping swaps those labels instead of corrupting them.
    "synthetic": DataConfig(
        format="synthetic",
        root="data/synthetic",
        flip="swap",
        flip_swap=dict(SYNTHETIC_HFLIP_SWAP),
    ),
    "ucf101": DataConfig(format="ucf101", root="data/UCF-101"),
    "hmdb51": DataConfig(format="hmdb51", root="data/hmdb51"),
    # Something-Something-like and Kinetics data can hold direction-dependent labels; Kinetics does not.
    "kinetics": DataConfig(format="kinetics", root="data/kinetics"),
    # Something-Something: labels name directions ("... from left to right"), so never flip unless
    # data.flip=swap with data.flip_swap pairs is given.
    "ssv2": DataConfig(format="manifest", root="data/ssv2", flip="never"),
    "folder": DataConfig(format="folder", root="data/videos"),
    "manifest": DataConfig(format="manifest", root="data/videos"),
}
