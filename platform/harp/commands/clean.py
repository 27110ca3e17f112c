"""``harp clean SWEEP_DIR``: free the disk a finished sweep's spare checkpoints take.

Keeps each trial's best checkpoint (what export and ``harp evaluate`` read) and removes the
others; refuses a sweep that is running or unfinished (its trials resume from their latest
checkpoints). ``best/`` and ``trials.parquet`` are not touched.

Examples:
  harp clean runs/default-20261122-021500 --dry-run
  harp clean runs/default-20261122-021500
"""
from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harp clean", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="the sweep directory `harp sweep` printed (runs/<name>)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    args = parser.parse_args(argv)

    from harp.tune.clean import clean_sweep  # Ray: not for `harp clean --help`
    from harp.tune.sweep_dir import format_size

    report = clean_sweep(args.sweep_dir, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(report.removed)} checkpoint(s) ({format_size(report.freed_bytes)}); kept {len(report.kept)} "
          f"(each trial's best)")
    print(f"sweep directory: {format_size(report.size_before)} -> {format_size(report.size_after)}")
    return 0
