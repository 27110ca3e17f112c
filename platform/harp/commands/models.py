"""``harp models``: list every family (frames, frame size, params, GFLOPs, sources); fetch weights.

    harp models                          # every family at tiny and base size
    harp models --size base --family timesformer tsm
    harp models --json                   # the same rows as JSON (for scripts and reports)
    harp models fetch kinetics400 --family timesformer
    harp models fetch hf:MCG-NJU/videomae-base

Parameters and FLOPs are measured (``harp.models.flops``), not hard-coded; a family that fails to
build shows its error in the table instead of hiding the others.
"""
from __future__ import annotations

import argparse
import json
import sys

from harp.config.schema import ModelSize
from harp.errors import HarpError
from harp.models.registry import family_names, get_family


def _rows(families: list[str], sizes: list[str], num_classes: int) -> list[dict]:
    from harp.models.flops import model_cost

    rows = []
    for name in families:
        try:
            spec = get_family(name)
        except Exception as exc:  # a family module that does not import: show it, list the rest
            rows.append(_error_row(name, "-", exc))
            continue
        for size in sizes:
            if size not in spec.sizes:
                continue
            preset = spec.sizes[size]
            row = {
                "family": name,
                "size": size,
                "frames": preset.frames,
                "frame_size": preset.frame_size,
                "sources": list(spec.all_sources()),
                "paper": spec.paper,
                "description": spec.description,
            }
            try:
                cost = model_cost(name, size, num_classes)
                row.update(params=cost.params, gflops=round(cost.gflops, 4), gmacs=round(cost.gmacs, 4))
            except Exception as exc:  # one broken family must not hide the table
                row = {**_error_row(name, size, exc), **{k: row[k] for k in ("frames", "frame_size", "sources")}}
            rows.append(row)
    return rows


def _error_row(name: str, size: str, exc: Exception) -> dict:
    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return {"family": name, "size": size, "frames": "-", "frame_size": "-", "sources": [], "params": None,
            "gflops": None, "gmacs": None, "error": message}


def _format_number(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if value >= 0.1 or value == 0 else f"{value:.4f}"


def format_table(rows: list[dict], num_classes: int) -> str:
    header = ("family", "size", "frames", "px", "params (M)", "GFLOPs/clip", "GMACs/clip", "pretrained sources")
    body = []
    for row in rows:
        named = [s for s in row["sources"] if s not in ("none", "file:PATH", "hf:REPO_OR_DIR")]
        body.append(
            (
                row["family"],
                row["size"],
                str(row["frames"]),
                str(row["frame_size"]),
                _format_number(None if row["params"] is None else row["params"] / 1e6, 2),
                _format_number(row["gflops"], 2),
                _format_number(row["gmacs"], 2),
                ", ".join(named) or "-",
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    numeric = {2, 3, 4, 5, 6}

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [line(header), line(["-" * w for w in widths]), *map(line, body)]
    errors = [f"  {r['family']} ({r['size']}): {r['error']}" for r in rows if r.get("error")]
    if errors:
        lines += ["", "failed to build:", *errors]
    lines += [
        "",
        f"Per clip of frames x px^2, {num_classes}-class head; measured with torch.utils.flop_counter (multiply-add = 2 FLOPs;",
        "papers' 'FLOPs' are usually the GMACs column). Every family also accepts none, file:PATH and hf:REPO_OR_DIR.",
    ]
    return "\n".join(lines)


def fetch(source: str, family: str | None) -> str:
    """Download a pretraining source into the local cache; returns where it went."""
    from harp.models import pretrained as P

    if source.startswith("hf:"):
        target = source[len("hf:"):]
    elif source.startswith("file:") or source == "none":
        raise HarpError(f"{source!r} is local: there is nothing to fetch")
    else:
        if family is None:
            raise HarpError(f"a named source needs --family (e.g. harp models fetch {source} --family timesformer)")
        target = P.hub_target(get_family(family), source)
    if P.is_url(target):
        import torch.hub

        path = P.url_cache_path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():  # torch.hub writes a temporary file and renames it when complete
            try:
                torch.hub.download_url_to_file(target, str(path), progress=sys.stderr.isatty())
            except OSError as exc:
                raise HarpError(f"cannot download {target}: {exc}".splitlines()[0]) from exc
        return str(path)
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = HfApi().list_repo_files(target)
    except Exception as exc:
        raise HarpError(f"cannot reach the Hugging Face hub for {target}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    # Prefer safetensors when the repo has both formats, so nothing is downloaded twice.
    patterns = ["config.json", "*.json"]
    patterns += ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["*.bin", "*.pth"]
    return snapshot_download(target, cache_dir=str(P.hf_cache_dir()), allow_patterns=patterns)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "fetch":
        parser = argparse.ArgumentParser(
            prog="harp models fetch",
            description="Download a pretraining source into the local cache ($HF_HOME/hub for hub repos, "
            "$TORCH_HOME/hub/checkpoints for weight-file URLs), so that training loads it offline.",
        )
        parser.add_argument("source", help="a named source (kinetics400, imagenet, ...) or hf:REPO")
        parser.add_argument("--family", choices=family_names(), help="the family whose named source to fetch")
        args = parser.parse_args(argv[1:])
        where = fetch(args.source, args.family)
        print(f"{args.source} -> {where}")
        print("Offline machines: copy this cache folder to the same place there (or set HF_HOME / TORCH_HOME), "
              "or load it with hf:DIR / file:PATH.")
        return 0
    parser = argparse.ArgumentParser(prog="harp models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=[*ModelSize, "all"], default="all", help="which size preset(s) to list")
    parser.add_argument("--family", nargs="+", choices=family_names(), help="only these families")
    parser.add_argument("--num-classes", type=int, default=400, help="classifier size the parameters are counted with")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    sizes = list(ModelSize) if args.size == "all" else [args.size]
    rows = _rows(args.family or family_names(), sizes, args.num_classes)
    print(json.dumps(rows, indent=1) if args.json else format_table(rows, args.num_classes))
    return 0
