"""How to open a sweep in the dashboards that already exist: optuna-dashboard on its study, the
W&B project (or the offline runs to sync into it), and Ray's dashboard while the sweep runs.

The Ray dashboard of a local sweep lives in the sweep's private Ray session (``harp.tune.ray_session``)
and only while it runs: the sweep's lock names its driver's pid, the session directory that driver
recorded (``harp-session.json``) holds Ray's logs, and Ray's dashboard log says where it listens.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from harp.report.snapshot import SweepSnapshot
from harp.tune.leftovers import SESSION_FILE, TEMP_PREFIX, TEMP_ROOT
from harp.tune.study import journal_file
from harp.tune.wandb_mode import resolve_mode, sync_hint

_DASHBOARD_ADDRESS = re.compile(r"Dashboard head http address: (\S+)")


@dataclass(frozen=True)
class HowToOpen:
    title: str
    lines: list[str]  # prose lines
    commands: list[str]  # shell commands to copy
    url: str | None = None


def live_ray_dashboard(snap: SweepSnapshot, root: Path = TEMP_ROOT) -> str | None:
    """``http://127.0.0.1:PORT`` of the running sweep's Ray dashboard, when it runs on this host."""
    pid = snap.activity.holder.get("pid") if snap.activity.running else None
    if pid is None:
        return None
    for session in sorted(root.glob(f"{TEMP_PREFIX}*")):
        try:
            if json.loads((session / SESSION_FILE).read_text()).get("driver_pid") != pid:
                continue
            for log in session.glob("ray/session_*/logs/dashboard.log"):
                found = _DASHBOARD_ADDRESS.search(log.read_text(errors="replace"))
                if found:
                    return f"http://{found.group(1)}"
        except (OSError, ValueError):
            continue
    return None


def how_to_open(snap: SweepSnapshot) -> list[HowToOpen]:
    cfg, paths = snap.cfg, snap.paths
    storage = cfg.sweep.optuna_storage or f"sqlite:///{paths.optuna_db.resolve()}"
    journal = journal_file(storage)
    # optuna-dashboard takes a journal's file as it is; a database URL may hold a password
    shown_storage = journal or (storage if not cfg.sweep.optuna_storage else "<sweep.optuna_storage URL>")
    out = [
        HowToOpen(
            "Optuna dashboard",
            [f"The study '{snap.name}' ({'in the sweep directory' if not cfg.sweep.optuna_storage else 'in sweep.optuna_storage'}): "
             "history, parallel coordinates, importances, every trial's intermediate values. It opens on http://127.0.0.1:8080."],
            ["pip install optuna-dashboard", f"optuna-dashboard --host 127.0.0.1 --port 8080 {shown_storage}"],
            "http://127.0.0.1:8080",
        )
    ]
    mode = resolve_mode(cfg.wandb.mode)
    offline = sorted(paths.wandb.glob("offline-run-*")) if paths.wandb.is_dir() else []
    project = f"{cfg.wandb.entity + '/' if cfg.wandb.entity else ''}{cfg.wandb.project}"
    wandb_url = f"https://wandb.ai/{cfg.wandb.entity}/{cfg.wandb.project}/groups/{snap.name}" if cfg.wandb.entity else None
    if mode == "disabled":
        out.append(HowToOpen("Weights & Biases", ["W&B was disabled for this sweep (wandb.mode=disabled)."], []))
    elif offline:
        out.append(HowToOpen(
            "Weights & Biases",
            [f"{len(offline)} offline run folder(s) in {paths.wandb} (one per trial, plus the summary run; a trial resumed after a "
             "driver restart has a second folder, and `wandb sync` uploads both into its one run). Upload them into project "
             f"{project}, group {snap.name}:"],
            [sync_hint(paths.root).split("  (")[0]],
            wandb_url,
        ))
    else:
        out.append(HowToOpen("Weights & Biases", [f"Project {project}, group {snap.name} (runs named <n>-<family>-<trial id>)."], [], wandb_url))
    live = live_ray_dashboard(snap)
    if live:
        out.append(HowToOpen("Ray dashboard", ["The sweep is running on this machine: its private Ray instance's dashboard (jobs, actors, "
                                               "logs of every trial process)."], [], live))
    else:
        out.append(HowToOpen(
            "Ray dashboard",
            ["Ray's dashboard exists only while a sweep runs: a local sweep serves it on 127.0.0.1 (this page, made while the sweep "
             "runs, links it); on a cluster, forward the head node's port 8265."],
            ["ray dashboard cluster.yaml   # a cluster started with `ray up cluster.yaml`"],
        ))
    return out


__all__ = ["HowToOpen", "how_to_open", "live_ray_dashboard"]
