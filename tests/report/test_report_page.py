"""`harp report` on a finished sweep, read as a person would: in a real headless Chromium with the
network cut off, the page loads with no console error, every section is there, every figure is a
real image with something drawn in it, and the numbers on the page are the sweep's."""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harp.report import build_report, read_snapshot
from harp.report.page import SECTIONS

from .browser import chromium_page

pytestmark = pytest.mark.slow

FIGURES = ("optimisation_history", "parallel_coordinates", "param_importances", "learning_curves", "accuracy_vs_gflops", "confusion_0")


def _drawn(png: bytes) -> float:
    """The spread of an image's pixel values: a blank or single-colour image has ~0."""
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32).std())


def _keep(path: Path, name: str) -> None:
    if os.environ.get("HARP_TEST_ARTIFACTS"):  # for a person to look at
        shutil.copyfile(path, Path(os.environ["HARP_TEST_ARTIFACTS"]) / name)


@pytest.fixture(scope="module")
def report(finished_sweep, tmp_path_factory):
    return build_report(finished_sweep, tmp_path_factory.mktemp("report"))


def test_every_figure_is_written_as_a_png(report):
    assert report.missing == {}, report.missing
    assert sorted(report.figures) == sorted(FIGURES)
    for name, path in report.figures.items():
        png = path.read_bytes()
        assert png.startswith(b"\x89PNG") and _drawn(png) > 5, name
    page = report.html.read_text()
    assert "http://" not in page.split("<section id=\"open\"")[0] and "https://" not in page.split("<section id=\"open\"")[0], \
        "nothing before the links section may point at the network"
    assert "<script" not in page


def test_the_page_in_headless_chromium(report, tmp_path):
    requests: list[str] = []
    errors: list[str] = []
    with chromium_page() as page:
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda request: requests.append(request.url))
        page.route("http*://**", lambda route: route.abort())  # offline: any network request would fail
        page.goto(report.html.as_uri(), wait_until="load")
        assert errors == [], errors
        assert [r for r in requests if not r.startswith(("file:", "data:"))] == []
        for key, title in SECTIONS.items():
            section = page.locator(f"section#{key}")
            assert section.count() == 1, key
            assert section.locator("h2").inner_text() == title
            assert len(section.inner_text().strip()) > len(title) + 20, f"section {key} is empty"
        for name in FIGURES:
            image = page.locator(f"figure[data-figure='{name}'] img")
            assert image.count() == 1, name
            width, height = page.evaluate("(img) => [img.naturalWidth, img.naturalHeight]", image.element_handle())
            assert width > 300 and height > 200, (name, width, height)
            assert _drawn(image.screenshot()) > 5, f"{name} looks blank in the browser"
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
    full = np.asarray(Image.open(shot).convert("RGB"))
    assert full.shape[0] > 3000 and full.std() > 10
    _keep(shot, "report_page.png")


def test_the_page_says_what_the_sweep_found(report, finished_sweep):
    snap = read_snapshot(finished_sweep)
    frame = pd.read_parquet(finished_sweep / "trials.parquet")
    metrics = json.loads((finished_sweep / "best" / "metrics.json").read_text())
    with chromium_page() as page:
        page.goto(report.html.as_uri(), wait_until="load")
        overview = page.locator("section#overview").inner_text()
        counts = frame["optuna_state"].value_counts().to_dict()
        for state, count in counts.items():
            assert f"{state} {count}" in overview, (state, count, overview)
        assert metrics["trial_id"] in overview  # the best trial so far is the exported one
        trials = page.locator("section#trials tbody tr")
        assert trials.count() == len(frame) + len(snap.failures())  # trials table + the failures table
        failed = frame[frame["optuna_state"] == "FAIL"].iloc[0]
        failures = page.locator("section#trials").inner_text()
        assert failed["trial_id"] in failures and "pretrained" in failures.lower()
        data = page.locator("section#data-quality").inner_text()
        assert "1 video(s) could not be decoded" in data and "broken_g99_c01.mp4" in data
        best = page.locator("section#best-config").inner_text()
        for key, value in metrics["params"].items():
            assert key in best and str(value) in best
        assert "not a study sweep" in page.locator("section#cells").inner_text()
        links = page.locator("section#open").inner_text()
        assert f"optuna-dashboard --host 127.0.0.1 --port 8080 sqlite:///{(finished_sweep / 'optuna.db').resolve()}" in links
        assert "W&B was disabled" in links and "only while a sweep runs" in links


def test_a_sweep_with_no_trials_yet_still_gets_a_page(tmp_path):
    from harp.config import load_config
    from harp.tune.space import parse_space
    from harp.tune.sweep_dir import SweepPaths, write_sweep_files

    cfg = load_config([f"sweep.output_dir={tmp_path}", "sweep.name=empty"])
    space = parse_space({"params": {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}}, name="empty")
    paths = SweepPaths(tmp_path / "empty")
    write_sweep_files(cfg, space, paths, {"params": {}})
    report = build_report(paths.root)
    assert report.figures == {} and set(report.missing) >= {"optimisation_history", "learning_curves", "param_importances"}
    page = report.html.read_text()
    for key in SECTIONS:
        assert f"<section id=\"{key}\">" in page
    assert "no trials yet" in page
