"""harp jobs: follow the sweeps submitted with `harp submit`.

  harp jobs list                       every job on the cluster (harp's show their sweep)
  harp jobs status ID                  status, message, sweep directory
  harp jobs logs ID [--follow]         the driver's output (--follow: until the job ends)
  harp jobs stop ID                    stop it (a resubmission with the same sweep.name continues it)

The address is --address or $RAY_ADDRESS (the dashboard's URL through `ray dashboard cluster.yaml`).
`logs --follow` exits 0 when the job succeeded, 1 when it failed or was stopped.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from typing import Any

from harp.cluster.jobs import Jobs, connect


def _when(ms: Any) -> str:
    if not ms:
        return "-"
    return _dt.datetime.fromtimestamp(int(ms) / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _list(jobs: Jobs) -> int:
    found = sorted(jobs.list_jobs(), key=lambda j: j.start_time or 0)
    if not found:
        print(f"no jobs on {jobs.address}")
        return 0
    print(f"{'job':<28} {'status':<10} {'started':<19}  sweep / entrypoint")
    for job in found:
        meta = job.metadata or {}
        what = f"{meta['harp_sweep']} ({meta.get('harp_output_dir', '?')})" if "harp_sweep" in meta else job.entrypoint[:80]
        print(f"{job.submission_id or job.job_id or '-':<28} {job.status!s:<10} {_when(job.start_time):<19}  {what}")
    return 0


def _status(jobs: Jobs, job_id: str) -> int:
    job = jobs.info(job_id)
    meta = job.metadata or {}
    print(f"job {job_id}: {job.status}")
    if job.message:
        print(f"  message: {job.message.strip().splitlines()[0]}")
    if "harp_sweep" in meta:
        print(f"  sweep {meta['harp_sweep']} in {meta.get('harp_output_dir', '?')}")
    print(f"  started {_when(job.start_time)}, ended {_when(job.end_time)}")
    print(f"  entrypoint: {job.entrypoint}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harp jobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=None, help="the dashboard's URL (default: $RAY_ADDRESS)")
    sub = parser.add_subparsers(dest="action", required=True)
    for name, help_ in (("list", "every job on the cluster"), ("status", "one job's status"), ("logs", "one job's driver output"),
                        ("stop", "stop one job")):
        one = sub.add_parser(name, help=help_)
        if name != "list":
            one.add_argument("job_id")
        one.add_argument("--address", default=argparse.SUPPRESS, help="the dashboard's URL (default: $RAY_ADDRESS)")
        if name == "logs":
            one.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    args = parser.parse_args(argv)

    jobs = connect(args.address)
    if args.action == "list":
        return _list(jobs)
    if args.action == "status":
        return _status(jobs, args.job_id)
    if args.action == "stop":
        was_running = jobs.stop(args.job_id)
        print(f"job {args.job_id}: {'stop requested' if was_running else 'was not running'} ({jobs.info(args.job_id).status})")
        return 0
    if args.follow:
        status = jobs.follow(args.job_id, sys.stdout)
        print(f"\njob {args.job_id}: {status}")
        return 0 if status == "SUCCEEDED" else 1
    sys.stdout.write(jobs.logs(args.job_id))
    return 0
