"""``harp config``: show what a set of overrides resolves to, or every valid key."""
from __future__ import annotations

import argparse

from harp.config.flags import add_hydra_flags, refuse_multirun
from harp.config.load import all_keys, load_config, to_yaml


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harp config", description=__doc__)
    parser.add_argument("--config", help="a YAML config file (e.g. an exported best/config.yaml)")
    parser.add_argument("--keys", action="store_true", help="list every valid dotted key")
    add_hydra_flags(parser)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.family=tsm optim.lr=0.01 ~optim.lr +model.options.k=v")
    args = parser.parse_args(argv)
    refuse_multirun(args)
    if args.keys:
        print("\n".join(all_keys()))
        return 0
    cfg = load_config(args.overrides, args.config)
    # The registry owns the family names (the config layer does not import the models); it pulls
    # in torch, which `--keys` and `--help` do without.
    from harp.models.registry import check_family

    check_family(cfg.model.family)
    print(to_yaml(cfg), end="")  # with or without --cfg job: printing the job's config is this command's job
    return 0
