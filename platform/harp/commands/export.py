"""``harp export SWEEP_DIR``: the best trial's best checkpoint -> test metrics -> ``best/``
(config.yaml that retrains, model.safetensors, metrics.json, confusion matrix) and trials.parquet.

A study (``sweep.group_by`` in its space, or ``--group-by`` here) gets one best trial per cell,
each tested once, in ``best/<cell>/``, and its table in ``best/table.md`` and ``best/table.csv``;
running export again rebuilds the table from the finished sweep (a finished refit is reused).

Examples:
  harp export runs/003_five_families-20261122-021500
  harp export runs/my-sweep --group-by data,model.family     # a table for a sweep that declared none
"""
from __future__ import annotations

import argparse

from harp.export import export_sweep


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harp export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="the sweep directory `harp sweep` printed (runs/<name>)")
    parser.add_argument("--clips", type=int, default=None, help="temporal clips per test video (default: eval.num_clips)")
    parser.add_argument("--crops", type=int, default=None, help="spatial crops per clip, 1 or 3 (default: eval.num_crops)")
    parser.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation")
    parser.add_argument("--group-by", default=None, metavar="KEY[,KEY]",
                        help="cells of the table (e.g. data,model.family); default: the sweep's sweep.group_by")
    args = parser.parse_args(argv)
    group_by = [k.strip() for k in args.group_by.split(",") if k.strip()] if args.group_by else None
    summary = export_sweep(args.sweep_dir, evaluate=not args.no_eval, num_clips=args.clips, num_crops=args.crops, group_by=group_by)
    if summary.get("cells") is not None:
        print(summary["table"])
        print(f"wrote {summary['table_md']}, {summary['table_csv']}, a folder per cell under {summary['best_dir']}/ and {summary['trials_parquet']}")
        return 0
    print(f"best trial {summary['trial_id']} (checkpoint of epoch {summary.get('checkpoint_epoch')})")
    for key, value in summary["params"].items():
        print(f"  {key} = {value}")
    if "test" in summary:
        test = summary["test"]
        shown = {k: test[k] for k in ("top1", "top5", "mean_class_accuracy") if k in test}
        print("test: " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items() if isinstance(v, (int, float))))
    print(f"wrote {summary['best_dir']}/ and {summary['trials_parquet']}")
    return 0
