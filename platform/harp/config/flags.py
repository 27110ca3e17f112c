"""The Hydra command-line flags a harp command understands without running a Hydra job.

``--cfg job`` prints the resolved config and exits (what ``harp config`` always does);
``-m/--multirun`` is refused with one line, since harp sweeps with ``harp sweep`` and a search
space. A command wires them in three calls::

    add_hydra_flags(parser)
    args = parser.parse_args(argv)
    refuse_multirun(args)                  # before any work
    cfg = load_config(args.overrides, args.config)
    if show_job_config(args, cfg):         # --cfg job: print and stop
        return 0
"""
from __future__ import annotations

import argparse

from harp.config.load import to_yaml
from harp.config.overrides import MULTIRUN_REFUSED
from harp.config.schema import HarpConfig
from harp.errors import ConfigError


def add_hydra_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--cfg job`` and a (refused) ``-m/--multirun`` to a command's parser."""
    parser.add_argument("--cfg", choices=["job"], help="print the resolved config and exit (as Hydra's --cfg job)")
    parser.add_argument("-m", "--multirun", action="store_true", help="not supported: sweep with `harp sweep`")


def refuse_multirun(args: argparse.Namespace) -> None:
    if getattr(args, "multirun", False):
        raise ConfigError(MULTIRUN_REFUSED)


def show_job_config(args: argparse.Namespace, cfg: HarpConfig) -> bool:
    """Print the resolved config when ``--cfg job`` was given; True when the command should stop."""
    if getattr(args, "cfg", None) != "job":
        return False
    print(to_yaml(cfg), end="")
    return True


__all__ = ["add_hydra_flags", "refuse_multirun", "show_job_config"]
