"""A sweep on S3 vs the same sweep on a local directory: wall time and the bytes written.

    .venv/bin/python bench/storage_sweep.py                       # 3 repeats, 2 trials x 2 epochs of 2 steps
    .venv/bin/python bench/storage_sweep.py --repeats 5 --json runs/bench_storage.json

The same tiny sweep (K trials of the tiny cnn3d_attention on a small synthetic data set, 1 at a
time, a checkpoint every epoch) runs with ``sweep.output_dir`` a local directory and
``s3://BUCKET/...`` on moto's standalone S3 server started here on 127.0.0.1, alternating, in one
Ray instance (after a warm-up sweep that is not reported). Per row, medians over the repeats:

- sweep: ``run_sweep`` (Tune's results and checkpoints written through the storage; the driver's
  SQLite study uploaded once at the end for S3);
- export: ``export_sweep`` with the test evaluation (reading the trials back, downloading the best
  checkpoint, uploading ``best/`` and ``trials.parquet``);
- written: the bytes and files in the sweep directory afterwards (for S3: the objects under its
  prefix, zero-byte "directory" markers included in the count).

moto is a Python server on the same (shared) CPUs, so the S3 row includes moto's own work: the
ratio is an upper bound for what a real object store costs the driver and trials, not a network
measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUCKET = "harp-bench"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.3)
    return process, endpoint


def _space(data_root: str, output_dir: str, name: str, trials: int, epochs: int, steps: int):
    from harp.tune.space import parse_space

    raw = {
        "config": {
            "data.root": data_root, "data.num_workers": 0, "train.epochs": epochs, "train.max_steps_per_epoch": steps,
            "train.batch_size": 4, "optim.name": "adamw", "optim.schedule": "none", "eval.num_clips": 1, "wandb.mode": "disabled",
        },
        "sweep": {"name": name, "output_dir": output_dir, "num_samples": trials, "searcher": "random", "scheduler": "none",
                  "max_concurrent_trials": 1, "cpus_per_trial": 1, "max_failures": 0},
        "params": {"optim.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}},
    }
    return parse_space(raw, name=name), raw


def _written(output_dir: str, name: str, s3) -> tuple[int, int]:
    """(bytes, files) in the sweep directory."""
    if output_dir.startswith("s3://"):
        prefix = output_dir.removeprefix(f"s3://{BUCKET}/") + f"/{name}/"
        sizes = [o["Size"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                 for o in page.get("Contents", [])]
        return sum(sizes), len(sizes)
    files = [p for p in (Path(output_dir) / name).rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="sweeps per row (medians are reported)")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="optimiser steps per epoch")
    parser.add_argument("--json", default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="harp-bench-storage-"))
    moto, endpoint = _start_moto()
    # the trial processes inherit Ray's environment: endpoint and (dummy) credentials before Ray starts
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint, HARP_STATE_DIR=str(work / "state"))
    try:
        import boto3

        from harp.config import load_config
        from harp.data.manifest import ensure_manifest
        from harp.export import export_sweep
        from harp.tune.ray_session import ray_session
        from harp.tune.space import base_config
        from harp.tune.tuner import run_sweep

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        data_root = str(work / "data")
        seed = load_config([f"data.root={data_root}", "data.synth.num_classes=4", "data.synth.clips_per_class=6",
                            "data.synth.max_size=64", "data.num_workers=0"])
        ensure_manifest(seed.data, progress=False)
        targets = {"local directory": str(work / "runs"), "s3 (moto, 127.0.0.1)": f"s3://{BUCKET}/runs"}
        measured: dict[str, dict[str, list[float]]] = {row: {"sweep": [], "export": [], "bytes": [], "files": []} for row in targets}

        with ray_session(base_config(_space(data_root, targets["local directory"], "x", 1, 1, 1)[0]), num_cpus=2):
            warm, raw = _space(data_root, targets["local directory"], "warmup", 1, 1, 1)
            run_sweep(base_config(warm), warm, raw_space=raw, verbose=0)
            for repeat in range(args.repeats):
                order = list(targets) if repeat % 2 == 0 else list(reversed(targets))
                for row in order:
                    name = f"bench-{repeat}"
                    space, raw = _space(data_root, targets[row], name, args.trials, args.epochs, args.steps)
                    start = time.perf_counter()
                    outcome = run_sweep(base_config(space), space, raw_space=raw, verbose=0)
                    swept = time.perf_counter() - start
                    errors = [outcome.results[i].error for i in range(len(outcome.results)) if outcome.results[i].error is not None]
                    if errors:
                        raise SystemExit(f"{row}: {len(errors)} trials failed: {errors[0]}")
                    start = time.perf_counter()
                    export_sweep(outcome.paths.where, wandb_summary=False)
                    exported = time.perf_counter() - start
                    size, files = _written(targets[row], name, s3)
                    for key, value in (("sweep", swept), ("export", exported), ("bytes", size), ("files", files)):
                        measured[row][key].append(value)
                    print(f"  {row} #{repeat}: sweep {swept:.1f} s, export {exported:.1f} s, {size} B in {files} files", flush=True)
    finally:
        moto.kill()
        moto.wait()

    rows = []
    for row, values in measured.items():
        rows.append({"row": row, **{f"{key}_median": statistics.median(v) for key, v in values.items()},
                     **{f"{key}_all": v for key, v in values.items()}})
    local = rows[0]
    print(f"\nSweep storage: {args.trials} trials x {args.epochs} epochs of {args.steps} steps (tiny cnn3d_attention, batch 4, "
          f"synthetic 4 classes x 6 clips), a checkpoint per epoch, medians of {args.repeats}; "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}\n")
    print("| sweep.output_dir | sweep (s) | export (s) | sweep + export (s) | ratio vs local | written (bytes) | files/objects |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        total = row["sweep_median"] + row["export_median"]
        row["ratio"] = total / (local["sweep_median"] + local["export_median"])
        print(f"| {row['row']} | {row['sweep_median']:.1f} | {row['export_median']:.1f} | {total:.1f} | {row['ratio']:.2f} | "
              f"{row['bytes_median']:,.0f} | {row['files_median']:.0f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"repeats": args.repeats, "trials": args.trials, "epochs": args.epochs,
                                               "steps": args.steps, "rows": rows}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
