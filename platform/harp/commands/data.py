"""``harp data``: synthesise, index, prepare and inspect video data sets.

  harp data synth   [--output DIR] [key=value ...]   write the synthetic demo data set (H.264 .mp4)
  harp data index   [key=value ...]                  index a data set into a Parquet manifest
  harp data prepare --output DIR [...] [key=value]   transcode to fast-seeking H.264 + manifest
  harp data inspect [key=value ...]                  summarise a manifest
  harp data demo    [key=value ...]                  synthesise + index + decode a batch, print a summary

Examples: ``harp data index data=ucf101 data.root=/data/UCF-101 data.split=2``,
``harp data synth data.synth.num_classes=4 data.root=data/tiny``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from harp.config import load_config
from harp.data.prepare import DEFAULT_GOP, TUNES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harp data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--config", help="a YAML config file")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=ucf101 data.root=/data/UCF-101")
        return p

    synth = add("synth", "write the synthetic demo data set (real H.264 .mp4 files + split files)")
    synth.add_argument("--output", help="target folder (default: data.root)")
    synth.add_argument("--workers", type=int, default=0, help="parallel processes (default: all CPUs)")
    add("index", "index a data set (annotations + parallel probe + splits) into a Parquet manifest")
    prep = add("prepare", "transcode a data set once to CFR H.264 with a short keyframe interval (resumable)")
    prep.add_argument("--output", required=True, help="folder for the prepared copy")
    prep.add_argument("--short-side", type=int, default=128, help="short side of the output in pixels, never upscaled (default 128; 0 keeps the size)")
    prep.add_argument("--fps", type=float, default=None, help="output frame rate (default: the source's)")
    prep.add_argument("--gop", type=int, default=DEFAULT_GOP, help=f"keyframe interval in frames (default {DEFAULT_GOP})")
    prep.add_argument("--crf", type=int, default=23, help="x264 quality (default 23)")
    prep.add_argument("--tune", choices=TUNES, default=TUNES[0],
                      help="x264 tune (default fastdecode: no CABAC, no deblocking: cheaper decoding for a little more disk)")  # fmt: skip
    prep.add_argument("--workers", type=int, default=0, help="parallel processes (default: all CPUs)")
    add("inspect", "summarise the manifest of a data set (splits, classes, lengths, unreadable files)")
    demo = add("demo", "the data pipeline end to end: synthesise, index, decode a batch, print a summary")
    demo.add_argument("--batches", type=int, default=2, help="batches to decode (default 2)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    cfg = load_config(args.overrides, args.config)
    progress = not args.quiet
    if args.action == "synth":
        from harp.data.synthetic import synthesize

        root = synthesize(cfg.data.synth, args.output or cfg.data.root, workers=args.workers, progress=progress)
        print(f"synthetic data set in {root} ({cfg.data.synth.num_classes} classes x {cfg.data.synth.clips_per_class} clips)")
        return 0
    if args.action == "index":
        from harp.data.manifest import build_manifest, load_manifest, summarize

        path = build_manifest(cfg.data, progress=progress)  # logs no summary: this line is the one
        print(f"manifest {path}: {summarize(load_manifest(path))}")
        return 0
    if args.action == "prepare":
        from harp.data.manifest import load_manifest, summarize
        from harp.data.prepare import prepare_dataset

        path = prepare_dataset(cfg.data, args.output, short_side=args.short_side, fps=args.fps, gop=args.gop,
                               crf=args.crf, tune=args.tune, workers=args.workers, progress=progress)  # fmt: skip
        print(f"prepared copy: {path}: {summarize(load_manifest(path))}")
        print(f"train on it with: data.root={args.output}" + (f" data={cfg.data.format}" if cfg.data.format != "synthetic" else ""))
        return 0
    if args.action == "inspect":
        return _inspect(cfg, progress)
    return _demo(cfg, args.batches, progress)


def _inspect(cfg, progress: bool) -> int:
    from harp.data.manifest import class_names, ensure_manifest, load_manifest, summarize

    path = ensure_manifest(cfg.data, progress=progress, announce=False)
    df = load_manifest(path)
    print(f"manifest {path}")
    print(summarize(df))
    ok = df[df["error"] == ""]
    if len(ok):
        print(f"frames: min {ok['frames'].min()} / median {int(ok['frames'].median())} / max {ok['frames'].max()}; "
              f"fps {sorted(set(ok['fps'].round(2)))[:8]}; sizes {sorted(set(zip(ok['width'], ok['height'])))[:6]}")  # fmt: skip
    table = df.pivot_table(index="label", columns="split", values="path", aggfunc="count", fill_value=0)
    table = table.reindex(class_names(df))
    print(table.to_string())
    return 0


def _demo(cfg, batches: int, progress: bool) -> int:
    from harp.data.loader import build_dataset, build_loader
    from harp.data.manifest import ensure_manifest, load_manifest, summarize
    from harp.models import resolve
    from harp.train.run import sampling_config

    t0 = time.perf_counter()
    path = ensure_manifest(cfg.data, progress=progress, announce=False)
    df = load_manifest(path)
    print(f"data: {summarize(df)} ({time.perf_counter() - t0:.1f} s to synthesise/index)")
    model = resolve(cfg.model, df.attrs.get("classes") and len(df.attrs["classes"]))
    dataset = build_dataset(cfg, "train", True, model.frames, model.frame_size, sampling=sampling_config(cfg, model))
    loader = build_loader(dataset, cfg.train.batch_size, shuffle=True, num_workers=cfg.data.num_workers)
    print(f"sampling {dataset.sampler.notation()}, decode {cfg.data.decode_backend}, {len(dataset)} training clips, "
          f"model {cfg.model.family}/{cfg.model.size} wants {dataset.sampler.params.num_frames} frames at {model.frame_size} px")  # fmt: skip
    t1 = time.perf_counter()
    clips = skipped = 0
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        video = batch["video"]
        clips += len(video)
        skipped += int(batch["skipped"].sum())
        names = [dataset.class_names[k] for k in batch["label"].tolist()]
        print(f"batch {i}: video {tuple(video.shape)} {video.dtype}, labels {names}")
    dt = time.perf_counter() - t1
    print(f"decoded {clips} clips in {dt:.2f} s ({clips / dt:.1f} clips/s incl. worker start-up), {skipped} skipped files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
