"""TimeSformer attention: PyTorch SDPA (harp's default) vs transformers' eager attention, same weights.

    .venv/bin/python bench/attention.py                                  # base 8x224, CPU fp32, batch 1
    .venv/bin/python bench/attention.py --device cuda --dtype bf16 --batch 8
    .venv/bin/python bench/attention.py --size tiny --iters 10           # a quick smoke run

One model is built (``model.options.attn_implementation`` switches it in place: same parameters),
then forward+backward (train mode, cross-entropy, no optimiser step) is timed for each attention
kind in turns (eager, sdpa, eager, sdpa, ...) so that load on a shared machine hits both alike.
Each turn warms up once and times ``--iters`` iterations; the table gives the median and IQR of
the per-turn clips/s, the ratio sdpa / eager of the medians, the forward logits' largest
difference between the two (fp32: within 1e-4), and peak GPU memory per kind on CUDA.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from harp.config.schema import ModelConfig
from harp.models import build_model
from harp.models.timesformer_sdpa import set_timesformer_attention


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="base", choices=("tiny", "base"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--turns", type=int, default=3, help="alternating timed turns per attention kind")
    parser.add_argument("--iters", type=int, default=2, help="timed forward+backward iterations per turn")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="timesformer", size=args.size, pretrained="none", dropout=0.0), 400).to(device)
    frames, side = model.config.num_frames, model.config.image_size
    clips = torch.randn(args.batch, 3, frames, side, side, device=device)
    labels = torch.randint(0, 400, (args.batch,), device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if args.dtype == "bf16" else torch.autocast(device.type, enabled=False)

    logits = {}
    model.eval()
    for kind in ("eager", "sdpa"):
        set_timesformer_attention(model, kind)
        with torch.no_grad(), amp:
            logits[kind] = model(clips).float()
    max_diff = float((logits["sdpa"] - logits["eager"]).abs().max())

    def step() -> None:
        with amp:
            loss = F.cross_entropy(model(clips).float(), labels)
        loss.backward()
        model.zero_grad(set_to_none=True)

    model.train()
    rates: dict[str, list[float]] = {"eager": [], "sdpa": []}
    peak: dict[str, float] = {}
    for _ in range(args.turns):
        for kind in ("eager", "sdpa"):
            set_timesformer_attention(model, kind)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            step()  # warm-up
            _sync(device)
            start = time.perf_counter()
            for _ in range(args.iters):
                step()
            _sync(device)
            rates[kind].append(args.batch * args.iters / (time.perf_counter() - start))
            if device.type == "cuda":
                peak[kind] = max(peak.get(kind, 0.0), torch.cuda.max_memory_allocated(device) / 2**30)

    rows = {kind: _quartiles(values) for kind, values in rates.items()}
    ratio = rows["sdpa"][1] / rows["eager"][1]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads, {os.cpu_count()} cores"
    print(f"\nTimeSformer-{args.size} {frames}x{side}, batch {args.batch}, {args.dtype}, {where}; "
          f"forward+backward clips/s, median [IQR] of {args.turns} turns x {args.iters} iterations\n")  # fmt: skip
    print("| attention | clips/s | peak GPU GiB |")
    print("|---|---:|---:|")
    for kind in ("eager", "sdpa"):
        q1, med, q3 = rows[kind]
        mem = f"{peak[kind]:.2f}" if kind in peak else "-"
        print(f"| {'HF eager' if kind == 'eager' else 'SDPA (harp default)'} | {med:.3g} [{q1:.3g}, {q3:.3g}] | {mem} |")
    print(f"\nsdpa / eager: {ratio:.2f}x;  max |logits difference| (forward, {args.dtype}): {max_diff:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rates": rates, "ratio": ratio, "max_logit_diff": max_diff, "peak_gib": peak,
                                               "size": args.size, "batch": args.batch, "dtype": args.dtype, "device": where}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
