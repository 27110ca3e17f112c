"""The encode section of ``bench/data.py``: which keyframe interval and x264 tune ``harp data
prepare`` should write, measured as disk per video and sparse-read speed for the samplers of the
papers.

A sparse read decodes, for each wanted frame, everything from the keyframe before it: a shorter
keyframe interval (GOP) decodes fewer unwanted frames but costs disk and a seek per keyframe
crossed, and all-intra frames (GOP 1) are the dearest to decode. x264's ``fastdecode`` tune drops
CABAC and the deblocking filter, so every frame decodes faster whatever the GOP. Each encoding of
the same originals is read by harp's own ``FrameDecoder`` (its default backend, one thread) at the
training decode size (short side 128, as for 112 px crops), clips per CPU-second, every encoding of
one short side interleaved one pass at a time.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

from harp.config.schema import DataConfig, SamplingMethod
from harp.data.decode import FrameDecoder, decode_all, output_size
from harp.data.prepare import transcode
from harp.data.sampling import SamplingParams, sample
from loader_bench import interleaved

DECODE_SHORT = 128
BACKEND = DataConfig().decode_backend.value  # what training reads with
BASELINE = (16, "none")  # `harp data prepare` before it used fastdecode and a keyframe every 8 frames
ENCODINGS = [BASELINE, (16, "fastdecode"), (8, "fastdecode"), (8, "none"), (4, "fastdecode"), (4, "none"), (1, "none")]
SAMPLERS = {  # the papers' common ones: 8 frames every 2nd (harp's default stride), every 4th, TSN's 8 segments
    "uniform 8x2": (SamplingMethod.uniform, SamplingParams(num_frames=8, interval=2)),
    "uniform 8x4": (SamplingMethod.uniform, SamplingParams(num_frames=8, interval=4)),
    "equidistant 8": (SamplingMethod.equidistant, SamplingParams(num_frames=8)),
}


def _encode(originals: list[Path], root: Path, short: int, gop: int, tune: str) -> list[dict]:
    """Transcode the originals as ``harp data prepare`` would; the probe dict of each output (with its path)."""
    probes = []
    for i, src in enumerate(originals):
        dst = root / f"s{short}-g{gop}-{tune}" / f"{i:03d}.mp4"
        probe = transcode(str(src), str(dst), short, None, gop, 23, tune)
        assert not probe["error"], probe["error"]
        probes.append({**probe, "path": dst})
    return probes


def read_sampled(decoder: FrameDecoder, probe: dict, path: Path, method: SamplingMethod, params: SamplingParams,
                 epoch: int, video: int) -> np.ndarray:  # fmt: skip
    """One clip of ``method`` from a probed video, drawn by the Generator of (epoch, video), decoded at short side 128."""
    idx = sample(method, probe["frames"], np.random.default_rng([epoch, video]), params).reshape(-1)
    size = output_size(probe["width"], probe["height"], DECODE_SHORT)
    return decoder.read(path, idx, size=size, expected_frames=probe["frames"], keyframe_interval=probe["keyframe_interval"])


def _ways(probes: list[dict], prefix: str) -> dict:
    """``{prefix + way: fn(epoch, video)}``: each sampler's sparse read and the decode-everything way."""
    decoder = FrameDecoder(BACKEND, timeout_s=0, fallback=False)

    def sparse(method: SamplingMethod, params: SamplingParams, epoch: int, video: int) -> None:
        read_sampled(decoder, probes[video], probes[video]["path"], method, params, epoch, video)

    def everything(epoch: int, video: int) -> None:
        p = probes[video]
        decode_all(p["path"], BACKEND, size=output_size(p["width"], p["height"], DECODE_SHORT))

    ways = {prefix + name: functools.partial(sparse, method, params) for name, (method, params) in SAMPLERS.items()}
    return {**ways, prefix + "decode-everything": everything}


def run(originals: list[Path], root: Path, min_seconds: float, shorts: tuple[int, ...] = (128, 240)) -> list[dict]:
    """One row per (short side, encoding): mean KB per video and clips per CPU-second of each way.
    All encodings of one short side are timed interleaved, one pass over the videos at a time, so a
    change in the machine's load hits every encoding alike."""
    rows = []
    for short in shorts:
        encoded = {(gop, tune): _encode(originals, root, short, gop, tune) for gop, tune in ENCODINGS}
        ways: dict = {}
        for (gop, tune), probes in encoded.items():
            ways.update(_ways(probes, f"{gop}/{tune}/"))
        speed = interleaved(ways, len(originals), min_seconds)
        for (gop, tune), probes in encoded.items():
            kb = float(np.mean([p["path"].stat().st_size for p in probes])) / 1e3
            mine = {w.split("/", 2)[2]: v for w, v in speed.items() if w.startswith(f"{gop}/{tune}/")}
            rows.append({"short": short, "gop": gop, "tune": tune, "kb": kb, **mine})
            print(f"  {short} px gop {gop:2d} {tune:10s} {kb:6.0f} KB  " + "  ".join(f"{w} {v:.1f}" for w, v in mine.items()),
                  file=sys.stderr, flush=True)  # fmt: skip
    return rows


def print_table(rows: list[dict]) -> None:
    ways = [*SAMPLERS, "decode-everything"]
    print(f"encodings of `harp data prepare`: clips per CPU-second, {BACKEND} at short side {DECODE_SHORT}; "
          f"x = ratio to gop {BASELINE[0]} / tune {BASELINE[1]} at the same short side (the old default)")  # fmt: skip
    print()
    print("| short side | gop | tune | KB / video | " + " | ".join(ways) + " | sparse / decode-everything (" + ", ".join(SAMPLERS) + ") |")
    print("|---:|---:|---|---:|" + "---:|" * len(ways) + "---|")
    for r in rows:
        base = next(b for b in rows if b["short"] == r["short"] and (b["gop"], b["tune"]) == BASELINE)
        cells = [f"{r[w]:.1f} ({r[w] / base[w]:.2f}x)" for w in ways]
        sparse = ", ".join(f"{r[w] / r['decode-everything']:.1f}" for w in SAMPLERS)
        print(f"| {r['short']} | {r['gop']} | {r['tune']} | {r['kb']:.0f} ({r['kb'] / base['kb']:.2f}x) | " + " | ".join(cells) + f" | {sparse} |")
