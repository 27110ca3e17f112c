"""``harp report SWEEP_DIR``: one HTML page for a sweep (running, finished or failed), plus its
figures as PNG files.

The page is self-contained (figures embedded, no script, nothing from the network): open it in
any browser, offline, or attach it to a ticket. Sections: optimisation history, parallel
coordinates, parameter importances, learning curves (ASHA's stops marked), accuracy vs GFLOPs
(Pareto front), the best model's confusion matrix and per-class accuracy, a study's per-cell
table, the best config, the trials and their failures, data quality, and how to open
optuna-dashboard, W&B and Ray's dashboard.

Examples:
  harp report runs/default-20261122-021500
  harp report runs/my-sweep --output /tmp/my-sweep-report
"""
from __future__ import annotations

import argparse
import logging


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harp report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="the sweep directory `harp sweep` printed (runs/<name>)")
    parser.add_argument("--output", default=None, help="folder for report.html and figures/ (default: SWEEP_DIR/report)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from harp.report import build_report  # matplotlib, Ray's result reader: not for --help

    report = build_report(args.sweep_dir, args.output)
    print(f"wrote {report.html} and {len(report.figures)} figure(s) in {report.html.parent / 'figures'} ({report.seconds:.1f} s)")
    for name, why in report.missing.items():
        print(f"  no {name.replace('_', ' ')}: {why}")
    return 0
