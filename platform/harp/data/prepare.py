"""``harp data prepare``: transcode a data set once into fast-seeking H.264.

The official UCF101/HMDB51 .avi files (DivX/XviD, long keyframe intervals) seek slowly and
decord sometimes returns wrong frames from them. Preparing writes every usable video of the
manifest as constant-frame-rate H.264 .mp4 with a short keyframe interval at a chosen short side,
in parallel with a progress bar. It is resumable: each file is written under a temporary name
and renamed when complete, so existing outputs are skipped. The prepared copy gets its own
manifest (same labels, groups and splits; probes of the new files) at the place
``harp.data.manifest.manifest_path`` expects for ``data.root=<output>``, so training on it only
needs ``data.root=<output>``.

Two encoder settings make sparse reads cheap, both measured by ``bench/data.py --only encode``
against other choices: a keyframe every 8 frames (a read seeks to the keyframe before each far
sampled frame and decodes from there), and x264's ``fastdecode`` tune, which turns off CABAC and the
deblocking filter, the two most expensive parts of H.264 decoding. Both cost disk (about a third more at
128 px than x264's defaults with 16), which is cheap next to the CPU time every epoch spends decoding.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

from harp.config.schema import DataConfig
from harp.errors import HarpError

TUNES = ("fastdecode", "none")  # x264 --tune values `harp data prepare` offers, the default first; "none": x264's defaults
# A keyframe every 8 frames: harp's reader seeks cheaply, so sampled frames far apart (TSN-style
# segments) read about 1.3x faster than with 16, for 16-24 % more disk (bench/data.py --only encode).
DEFAULT_GOP = 8
log = logging.getLogger("harp.data")


def _check_tune(tune: str) -> None:
    if tune not in TUNES:
        raise HarpError(f"--tune {tune}: choose one of {', '.join(TUNES)}")


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def transcode(src: str, dst: str, short_side: int, fps: float | None = None, gop: int = DEFAULT_GOP, crf: int = 23,
              tune: str = TUNES[0]) -> dict[str, Any]:  # fmt: skip
    """Transcode one video to CFR H.264 .mp4; returns its probe dict (``error`` set on failure)."""
    import av

    _check_tune(tune)
    from harp.data.probe import probe_video

    dst_path = Path(dst)
    if dst_path.is_file():  # resumable: complete files were renamed into place
        return probe_video(dst_path)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst_path.with_name(f".{dst_path.name}.{os.getpid()}.part")
    try:
        with av.open(src) as inp:
            stream = inp.streams.video[0]
            rate_in = stream.average_rate or stream.guessed_rate or stream.base_rate
            rate = int(round(fps or (float(rate_in) if rate_in else 25.0)))
            w, h = stream.codec_context.width, stream.codec_context.height
            scale = min(1.0, short_side / min(w, h)) if short_side else 1.0  # never upscale
            out_w, out_h = _even(w * scale), _even(h * scale)
            written = 0
            with av.open(str(tmp), mode="w", format="mp4") as out:
                ostream = out.add_stream("libx264", rate=rate)
                ostream.width, ostream.height, ostream.pix_fmt = out_w, out_h, "yuv420p"
                ostream.options = {"crf": str(crf), "preset": "veryfast", "g": str(gop), "keyint_min": str(gop),
                                   "sc_threshold": "0", "bf": "0", "threads": "1", **({"tune": tune} if tune != "none" else {})}  # fmt: skip
                first_time = None
                for n_in, frame in enumerate(inp.decode(stream)):
                    t = frame.time if frame.time is not None else n_in / rate
                    first_time = t if first_time is None else first_time
                    slot = int(round((t - first_time) * rate))  # constant frame rate: the output slot of this frame
                    if slot < written:
                        continue  # a second frame for one slot: drop it
                    image = frame.reformat(width=out_w, height=out_h, format="yuv420p")
                    image.time_base = Fraction(1, rate)
                    while written <= slot:  # fill skipped slots by repeating the frame
                        image.pts = written
                        for packet in ostream.encode(image):
                            out.mux(packet)
                        written += 1
                for packet in ostream.encode():
                    out.mux(packet)
            if written == 0:
                raise HarpError("no frames decoded")
        os.replace(tmp, dst_path)
    except Exception as exc:  # noqa: BLE001 - any failure is reported per file, never a crash
        tmp.unlink(missing_ok=True)
        from harp.data.probe import failed_probe

        return failed_probe(f"transcode failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    return probe_video(dst_path)


def _transcode_job(args: tuple) -> dict[str, Any]:
    return transcode(*args)


def prepare_dataset(
    cfg: DataConfig,
    output: str | os.PathLike,
    *,
    short_side: int = 128,
    fps: float | None = None,
    gop: int = DEFAULT_GOP,
    crf: int = 23,
    tune: str = TUNES[0],
    workers: int = 0,
    progress: bool = True,
) -> Path:
    """Transcode the usable videos of ``cfg``'s data set into ``output``; returns the new manifest path."""
    from tqdm import tqdm

    from harp.data.manifest import ensure_manifest, load_manifest, manifest_path, summarize, write_manifest
    from harp.data.probe import PROBE_COLUMNS

    _check_tune(tune)
    out_root = Path(output)
    if out_root.resolve() == Path(cfg.root).resolve():
        raise HarpError("the prepared copy needs its own folder: pass --output different from data.root")
    df = load_manifest(ensure_manifest(cfg, progress=progress))
    df = df[df["error"] == ""].reset_index(drop=True)
    src_root = Path(cfg.root)
    new_paths = [str(PurePosixPath(p).with_suffix(".mp4")) for p in df["path"]]
    jobs = [(str(src_root / p), str(out_root / q), short_side, fps, gop, crf, tune) for p, q in zip(df["path"], new_paths)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: list[dict[str, Any]] = []
    with tqdm(total=len(jobs), desc="prepare", unit="video", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                results.append(_transcode_job(job))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(_transcode_job, jobs, chunksize=1):
                    results.append(result)
                    bar.update()
    attrs = dict(df.attrs)
    for col in PROBE_COLUMNS:
        df[col] = [r[col] for r in results]
    df["path"] = new_paths
    df.loc[df["error"] != "", "split"] = "excluded"
    out_cfg = dataclasses.replace(cfg, root=str(out_root), manifest="")
    df.attrs.update(attrs)
    df.attrs.update(root=str(out_root.resolve()), prepared_from=str(src_root.resolve()),
                    prepared={"short_side": short_side, "fps": fps, "gop": gop, "crf": crf, "tune": tune})  # fmt: skip
    path = write_manifest(df, manifest_path(out_cfg))
    log.info("prepared copy in %s: %s", out_root, summarize(df))
    return path
