"""``harp serve`` end to end: the real command in a subprocess (a private Ray, Serve's proxy on
127.0.0.1), real HTTP requests with synthetic videos, bad and oversized uploads, concurrent
requests that get batched, and the upload page driven in headless Chromium."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cluster.servers import free_port
from harp.serve.predict import Predictor

from .conftest import synthetic_videos

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LIMIT_MB, LIMIT_S = 1.0, 3.0


def post(url: str, body: bytes, *, content_type: str = "video/mp4", timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """5 s of synthetic video (60 frames at 12 fps): over the service's 3 s limit, under its size limit."""
    from harp.data.synthetic import render_clip, write_mp4

    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_mp4(path, render_clip("move_left", np.random.default_rng(3), 64, 60), fps=12)
    return path


@contextlib.contextmanager
def running(model: Path, log: Path, *options: str, interrupts: int = 1):
    """`harp serve` as a user starts it; stopped with SIGINT (Ctrl-C; ``interrupts`` times, half a
    second apart, as an impatient user does) at the end, which must exit 0 and leave nothing
    listening on its port."""
    port = free_port()
    command = [sys.executable, "-m", "harp.cli", "serve", "--model", str(model), "--port", str(port), *options]
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
        reader.start()
        deadline = time.time() + 300
        while not any(line.startswith("harp serve: http://") for line in lines):
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"harp serve did not start (exit {process.poll()}): {log.read_text()[-3000:]}")
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/"
        assert lines[0].startswith(f"harp serve: {url} ")
        try:
            yield url
        finally:
            for i in range(interrupts):
                time.sleep(0.5 if i else 0)
                process.send_signal(signal.SIGINT)
            try:
                code = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
    assert code == 0, log.read_text()[-3000:]
    assert "harp serve: stopped" in log.read_text()
    with socket.socket() as sock:  # nothing listens on the port any more: Serve's proxy went down with the service
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


