"""``harp config``: show what a set of overrides resolves to, or every valid key."""
from __future__ import annotations

import argparse

from harp.config.load import all_keys, load_config, to_yaml


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harp config", description=__doc__)
    parser.add_argument("--config", help="a YAML config file (e.g. an exported best/config.yaml)")
    parser.add_argument("--keys", action="store_true", help="list every valid dotted key")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.family=tsm optim.lr=0.01")
    args = parser.parse_args(argv)
    if args.keys:
        print("\n".join(all_keys()))
        return 0
    print(to_yaml(load_config(args.overrides, args.config)), end="")
    return 0
