"""One training trial of harp's loop, measured: clips/s, peak GPU memory, data-wait fraction, MFU.

The issue's GPU benchmark is ``python bench/train_trial.py`` on a GPU machine: TimeSformer-base
8x224 in bf16 on synthetic 224 px clips (no pretrained weights, nothing downloaded). On a CPU it
runs the same measurement on a tiny model (``--family cnn3d_attention --size tiny``) as a smoke test.

MFU = achieved training FLOP/s / the accelerator's peak dense bf16 FLOP/s, with training FLOPs
per clip taken as 3 x the forward FLOPs measured by ``harp.models.flops`` (forward + backward).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

# Peak dense bf16 tensor-core FLOP/s (vendor data sheets, no sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(override: float | None) -> float | None:
    if override:
        return override * 1e12
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="timesformer")
    parser.add_argument("--size", default="base")
    parser.add_argument("--frame-size", type=int, default=224, help="clip side in pixels (synthetic videos are made at this size)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2, help="the last epoch is measured (the first warms up cudnn/allocator)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--clips-per-class", type=int, default=24)
    parser.add_argument("--loader-workers", type=int, default=8)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--peak-tflops", type=float, help="accelerator peak bf16 TFLOP/s for MFU (default: from the GPU name)")
    parser.add_argument("--data-root", help="reuse synthetic videos here (default: a temp dir)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from harp.config import load_config
    from harp.data.manifest import ensure_manifest
    from harp.models.flops import measure
    from harp.train import LocalSession, train_loop

    work = Path(tempfile.mkdtemp(prefix="harp-bench-train-"))
    root = Path(args.data_root) if args.data_root else work / "synthetic"
    side = args.frame_size
    cfg = load_config([
        f"data.root={root}", f"data.synth.num_classes={args.classes}", f"data.synth.clips_per_class={args.clips_per_class}",
        f"data.synth.min_size={side}", f"data.synth.max_size={side}", "data.synth.min_frames=32", "data.synth.max_frames=48",
        f"data.num_workers={args.loader_workers}", f"augment.resize_short_side={side}",
        f"model.family={args.family}", f"model.size={args.size}", f"model.frame_size={side}", "model.pretrained=none",
        f"train.batch_size={args.batch_size}", f"train.epochs={args.epochs}", f"train.precision={args.precision}",
        "optim.name=adamw", "optim.lr=1e-4", f"train.output_dir={work / 'runs'}",
    ])
    t0 = time.perf_counter()
    ensure_manifest(cfg.data, progress=False)
    synth_s = time.perf_counter() - t0
    cost = measure(cfg.model, args.classes)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    history = train_loop(cfg, LocalSession(cfg, work / "runs" / "bench", keep=1))
    last = history[-1]
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    peak = peak_flops(args.peak_tflops)
    achieved = last["clips_per_s"] * 3 * cost.flops
    result = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "family": args.family, "size": args.size, "frames": cost.frames, "frame_size": cost.frame_size,
        "precision": "bf16" if (args.precision == "bf16" or (args.precision == "auto" and torch.cuda.is_available())) else "fp32",
        "batch_size": args.batch_size, "loader_workers": args.loader_workers,
        "gflops_fwd_per_clip": cost.gflops, "mparams": cost.mparams,
        "clips_per_s": last["clips_per_s"], "data_wait_frac": last["data_wait_frac"],
        "peak_gpu_mem_gib": peak_mem, "achieved_tflops": achieved / 1e12,
        "mfu": achieved / peak if peak else None, "epoch_time_s": last["epoch_time_s"], "synth_s": synth_s,
    }
    print("| " + " | ".join(result) + " |")
    print("|" + "---|" * len(result))
    print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in result.values()) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
