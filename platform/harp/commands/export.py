"""``harp export SWEEP_DIR``: the best trial's best checkpoint -> test metrics -> ``best/``
(config.yaml that retrains, model.safetensors, metrics.json, confusion matrix) and trials.parquet."""
from __future__ import annotations

import argparse

from harp.export import export_sweep


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harp export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="the sweep directory `harp sweep` printed (runs/<name>)")
    parser.add_argument("--clips", type=int, default=None, help="temporal clips per test video (default: eval.num_clips)")
    parser.add_argument("--crops", type=int, default=None, help="spatial crops per clip, 1 or 3 (default: eval.num_crops)")
    parser.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation")
    args = parser.parse_args(argv)
    summary = export_sweep(args.sweep_dir, evaluate=not args.no_eval, num_clips=args.clips, num_crops=args.crops)
    print(f"best trial {summary['trial_id']} (checkpoint of epoch {summary.get('checkpoint_epoch')})")
    for key, value in summary["params"].items():
        print(f"  {key} = {value}")
    if "test" in summary:
        test = summary["test"]
        shown = {k: test[k] for k in ("top1", "top5", "mean_class_accuracy") if k in test}
        print("test: " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items() if isinstance(v, (int, float))))
    print(f"wrote {summary['best_dir']}/ and {summary['trials_parquet']}")
    return 0
