"""`harp status` (and `harp report`) from another process while a real `harp sweep` runs, then on
the finished sweep: a study sweep (one cell per family), so the finished report has a per-cell
table. Nothing here talks to the sweep: the sweep directory is all they read."""
from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import psutil
import pytest

from harp.report import build_report, read_snapshot
from harp.report.links import live_ray_dashboard

from .conftest import harp, space_dict, wait_for, write_space

pytestmark = pytest.mark.slow


def _status(sweep_dir: Path, *args: str) -> str:
    out = subprocess.run(harp("status", str(sweep_dir), *args), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _trial_reported(sweep_dir: Path) -> bool:
    return any(p.stat().st_size for p in (sweep_dir / "tune").glob("harp_trial_*/progress.csv"))


@pytest.fixture(scope="module")
def running(report_data, tmp_path_factory):
    """A study sweep started as `harp sweep` in its own process, and what was seen while it ran."""
    tmp = tmp_path_factory.mktemp("running")
    params = {"model.family": {"type": "grid", "values": ["cnn3d_attention", "tsm"]}}
    # grace 4 of 4 epochs: ASHA stops neither family, so the finished study has both cells
    sweep_space = space_dict(report_data, tmp / "runs", "live", params=params, epochs=4, group_by=["model.family"], grace_period=4)
    # one clip per step and every training clip an epoch: epochs of about a second rather than a
    # fifth, so the first trial is still running a moment after its first epoch is on disk
    sweep_space["config"].update({"train.batch_size": 1, "train.max_steps_per_epoch": 64})
    space = write_space(tmp / "space.yaml", sweep_space)
    sweep_dir = tmp / "runs" / "live"
    log = tmp / "sweep.log"
    with open(log, "w") as handle:
        sweep = subprocess.Popen(harp("sweep", "--space", str(space), "--quiet"), stdout=handle, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _trial_reported(sweep_dir), sweep, timeout=600, what="the first trial's first epoch", poll=0.02)
        # The sweep's driver (Tune's controller, which writes every trial's state and results to the
        # sweep directory) is paused while we look, so the first trial is still RUNNING when we do,
        # however fast its epochs are. Pausing the trial's own process instead raced with a trial
        # whose last epochs ended (and whose process Ray killed) before we found it.
        driver = psutil.Process(sweep.pid)
        driver.suspend()
        try:
            watch = subprocess.Popen(harp("status", str(sweep_dir), "--watch", "1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            seen = {"status": _status(sweep_dir), "report": build_report(sweep_dir, tmp / "live-report"), "snapshot": read_snapshot(sweep_dir)}
            seen["dashboard"] = live_ray_dashboard(seen["snapshot"])
            if seen["dashboard"]:
                with urllib.request.urlopen(seen["dashboard"], timeout=30) as response:
                    seen["dashboard_status"] = response.status
        finally:
            driver.resume()
        assert sweep.wait(timeout=900) == 0, log.read_text()[-3000:]
        watched, _ = watch.communicate(timeout=120)
        seen["watch"] = watched
        seen["watch_code"] = watch.returncode
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    seen["sweep_pid"] = sweep.pid
    return sweep_dir, seen


def test_status_while_the_sweep_runs(running):
    sweep_dir, seen = running
    text = seen["status"]
    assert f"running (pid {seen['sweep_pid']} on " in text, text
    assert re.search(r"trials: .*1 RUNNING", text), text
    assert re.search(r"epochs: \d+ of 8 budgeted", text), text  # 2 trials x 4 epochs
    assert "ETA: at most" in text and "best so far: val_loss=" in text
    assert "model.family = cnn3d_attention" in text  # the best so far is the first (only) trial's


def test_report_while_the_sweep_runs(running):
    _, seen = running
    report = seen["report"]
    page = report.html.read_text()
    assert "running (pid" in page
    assert {"optimisation_history", "learning_curves", "parallel_coordinates"} <= set(report.figures)
    assert "confusion" in page and "no exported model yet" in page  # export comes at the end
    # the sweep's private Ray dashboard is found from the sweep directory's lock and answers
    assert seen["dashboard"] and seen["dashboard"].startswith("http://127.0.0.1:")
    assert seen["dashboard_status"] == 200
    assert seen["dashboard"] in page


def test_watch_follows_the_sweep_to_its_end(running):
    _, seen = running
    frames = seen["watch"].count("refreshing every 1 s")
    assert seen["watch_code"] == 0 and frames >= 2, seen["watch"][-2000:]
    assert seen["watch"].rstrip().endswith("the sweep is not running: done watching")


def test_status_and_report_of_the_finished_study(running, tmp_path):
    sweep_dir, _ = running
    text = _status(sweep_dir)
    assert "not running" in text and "ETA" not in text
    assert re.search(r"trials: 2 COMPLETE", text), text
    assert "epochs: 8 of 8 budgeted (100%)" in text
    report = build_report(sweep_dir, tmp_path / "report")
    assert sorted(n for n in report.figures if n.startswith("confusion_")) == ["confusion_0", "confusion_1"]  # one per cell
    page = report.html.read_text()
    table = (sweep_dir / "best" / "table.csv").read_text().splitlines()
    assert len(table) == 3  # header + a row per family
    section = page.split("<section id=\"cells\">")[1].split("</section>")[0]
    for family in ("cnn3d_attention", "tsm"):
        assert family in section
    assert "table.md" in section
    missing = json.loads((report.html.parent / "report.json").read_text())["missing"]
    assert list(missing) == ["param_importances"] and "needs at least 4" in missing["param_importances"]  # 2 trials
