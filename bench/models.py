"""Forward and forward+backward clips/s of every model family, with params and GFLOPs in one table.

    .venv/bin/python bench/models.py                          # every family, tiny and base, CPU fp32
    .venv/bin/python bench/models.py --sizes tiny --batch 8
    .venv/bin/python bench/models.py --device cuda --dtype bf16 --sizes base --batch 8
    .venv/bin/python bench/models.py --json runs/bench_models.json
    .venv/bin/python bench/models.py --threads 1               # per-core numbers; stable on a busy machine

forward: eval mode, no grad. forward+backward: train mode, cross-entropy on random labels,
backward, no optimiser step. Each row warms up (``--warmup`` iterations; CUDA also runs one
untimed iteration) and then times iterations until ``--min-seconds`` have passed or ``--iters``
ran, at least one. bf16 uses ``torch.autocast``. GFLOPs/clip and params come from
``harp.models.flops`` (torch.utils.flop_counter, multiply-add = 2 FLOPs), the same numbers
``harp models`` prints; "model TFLOP/s" is forward GFLOPs x clips/s (x3 for forward+backward).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from harp.config.schema import ModelConfig
from harp.models import family_names, resolve
from harp.models.flops import model_cost


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step, device: torch.device, warmup: int, iters: int, min_seconds: float) -> float:
    """Seconds per iteration of step()."""
    for _ in range(warmup):
        step()
    _sync(device)
    done, start = 0, time.perf_counter()
    while True:
        step()
        done += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if done >= iters or elapsed >= min_seconds:
            return elapsed / done


def _sig(value: float, digits: int = 3) -> float:
    """Rounded to significant digits (0.0213 clips/s stays readable next to 412 clips/s)."""
    return float(f"{value:.{digits}g}")


def bench_family(name: str, size: str, batch: int, device: torch.device, dtype: str, warmup: int, iters: int, min_seconds: float) -> dict:
    resolved = resolve(ModelConfig(family=name, size=size), 400)
    args = resolved.args
    cost = model_cost(name, size, 400)
    torch.manual_seed(0)
    model = resolved.spec.build(args).to(device)
    clips = torch.randn(batch, 3, args.frames, args.frame_size, args.frame_size, device=device)
    labels = torch.randint(0, 400, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

    def forward() -> None:
        with torch.no_grad(), autocast:
            model(clips)

    def forward_backward() -> None:
        with autocast:
            loss = F.cross_entropy(model(clips).float(), labels)
        loss.backward()
        model.zero_grad(set_to_none=True)

    model.eval()
    fwd = _time(forward, device, warmup, iters, min_seconds)
    model.train()
    fwd_bwd = _time(forward_backward, device, warmup, iters, min_seconds)
    row = {
        "family": name,
        "size": size,
        "frames": args.frames,
        "frame_size": args.frame_size,
        "batch": batch,
        "params_m": round(cost.mparams, 3),
        "gflops_per_clip": round(cost.gflops, 4),
        "fwd_clips_s": _sig(batch / fwd),
        "fwd_bwd_clips_s": _sig(batch / fwd_bwd),
        "fwd_batch_s": _sig(fwd),
        "fwd_bwd_batch_s": _sig(fwd_bwd),
        "fwd_tflops_s": _sig(cost.gflops * batch / fwd / 1e3),
        "fwd_bwd_tflops_s": _sig(3 * cost.gflops * batch / fwd_bwd / 1e3),
    }
    if device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        torch.cuda.reset_peak_memory_stats(device)
    return row


def format_rows(rows: list[dict]) -> str:
    cols = [
        ("family", "family"), ("size", "size"), ("frames", "T"), ("frame_size", "px"), ("batch", "B"),
        ("params_m", "params M"), ("gflops_per_clip", "GFLOPs/clip"), ("fwd_clips_s", "fwd clips/s"),
        ("fwd_bwd_clips_s", "fwd+bwd clips/s"), ("fwd_batch_s", "fwd s/batch"), ("fwd_bwd_batch_s", "fwd+bwd s/batch"), ("fwd_tflops_s", "fwd TFLOP/s"),
    ]
    if any("peak_mem_gib" in r for r in rows):
        cols.append(("peak_mem_gib", "peak GiB"))
    cells = [[h for _, h in cols]] + [[str(r.get(k, r.get("error", "-") if k == "params_m" else "-")) for k, _ in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=family_names(), choices=family_names())
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=["tiny", "base"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--batch", type=int, default=None, help="clips per batch (default: 8 tiny, 1 base on CPU, 8 base on GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations (default: 2 tiny, 0 base on CPU, 3 on GPU)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--min-seconds", type=float, default=2.0, help="time at most ~this long per measurement (>= 1 iteration)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="also write the rows (and the machine) to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "dtype": args.dtype,
    }
    print(f"# {machine}", flush=True)
    rows = []
    for size in args.sizes:
        for name in args.families:
            on_gpu = device.type == "cuda"
            batch = args.batch or (8 if size == "tiny" or on_gpu else 1)
            warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 2 if size == "tiny" else 0)
            try:
                row = bench_family(name, size, batch, device, args.dtype, warmup, args.iters, args.min_seconds)
            except Exception as exc:  # e.g. out of memory at base size: report, keep going
                row = {"family": name, "size": size, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:120]}
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    machine["load_avg_1m_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    print(format_rows(rows))
    print(f"# load average (1 min) at start {machine['load_avg_1m']}, at end {machine['load_avg_1m_end']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
