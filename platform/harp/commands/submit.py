"""harp submit: run a sweep on a Ray cluster as a Ray Job.

Reach the cluster's dashboard through an SSH tunnel (`ray dashboard cluster.yaml`, never an open
port 8265) and keep Ray's token in ~/.ray/auth_token (chmod 600) or RAY_AUTH_TOKEN_PATH:

  harp submit jobs/002_cnn3d_attention_ucf101.yaml --address http://127.0.0.1:8265
  harp submit --space search_spaces/default.yaml sweep.output_dir=/shared/runs data.root=/shared/data/synthetic-6
  harp submit jobs/default.yaml sweep.name=default-20261201-101500    # resubmit: the sweep continues

The working tree is uploaded with the job spec's runtime env; the job runs
`harp sweep --space S --resume-if-exists sweep.ray_address=auto ...`, so a resubmitted job with the
same sweep.name continues its sweep. Paths must be on storage every node sees: a relative
sweep.output_dir is refused here, before anything is uploaded.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from harp.cluster.job_env import check_job_paths
from harp.cluster.job_spec import JobSpec, entrypoint, load_job_spec, refuse_secrets
from harp.cluster.storage import resolve_output_dir
from harp.config.schema import HarpConfig
from harp.errors import ConfigError
from harp.tune.space import base_config, find_space, load_space, shipped_spaces
from harp.tune.sweep_dir import sweep_name


def _space_argument(spec: JobSpec, given: str, *, from_cli: bool) -> tuple[Path, str]:
    """(the space file here, the --space argument the job passes on the cluster).

    A file inside the uploaded working dir travels with it (a relative path there); a shipped
    space is found by name in harp's package data on the nodes; anything else would be missing."""
    candidate = Path(given) if from_cli else spec.working_dir / given
    if candidate.is_file():
        local = candidate.resolve()
        if local.is_relative_to(spec.working_dir):
            return local, str(local.relative_to(spec.working_dir))
        stem = local.name.removesuffix(".yaml")
        if stem in shipped_spaces() and local.read_bytes() == find_space(stem).read_bytes():
            return local, stem
        raise ConfigError(f"the search space {given} is outside the uploaded working dir {spec.working_dir}; move it there or set runtime_env.working_dir")
    return find_space(given).resolve(), given  # a shipped space by name (or one error line)


def _overrides(cfg: HarpConfig, given: list[str]) -> list[str]:
    """The overrides with sweep.name pinned, so a resubmission continues the same sweep."""
    keyed = [o for o in given if not o.startswith("sweep.name=")]
    return [*keyed, f"sweep.name={cfg.sweep.name}"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harp submit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*", metavar="[JOB_SPEC] [key=value ...]",
                        help="a job spec from jobs/ (optional) and Hydra overrides for the sweep")
    parser.add_argument("--space", default=None, help="search-space YAML or shipped name (replaces the job spec's)")
    parser.add_argument("--address", default=None, help="the dashboard's URL, e.g. http://127.0.0.1:8265 (default: $RAY_ADDRESS)")
    parser.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")
    parser.add_argument("--dry-run", action="store_true", help="print the entrypoint and runtime env; submit nothing")
    args = parser.parse_intermixed_args(argv)  # options and overrides in any order

    items = list(args.items)
    spec_file = items.pop(0) if items and "=" not in items[0] else None
    spec = load_job_spec(spec_file) if spec_file else JobSpec()
    refuse_secrets("the command line", items)
    local_space, remote_space = _space_argument(spec, args.space or spec.space, from_cli=bool(args.space))
    space = load_space(local_space)
    overrides = [*spec.overrides, *items]
    cfg = base_config(space, overrides)
    cfg.sweep.name = sweep_name(cfg, space)
    check_job_paths(cfg, space.params, in_job=True)
    location = resolve_output_dir(cfg.sweep.output_dir)
    command = entrypoint(remote_space, _overrides(cfg, overrides))
    runtime_env = spec.runtime_env(os.environ)
    sweep_dir = str(Path(location.path) / cfg.sweep.name) if location.is_local else f"{cfg.sweep.output_dir.rstrip('/')}/{cfg.sweep.name}"
    if args.dry_run:
        print(f"entrypoint: {command}")
        print(f"working_dir: {runtime_env['working_dir']} (excludes: {', '.join(runtime_env['excludes'])})")
        print(f"env_vars: {', '.join(sorted(runtime_env['env_vars']))}")
        print(f"sweep directory: {sweep_dir}")
        return 0

    from harp.cluster.jobs import connect

    jobs = connect(args.address)
    job_id = jobs.submit(
        command,
        runtime_env,
        {"harp_sweep": cfg.sweep.name, "harp_output_dir": cfg.sweep.output_dir, "harp_space": remote_space},
        **spec.entrypoint_options(),
    )
    where = f"--address {jobs.address}"
    resubmit = ["harp", "submit", *([spec_file] if spec_file else []), *(["--space", args.space] if args.space else []), *items]
    if not any(i.startswith("sweep.name=") for i in items):
        resubmit.append(f"sweep.name={cfg.sweep.name}")
    print(f"submitted job {job_id} to {jobs.address}")
    print(f"  sweep {cfg.sweep.name}: {cfg.sweep.num_samples} trials of {remote_space}")
    print(f"  sweep directory (on the cluster's storage): {sweep_dir}")
    print(f"  follow:   harp jobs logs {job_id} --follow {where}")
    print(f"  status:   harp jobs status {job_id} {where}      stop: harp jobs stop {job_id} {where}")
    print(f"  continue after a failure (the same sweep resumes): {shlex.join(resubmit)} {where}")
    if not args.follow:
        return 0
    status = jobs.follow(job_id, sys.stdout)
    print(f"\njob {job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1
