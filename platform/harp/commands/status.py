"""``harp status SWEEP_DIR [--watch [SECONDS]]``: a running or finished sweep in the terminal.

Trials by state (COMPLETE / PRUNED / FAIL as Optuna recorded them, RUNNING / PENDING from Tune),
the best so far with its parameters, epochs spent against the budget, an ETA, and each failure's
first error line. It reads the sweep directory only: run it from another shell, or from another
machine on the same shared storage, while the sweep runs.

Examples:
  harp status runs/default-20261122-021500
  harp status runs/my-sweep --watch          # refresh every 5 s until the sweep ends (Ctrl-C to stop)
"""
from __future__ import annotations

import argparse
import logging
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harp status", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="the sweep directory `harp sweep` printed (runs/<name>)")
    parser.add_argument("--watch", nargs="?", type=float, const=5.0, default=None, metavar="SECONDS",
                        help="refresh every SECONDS (default 5) until the sweep is no longer running")
    args = parser.parse_args(argv)
    if args.watch is not None and args.watch <= 0:
        parser.error("--watch SECONDS must be positive")
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    from harp.report.snapshot import read_snapshot  # Ray's result reader: not for --help
    from harp.report.status import render_status

    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    while True:
        snap = read_snapshot(args.sweep_dir)
        text = render_status(snap)
        if args.watch is None:
            print(text)
            return 0
        print(f"{clear}{text}\n\n[{time.strftime('%H:%M:%S')}] refreshing every {args.watch:g} s; Ctrl-C to stop", flush=True)
        if not snap.activity.running:
            print("the sweep is not running: done watching")
            return 0
        time.sleep(args.watch)
