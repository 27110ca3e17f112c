"""Load test of ``harp serve``: N concurrent clients against one replica, with and without batching.

Starts ``harp serve`` (a private Ray on 127.0.0.1) for each batching setting, all at once, and
measures them in interleaved rounds (medians in the table), so a busy moment of the machine hits
every setting alike. Each measurement posts synthetic videos from C concurrent clients (a closed loop: each client sends its next video when the last
one is answered), and prints per (setting, C): requests, failures, latency percentiles (ms),
throughput (requests/s) and the mean batch the replica ran (from ``GET /stats``). Nothing may be
dropped: every request must come back 200.

    .venv/bin/python bench/serve_load.py                         # a tiny untrained model (timing only)
    .venv/bin/python bench/serve_load.py --model runs/x/best --requests 128 --clients 1 4 16

The model's weights do not change the timing, so by default a freshly initialised tiny model is
saved with the metadata a trained one carries (``weights_metadata``) and served.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def tiny_model(folder: Path, family: str) -> Path:
    from safetensors.torch import save_model

    from harp.config import load_config
    from harp.models import build_model
    from harp.train.checkpoint import weights_metadata

    names = ["move_left", "move_right", "move_up", "move_down", "grow", "shrink"]
    cfg = load_config([f"model.family={family}", "model.size=tiny", "eval.num_clips=1", "eval.num_crops=1"])
    model = build_model(cfg.model, len(names)).eval()
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"), metadata=weights_metadata(cfg, class_names=names), force_contiguous=True)
    return folder


def synthetic_videos(folder: Path, count: int) -> list[bytes]:
    from harp.data.synthetic import CLASS_NAMES, render_clip, write_mp4

    folder.mkdir(parents=True, exist_ok=True)
    videos = []
    for i in range(count):
        path = folder / f"v{i}.mp4"
        write_mp4(path, render_clip(CLASS_NAMES[i % 8], np.random.default_rng(i), 64, 32), fps=25)
        videos.append(path.read_bytes())
    return videos


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(model: Path, max_batch: int, wait_ms: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "harp.cli", "serve", "--model", str(model), "--port", str(port), "--max-batch", str(max_batch),
               "--batch-wait-ms", str(wait_ms), "--cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    deadline = time.time() + 300
    while not any(line.startswith("harp serve: http") for line in lines):
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise SystemExit(f"harp serve did not start (exit code {process.poll()})")
        time.sleep(0.5)
    return process, f"http://127.0.0.1:{port}/"


def stop_service(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()


def post(url: str, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    request = urllib.request.Request(url + "predict", data=body, method="POST", headers={"Content-Type": "video/mp4"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
            status = response.status
    except Exception:  # noqa: BLE001 - any failure is a dropped request here
        status = 0
    return status, time.perf_counter() - started


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "stats", timeout=60) as response:
        return {k: int(v) for k, v in json.loads(response.read())["batch_sizes"].items()}


def run_level(url: str, videos: list[bytes], clients: int, requests: int) -> dict[str, float]:
    before = stats(url)
    bodies = [videos[i % len(videos)] for i in range(requests)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda body: post(url, body), bodies))
    wall = time.perf_counter() - started
    after = stats(url)
    batches = {int(k): v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    latencies = np.array([seconds for _, seconds in results]) * 1000.0
    return {
        "requests": requests,
        "failed": sum(status != 200 for status, _ in results),
        "p50": float(np.percentile(latencies, 50)),
        "p90": float(np.percentile(latencies, 90)),
        "p99": float(np.percentile(latencies, 99)),
        "throughput": requests / wall,
        "mean_batch": sum(k * v for k, v in batches.items()) / max(1, sum(batches.values())),
    }


def median_of(results: list[dict[str, float]]) -> dict[str, float]:
    """Per-key medians over the rounds; failures summed (none may be dropped in any round)."""
    merged = {key: float(np.median([r[key] for r in results])) for key in results[0]}
    merged["failed"] = sum(r["failed"] for r in results)
    merged["requests"] = sum(r["requests"] for r in results)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model directory (default: a tiny untrained --family model)")
    parser.add_argument("--family", default="cnn3d_attention")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=64, help="requests per level")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 1], help="--max-batch settings to compare (1 = no batching)")
    parser.add_argument("--wait-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3, help="turns per setting; the table shows medians")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harp-serve-bench-") as tmp:
        model = Path(args.model) if args.model else tiny_model(Path(tmp) / "best", args.family)
        videos = synthetic_videos(Path(tmp) / "videos", 16)
        print(f"model: {args.model or f'{args.family} tiny (untrained)'}; 16 synthetic videos of 32 frames at 64 px, "
              f"{np.mean([len(v) for v in videos]) / 1024:.0f} KiB each; one replica on CPU; {os.cpu_count()} CPUs", flush=True)
        services = {}
        try:
            for max_batch in args.batches:  # all running at once, measured in turns: they share the machine's state
                services[max_batch] = start_service(model, max_batch, args.wait_ms)
            for _, url in services.values():
                run_level(url, videos, 2, 8)  # warm-up: first decode, first forward
            runs: dict[tuple[int, int], list[dict[str, float]]] = {}
            for _ in range(args.rounds):
                for clients in args.clients:
                    for max_batch, (_, url) in services.items():
                        runs.setdefault((max_batch, clients), []).append(run_level(url, videos, clients, args.requests))
        finally:
            for process, _ in services.values():
                stop_service(process)
    rows = [{"max_batch": b, "clients": c, **median_of(results)} for (b, c), results in sorted(runs.items(), key=lambda kv: (-kv[0][0], kv[0][1]))]
    print(f"medians of {args.rounds} interleaved rounds of {args.requests} requests per (setting, clients); 'requests' and 'failed' are totals")
    header = f"{'max_batch':>9}  {'clients':>7}  {'requests':>8}  {'failed':>6}  {'p50 ms':>8}  {'p90 ms':>8}  {'p99 ms':>8}  {'req/s':>7}  {'mean batch':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['max_batch']:>9}  {row['clients']:>7}  {row['requests']:>8}  {row['failed']:>6}  {row['p50']:>8.0f}  {row['p90']:>8.0f}  "
              f"{row['p99']:>8.0f}  {row['throughput']:>7.2f}  {row['mean_batch']:>10.2f}")
    if len(args.batches) == 2:
        for clients in args.clients:
            pair = [r for r in rows if r["clients"] == clients]
            if len(pair) == 2 and pair[1]["throughput"]:
                print(f"throughput with batching / without at {clients} clients: {pair[0]['throughput'] / pair[1]['throughput']:.2f}")
    if any(row["failed"] for row in rows):
        raise SystemExit("some requests failed")


if __name__ == "__main__":
    main()
