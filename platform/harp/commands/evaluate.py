"""``harp evaluate``: a checkpoint on the test split with the multi-view protocol (N clips x M
crops per video, softmax scores averaged); prints top-1/top-5/mean class accuracy and per class."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from harp.config.load import load_config
from harp.errors import HarpError
from harp.evaluate import evaluate_checkpoint


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="harp evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  harp evaluate runs/my-sweep/best --clips 10 --crops 3",
    )
    parser.add_argument("checkpoint", help="a checkpoint directory (model.safetensors + config.yaml), e.g. an exported best/")
    parser.add_argument("--clips", type=int, help="temporal clips per video (default: eval.num_clips)")
    parser.add_argument("--crops", type=int, choices=(1, 3), help="spatial crops per clip (default: eval.num_crops)")
    parser.add_argument("--split", help="train / val / test (default: eval.split)")
    parser.add_argument("--output", help="where to write metrics.json, confusion.csv/.png (default: inside the checkpoint)")
    parser.add_argument("--config", help="a config file instead of the checkpoint's config.yaml")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides on the checkpoint's config, e.g. data.root=/data/UCF-101")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    checkpoint = Path(args.checkpoint)
    config_file = Path(args.config) if args.config else checkpoint / "config.yaml"
    if not config_file.is_file():
        raise HarpError(f"{checkpoint} has no config.yaml; pass --config FILE")
    cfg = load_config(args.overrides, config_file)
    m = evaluate_checkpoint(checkpoint, split=args.split, num_clips=args.clips, num_crops=args.crops, cfg=cfg, output_dir=args.output)
    print(f"{m['family']} on {m['split']} ({m['num_videos']} videos, {m['num_clips']} clips x {m['num_crops']} crops):")
    print(f"  top-1 {m['top1']:.4f}   top-5 {m['top5']:.4f}   mean class accuracy {m['mean_class_accuracy']:.4f}")
    width = max(len(name) for name in m["per_class_accuracy"])
    for name, acc in m["per_class_accuracy"].items():
        print(f"  {name:<{width}}  {'-' if acc is None else format(acc, '.3f')}")
    for name, path in m["outputs"].items():
        print(f"  {name:<16} {path}")
    return 0
