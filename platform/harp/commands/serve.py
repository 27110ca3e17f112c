"""``harp serve --model DIR``: an HTTP service for the model, on Ray Serve.

``GET /`` is an upload page (a video in; its sampled frames, the top-5 and the explanation strip
out); ``POST /predict`` takes the video file as the request body and answers JSON
(``curl --data-binary @clip.mp4 http://127.0.0.1:8000/predict``; add ``?explain=1`` for the
pictures as base64 PNGs). Concurrent requests are scored in batches. Uploads over the size or
duration limits, and files that are not readable videos, get one JSON error line.

Binds to 127.0.0.1 unless ``--host`` says otherwise. Ray runs privately for the service (or on
the cluster ``--ray-address`` names) and stops with it (Ctrl-C or SIGTERM).
"""
from __future__ import annotations

import argparse
import logging
import sys

from harp.commands.predict import MODEL_ARG_HELP
from harp.errors import HarpError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="harp serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  harp serve --model runs/my-sweep/best --port 8000 --replicas 2",
    )
    parser.add_argument("--model", required=True, metavar="DIR", help=MODEL_ARG_HELP)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--replicas", type=int, default=1, help="model replicas (default 1)")
    gpu = parser.add_mutually_exclusive_group()
    gpu.add_argument("--gpu", dest="use_gpu", action="store_true", default=None, help="require a GPU per replica (default: use one when present)")
    gpu.add_argument("--cpu", dest="use_gpu", action="store_false", help="serve on CPUs even when a GPU is present")
    parser.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload accepted, in MB (default 50)")
    parser.add_argument("--max-duration-s", type=float, default=120.0, help="longest video accepted, in seconds (default 120)")
    parser.add_argument("--max-batch", type=int, default=8, help="most requests scored in one forward pass (default 8)")
    parser.add_argument("--batch-wait-ms", type=float, default=20.0, help="how long a request waits for others to batch with (default 20)")
    parser.add_argument("--ray-address", default="local", help="'local' (a private Ray, the default) or a cluster address")
    args = parser.parse_args(argv)
    if args.max_upload_mb <= 0 or args.max_duration_s <= 0 or args.max_batch < 1 or args.batch_wait_ms < 0:
        raise HarpError("--max-upload-mb and --max-duration-s must be positive, --max-batch at least 1, --batch-wait-ms not negative")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from harp.serve.app import ServiceSettings
    from harp.serve.server import ServeOptions, serve_forever

    settings = ServiceSettings(
        model=args.model,
        max_upload_mb=args.max_upload_mb,
        max_duration_s=args.max_duration_s,
        max_batch_size=args.max_batch,
        batch_wait_s=args.batch_wait_ms / 1000.0,
    )
    options = ServeOptions(host=args.host, port=args.port, replicas=args.replicas, use_gpu=args.use_gpu, ray_address=args.ray_address)

    def announce(url: str) -> None:
        print(f"harp serve: {url} (upload page; POST {url}predict) with {args.replicas} replica(s); Ctrl-C stops", flush=True)

    serve_forever(settings, options, announce=announce)
    print("harp serve: stopped", file=sys.stderr, flush=True)
    return 0
