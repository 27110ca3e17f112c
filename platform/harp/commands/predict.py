"""``harp predict VIDEO... --model DIR``: the top-5 actions in each video, with the model's own
frame sampling and multi-view test protocol (from the config its weights carry).

VIDEO may be files, folders (their videos, recursively) or glob patterns. A file that is not a
readable video gets one line on stderr and the rest go on (exit code 1 when any failed).
``--json`` prints one JSON object per video (failures as ``{"video", "error"}``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harp.errors import HarpError

if TYPE_CHECKING:
    from harp.serve.predict import Prediction

MODEL_ARG_HELP = "an export's best/, a study cell's best/<cell>/, a sweep directory (its best/), or a .safetensors file"


def format_table(predictions: Sequence[Prediction], *, name_width: int | None = None) -> str:
    """Rows of (video, rank, label, probability), the video named on its first row only."""
    if not predictions:
        return ""
    names = [p.path.name for p in predictions]
    width = name_width or max(len("video"), *(len(n) for n in names))
    label_width = max(len("label"), *(len(label) for p in predictions for label, _ in p.top))
    lines = [f"{'video':<{width}}  rank  {'label':<{label_width}}  probability"]
    for name, prediction in zip(names, predictions):
        for rank, (label, prob) in enumerate(prediction.top, start=1):
            lines.append(f"{name if rank == 1 else '':<{width}}  {rank:>4}  {label:<{label_width}}  {prob:11.4f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="harp predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  harp predict clip.mp4 --model runs/my-sweep/best\n  harp predict videos/ 'more/*.avi' --model runs/my-sweep --json",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, folders or glob patterns")
    parser.add_argument("--model", required=True, metavar="DIR", help=MODEL_ARG_HELP)
    parser.add_argument("--json", action="store_true", help="one JSON object per video instead of the table")
    parser.add_argument("--top", type=int, default=5, help="how many labels per video (default 5)")
    parser.add_argument("--clips", type=int, help="temporal clips per video (default: the model's eval.num_clips)")
    parser.add_argument("--crops", type=int, choices=(1, 3), help="spatial crops per clip (default: the model's eval.num_crops)")
    parser.add_argument("--batch", type=int, default=8, help="videos per forward pass (default 8)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    if args.top < 1 or args.batch < 1:
        raise HarpError("--top and --batch must be at least 1")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    from tqdm import tqdm

    from harp.serve.inputs import expand_inputs
    from harp.serve.predict import Predictor, VideoClips, VideoError

    files, problems = expand_inputs(args.videos)
    for problem in problems:
        print(f"harp predict: {problem}", file=sys.stderr)
    if not files:
        raise HarpError("no video to predict; pass video files, folders or glob patterns")
    predictor = Predictor(args.model, device=args.device, num_clips=args.clips, num_crops=args.crops)
    failed = len(problems)
    name_width = max(len("video"), *(len(f.name) for f in files))
    header_shown = False
    bar = tqdm(total=len(files), desc="predict", unit="video", disable=args.no_progress or not sys.stderr.isatty(), file=sys.stderr)

    def emit(lines: list[str]) -> None:
        for line in lines:
            bar.write(line, file=sys.stdout)

    def flush(pending: list[VideoClips | VideoError]) -> None:
        """Score the batch and print it in input order (a failed file as its JSON error object)."""
        nonlocal header_shown
        videos = [item for item in pending if isinstance(item, VideoClips)]
        scored = iter(predictor.predict_videos(videos, k=args.top) if videos else [])
        results = [item if isinstance(item, VideoError) else next(scored) for item in pending]
        pending.clear()
        if args.json:
            emit([json.dumps({"video": str(r.path), "error": str(r)} if isinstance(r, VideoError) else r.to_json()) for r in results])
            return
        predictions = [r for r in results if not isinstance(r, VideoError)]
        if predictions:
            table = format_table(predictions, name_width=name_width).splitlines()
            emit(table if not header_shown else table[1:])
            header_shown = True

    pending: list[VideoClips | VideoError] = []
    for path in files:
        try:
            pending.append(predictor.read(path))
        except VideoError as exc:
            failed += 1
            pending.append(exc)
            bar.write(f"harp predict: {exc}", file=sys.stderr)
        bar.update()
        if len(pending) >= args.batch:
            flush(pending)
    flush(pending)
    bar.close()
    summary: dict[str, Any] = {"predicted": len(files) - (failed - len(problems)), "failed": failed}
    if failed:
        print(f"harp predict: {summary['predicted']} predicted, {failed} failed", file=sys.stderr)
    return 1 if failed else 0
