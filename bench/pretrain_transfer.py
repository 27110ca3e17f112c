"""Does the demo's pretraining source help? The main job's task trained from ``none`` and from
``synthetic-src``, at equal epochs, over several seeds.

    nice -n 15 .venv/bin/python bench/pretrain_transfer.py                      # 2 families x 2 starts x 3 seeds
    nice -n 15 .venv/bin/python bench/pretrain_transfer.py --seeds 0 1 2 3 4 --json runs/bench_pretrain.json

Every run is ``search_spaces/default.yaml``'s fixed config (its six motion classes, 12 epochs, its
test protocol) with one fixed set of hyperparameters per family (``--lr``, ``--weight-decay``,
``--batch-size``; AdamW, the family's own frame sampling), so the only differences are the start
(``model.pretrained``) and the seed (``train.seed``: the head's, and for ``none`` the body's,
initialisation, dropout and the data order). The source is built first, as ``harp sweep`` builds it
(timed; reused when cached). Runs go ``--jobs`` at a time, one torch thread each, as a sweep's trials do.

Reported per family and start: the median over seeds of val top-1 after epochs 1, 3, 6 and the last
(ASHA's rungs for the demo's grace period 3 are epochs 3 and 6), of the best val top-1, and of test
top-1 of the last epoch's weights (``eval.num_clips`` x ``eval.num_crops`` views, as the sweep's
export evaluates); then each seed's values.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

EPOCH_COLUMNS = (1, 3, 6)


def _config(family: str, source: str, seed: int, args: argparse.Namespace, out: Path) -> Any:
    from harp.config.load import to_dict
    from harp.tune.space import apply_params, base_config, find_space, load_space

    space = load_space(find_space("default"))
    base = base_config(space, [f"data.root={Path(args.data_root).resolve()}", f"train.output_dir={out}", "wandb.mode=disabled"])
    params = {
        "model.family": family, "model.pretrained": source, "train.seed": seed, "train.threads": 1,
        "optim.name": "adamw", "optim.lr": args.lr, "optim.weight_decay": args.weight_decay, "train.batch_size": args.batch_size,
    }  # fmt: skip
    if args.epochs:
        params["train.epochs"] = args.epochs
    cfg = apply_params(base, params)
    return to_dict(cfg)


def run_one(job: tuple[str, str, int, dict[str, Any], str]) -> dict[str, Any]:
    """Train one config to its last epoch, then evaluate that epoch's weights on the test split."""
    family, source, seed, config, run_dir = job
    import torch

    from harp.config.load import from_dict
    from harp.evaluate import evaluate_checkpoint
    from harp.train import LocalSession, train_loop

    torch.set_num_threads(1)
    cfg = from_dict(config)
    started = time.perf_counter()
    session = LocalSession(cfg, run_dir, keep=1)
    history = train_loop(cfg, session)
    seconds = time.perf_counter() - started
    test = evaluate_checkpoint(Path(run_dir) / "latest", output_dir=Path(run_dir) / "eval", progress=False)
    return {
        "family": family, "source": source, "seed": seed, "seconds": seconds,
        "val_top1": [float(h["val_top1"]) for h in history], "test_top1": float(test["top1"]),
    }  # fmt: skip


def build_sources(families: list[str], data_root: str) -> list[dict[str, Any]]:
    from harp.config.load import load_config
    from harp.train.pretrain import ensure_source

    built = []
    for family in families:
        model = load_config([f"model.family={family}", "model.size=tiny"]).model
        started = time.perf_counter()
        result = ensure_source("synthetic-src", model)
        built.append({"family": family, "built": result.built, "seconds": time.perf_counter() - started, "path": str(result.path),
                      "source_val_top1": result.val_top1})
        print(f"synthetic-src for {family}: {'built' if result.built else 'cached'} in {built[-1]['seconds']:.0f} s ({result.path})", flush=True)
    return built


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(results: list[dict[str, Any]], epochs: int) -> str:
    cols = [*[e for e in EPOCH_COLUMNS if e < epochs], epochs]
    header = ["family", "start", "seeds", *[f"val@{e}" for e in cols], "best val", "test (last epoch)", "s/run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = sorted({(r["family"], r["source"]) for r in results}, key=lambda k: (k[0], k[1] != "none"))
    for family, source in keys:
        rows = [r for r in results if (r["family"], r["source"]) == (family, source)]
        cells = [family, source, str(len(rows))]
        cells += [f"{_median([r['val_top1'][e - 1] for r in rows if len(r['val_top1']) >= e]):.3f}" for e in cols]
        cells += [f"{_median([max(r['val_top1']) for r in rows]):.3f}", f"{_median([r['test_top1'] for r in rows]):.3f}"]
        cells += [f"{_median([r['seconds'] for r in rows]):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("per seed (val top-1 per epoch; test top-1):")
    for r in sorted(results, key=lambda r: (r["family"], r["source"], r["seed"])):
        lines.append(f"  {r['family']:<16} {r['source']:<14} seed {r['seed']}: val {[round(v, 3) for v in r['val_top1']]}  test {r['test_top1']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["cnn3d_attention", "tsm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=0, help="epochs per run (default: the main job's train.epochs)")
    parser.add_argument("--lr", type=float, default=1.0e-2)
    parser.add_argument("--weight-decay", type=float, default=1.0e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--data-root", default="data/synthetic-6", help="the main job's data set (synthesised on first use)")
    parser.add_argument("--json", help="also write every run's numbers here")
    args = parser.parse_args(argv)

    from harp.data.manifest import ensure_manifest
    from harp.tune.space import base_config, find_space, load_space

    space = load_space(find_space("default"))
    ensure_manifest(base_config(space, [f"data.root={Path(args.data_root).resolve()}"]).data, progress=False)
    sources = build_sources(args.families, args.data_root)
    out = Path(tempfile.mkdtemp(prefix="harp-bench-pretrain-"))
    jobs = []
    for family in args.families:
        for seed in args.seeds:
            for source in ("none", "synthetic-src"):
                run_dir = out / f"{family}-{source}-{seed}"
                jobs.append((family, source, seed, _config(family, source, seed, args, out), str(run_dir)))
    epochs = int(jobs[0][3]["train"]["epochs"])
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = []
        for result in pool.map(run_one, jobs):
            results.append(result)
            print(f"  {result['family']} {result['source']} seed {result['seed']}: val {result['val_top1'][-1]:.3f} "
                  f"test {result['test_top1']:.3f} ({result['seconds']:.0f} s)", flush=True)
    print(f"\n{len(results)} runs of {epochs} epochs in {time.perf_counter() - started:.0f} s ({args.jobs} at a time); runs in {out}\n")
    print(table(results, epochs))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"sources": sources, "runs": results, "args": vars(args)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
