"""``harp explain VIDEO --model DIR``: where the model looked, as a PNG strip: the sampled frames
of the video's centre view, the same frames under their heat maps, and the top-3 labels.

Grad-CAM for the CNN families (3D, and 2D + temporal modelling; the layer each family declares),
attention rollout for the transformer families (TimeSformer's divided space-time attention,
ViViT, VideoMAE). The heat is for the video's top class unless ``--target`` names another.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from harp.commands.predict import MODEL_ARG_HELP
from harp.errors import HarpError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="harp explain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  harp explain clip.mp4 --model runs/my-sweep/best --output clip-explained.png",
    )
    parser.add_argument("video", metavar="VIDEO", help="a video file")
    parser.add_argument("--model", required=True, metavar="DIR", help=MODEL_ARG_HELP)
    parser.add_argument("--output", "-o", help="the PNG to write (default: <video name>.explain.png here)")
    parser.add_argument("--target", metavar="LABEL", help="explain this class instead of the top one")
    parser.add_argument("--clips", type=int, help="temporal clips per video for the prediction (default: the model's eval.num_clips)")
    parser.add_argument("--crops", type=int, choices=(1, 3), help="spatial crops per clip (default: the model's eval.num_crops)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    from harp.serve.predict import Predictor
    from harp.serve.report import TOP_LABELS, explain_prediction

    predictor = Predictor(args.model, device=args.device, num_clips=args.clips, num_crops=args.crops)
    prediction = predictor.predict(args.video)
    if args.target is not None and args.target not in predictor.class_names:
        shown = ", ".join(predictor.class_names[:20]) + (", ..." if len(predictor.class_names) > 20 else "")
        raise HarpError(f"--target {args.target!r} is not one of the model's classes: {shown}")
    explanation = explain_prediction(predictor, prediction, target=args.target)
    output = Path(args.output) if args.output else Path(f"{Path(args.video).stem}.explain.png")
    if output.parent != Path("."):
        output.parent.mkdir(parents=True, exist_ok=True)
    explanation.strip.save(output)
    for rank, (label, prob) in enumerate(prediction.top[:TOP_LABELS], start=1):
        print(f"{rank}. {label:<24} {prob:.4f}")
    print(f"{explanation.heatmap.method}; wrote {output}")
    return 0