@pytest.fixture(scope="module")
def service(best_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "stderr.txt"
    with running(best_dir, log, "--max-upload-mb", str(LIMIT_MB), "--max-duration-s", str(LIMIT_S), "--max-batch", "4", "--batch-wait-ms", "250") as url:
        yield url


def test_predict_endpoint_answers_what_predict_does(service, best_dir, synthetic_root):
    info = get_json(service + "model")
    assert info["family"] == "cnn3d_attention" and len(info["classes"]) == 4 and info["max_duration_s"] == LIMIT_S
    offline = Predictor(best_dir, device="cpu")
    for video in synthetic_videos(Path(synthetic_root)):
        status, answer = post(service + f"predict?filename={video.name}", video.read_bytes())
        assert status == 200, answer
        expected = offline.predict(video)
        assert answer["video"] == video.name and answer["frames"] == expected.video.frames
        assert [item["label"] for item in answer["top"]] == [label for label, _ in expected.top]
        assert [item["probability"] for item in answer["top"]] == pytest.approx([p for _, p in expected.top], abs=1e-5)
        assert "frames_png" not in answer


def test_bad_uploads_get_one_clear_error(service, bad_files, long_video):
    for name in ("text", "noise", "truncated"):
        status, answer = post(service + f"predict?filename={bad_files[name].name}", bad_files[name].read_bytes())
        assert status == 422 and list(answer) == ["error"]
        assert answer["error"].startswith(f"{bad_files[name].name}: not a readable video (") and "harp-upload" not in answer["error"]
    status, answer = post(service + "predict", b"\0" * int(1.5 * LIMIT_MB * 2**20))
    assert status == 413 and answer["error"] == "the upload is 1.5 MiB; the limit is 1 MiB"
    status, answer = post(service + "predict?filename=long.mp4", long_video.read_bytes())
    assert status == 413 and answer["error"] == "long.mp4: the video lasts 5.0 s, longer than the 3 s allowed; trim it"
    status, answer = post(service + "predict", b"")
    assert status == 400 and "has no body" in answer["error"]
    status, answer = post(service + "predict", b"--x\r\n\r\n--x--", content_type="multipart/form-data; boundary=x")
    assert status == 415 and "not a form" in answer["error"]


def test_concurrent_requests_are_batched_and_none_dropped(service, synthetic_root):
    videos = synthetic_videos(Path(synthetic_root)) * 3
    before = get_json(service + "stats")["batch_sizes"]
    with ThreadPoolExecutor(len(videos)) as pool:
        answers = list(pool.map(lambda v: post(service + f"predict?filename={v.name}", v.read_bytes()), videos))
    assert [status for status, _ in answers] == [200] * len(videos)
    assert [a["video"] for _, a in answers] == [v.name for v in videos]
    after = get_json(service + "stats")["batch_sizes"]
    new = {int(size): count - before.get(size, 0) for size, count in after.items() if count > before.get(size, 0)}
    assert sum(size * count for size, count in new.items()) == len(videos)  # every request scored exactly once
    assert max(new) > 1 and max(new) <= 4, new  # merged, never past --max-batch


def test_explain_pictures_come_back(service, synthetic_root):
    video = synthetic_videos(Path(synthetic_root))[1]
    status, answer = post(service + "predict?explain=1&filename=x.mp4", video.read_bytes())
    assert status == 200 and answer["explanation_method"] == "Grad-CAM on conv"
    frames = Image.open(io.BytesIO(base64.b64decode(answer["frames_png"])))
    strip = Image.open(io.BytesIO(base64.b64decode(answer["explanation_png"])))
    assert frames.format == strip.format == "PNG"
    assert frames.width == strip.width == 8 * 128 + 9 * 4 and strip.height > 2 * frames.height - 40


def test_listens_on_loopback_only(service):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outward interface
            address = probe.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback address to try")
    port = int(service.rstrip("/").rsplit(":", 1)[1])
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(5)
        sock.connect((address, port))


def test_upload_page_in_headless_chromium(service, synthetic_root, bad_files, tmp_path):
    from playwright.sync_api import sync_playwright

    video = synthetic_videos(Path(synthetic_root))[2]
    screenshot = tmp_path / "page.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1100})
            page.goto(service, wait_until="load")
            assert "cnn3d_attention (tiny), 4 classes" in page.inner_text("#model")
            page.set_input_files("#video", str(bad_files["text"]))
            page.click("#submit")
            page.wait_for_selector("#error:not([hidden])", timeout=120_000)
            assert page.inner_text("#error").startswith("notes.txt: not a readable video")
            page.set_input_files("#video", str(video))
            page.click("#submit")
            page.wait_for_selector("#results tbody tr", timeout=120_000)
            page.wait_for_function("document.getElementById('explanation').naturalWidth > 0", timeout=60_000)
            rows = page.locator("#results tbody tr")
            assert rows.count() == 4 and page.is_hidden("#error")
            first = rows.nth(0).inner_text().split()
            assert first[0] == "1" and first[-1] == "%"
            assert page.evaluate("document.getElementById('frames').naturalWidth") == 8 * 128 + 9 * 4
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    image = np.asarray(Image.open(screenshot).convert("RGB"))
    assert screenshot.stat().st_size > 10_000 and image.shape[0] > 600 and image.std() > 10
    if os.environ.get("HARP_TEST_ARTIFACTS"):  # for a person to look at
        shutil.copyfile(screenshot, Path(os.environ["HARP_TEST_ARTIFACTS"]) / "serve_page.png")


def test_replicas_share_the_requests(best_dir, synthetic_root, tmp_path):
    """--replicas 2: two processes answer, each request once (and a second Ctrl-C during the
    shutdown does not cut it short)."""
    videos = synthetic_videos(Path(synthetic_root))
    with running(best_dir, tmp_path / "stderr.txt", "--replicas", "2", interrupts=2) as url:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda v: post(url + f"predict?filename={v.name}", v.read_bytes()), videos * 2))
        assert [status for status, _ in answers] == [200] * len(videos) * 2
        seen: dict[int, int] = {}
        for _ in range(40):
            stats = get_json(url + "stats")
            seen[stats["replica"]] = stats["requests"].get("ok", 0)
            if len(seen) == 2:
                break
        assert len(seen) == 2 and sum(seen.values()) <= len(videos) * 2
