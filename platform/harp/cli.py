"""The ``harp`` entry point: a thin dispatcher to one module per command.

Each command module exposes ``main(argv: list[str]) -> int`` with its own argparse ``--help``;
modules are imported only for the command that runs, so ``harp --help`` is instant. Every
``HarpError`` becomes one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from harp.errors import HarpError

# command -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("harp.commands.data", "synthesise, index, prepare and inspect video data sets"),
    "models": ("harp.commands.models", "list model families (params, GFLOPs, sources); fetch weights"),
    "pretrain": ("harp.commands.pretrain", "build a pretraining source here (synthetic-src) into the weights cache"),
    "config": ("harp.commands.config", "print the resolved config or the list of valid keys"),
    "train": ("harp.commands.train", "train one configuration (Ray Train; `--config best/config.yaml`)"),
    "sweep": ("harp.commands.sweep", "run a hyperparameter sweep (Ray Tune + Optuna + ASHA + W&B)"),
    "evaluate": ("harp.commands.evaluate", "evaluate a checkpoint on the test split (multi-clip x multi-crop)"),
    "export": ("harp.commands.export", "export a sweep's best config, weights, metrics and trials table"),
    "report": ("harp.commands.report", "one HTML page (and PNG figures) for a sweep: running, finished or failed"),
    "status": ("harp.commands.status", "a running or finished sweep in the terminal (--watch to follow it)"),
    "clean": ("harp.commands.clean", "remove a finished sweep's checkpoints except each trial's best"),
    "submit": ("harp.commands.submit", "run a sweep on a Ray cluster as a Ray Job (jobs/*.yaml)"),
    "jobs": ("harp.commands.jobs", "list, follow and stop the sweeps submitted to a Ray cluster"),
    "predict": ("harp.commands.predict", "top-5 actions in videos with a trained model (best/, a study cell, a sweep)"),
    "explain": ("harp.commands.explain", "where the model looked: Grad-CAM / attention rollout over the sampled frames, as a PNG"),
    "serve": ("harp.commands.serve", "an HTTP service for a trained model on Ray Serve (upload page + POST /predict)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: harp COMMAND [options] [key=value ...]",
        "",
        "Distributed hyperparameter search for human action recognition in video.",
        "Configuration uses Hydra overrides, e.g. `harp data index data=ucf101 data.root=/data/UCF-101`.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `harp COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from harp import __version__

        print(f"harp {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"harp: error: unknown command '{command}'; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, _ = COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
        return int(module.main(rest) or 0)
    except HarpError as exc:
        print(f"harp {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"harp {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
