"""The HTTP service: a Ray Serve deployment with a FastAPI ingress.

Routes (``POST`` bodies are the video file's bytes, e.g. ``curl --data-binary @clip.mp4``):

- ``GET /``: the upload page (video in; the sampled frames, the top-5 and the explanation strip out);
- ``POST /predict[?explain=1][&filename=NAME]``: ``{"video", "top": [{"label", "probability"}] (5),
  "frames", "duration_s", "model"}``, plus ``frames_png`` and ``explanation_png`` (base64) with
  ``explain=1``;
- ``GET /model``: what is served (family, classes, protocol, limits); ``GET /stats``: the answering
  replica's requests and the sizes of the batches its model ran (``@serve.batch`` merges concurrent requests' clips into
  one forward pass).

Every refusal is one JSON line ``{"error": ...}``: 413 for an upload over the size or duration
limit, 415 for a multipart form, 422 for a file that is not a readable video, 400 for an empty body.

(No ``from __future__ import annotations`` here: FastAPI reads the route signatures' types at
run time, through Serve's ingress wrapper.)
"""

import asyncio
import base64
import collections
import dataclasses
import html
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve

from harp.serve.predict import Prediction, Predictor, VideoError
from harp.serve.report import explain_prediction
from harp.serve.strip import png_bytes


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """What one deployment serves and how: the model, the upload limits and the batching."""

    model: str
    max_upload_mb: float = 50.0
    max_duration_s: float = 120.0
    max_batch_size: int = 8
    batch_wait_s: float = 0.02
    device: str | None = None  # None: a GPU when the replica has one

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class UploadRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _refusal(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_upload(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes, declared or not."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/"):
        raise UploadRefused(415, "send the video file itself as the request body (curl --data-binary @clip.mp4 URL/predict), not a form")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise UploadRefused(413, f"the upload is {int(declared) / 2**20:.1f} MiB; the limit is {limit / 2**20:g} MiB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadRefused(413, f"the upload is over the {limit / 2**20:g} MiB limit")
        chunks.append(chunk)
    if not size:
        raise UploadRefused(400, "the request has no body; send the video file as the body (curl --data-binary @clip.mp4 URL/predict)")
    return b"".join(chunks)


def _safe_name(name: str | None) -> str:
    base = Path(name or "upload").name.strip() or "upload"
    return "".join(ch if ch.isalnum() or ch in "._- " else "_" for ch in base)[:120]


api = FastAPI(title="harp", docs_url=None, redoc_url=None, openapi_url=None)


@serve.deployment(name="harp", max_ongoing_requests=32)
@serve.ingress(api)
class HarpService:
    """One replica: a loaded model, reading uploads in threads and scoring them in batches."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.predictor = Predictor(settings.model, device=settings.device)
        batching: Any = self.scores  # Serve's batch wrapper, with its setters
        batching.set_max_batch_size(settings.max_batch_size)
        batching.set_batch_wait_timeout_s(settings.batch_wait_s)
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self.requests: collections.Counter[str] = collections.Counter()
        self.page = self._render_page()

    def _render_page(self) -> str:
        card, protocol = self.predictor.card, self.predictor.protocol
        model_line = (
            f"{card.family} ({card.size}), {card.num_classes} classes, {card.frames} frames of {card.frame_size} px; "
            f"{protocol.describe()}; on {self.predictor.device}"
        )
        limits = f"up to {self.settings.max_upload_mb:g} MB and {self.settings.max_duration_s:g} s"
        text = resources.files("harp.serve").joinpath("page.html").read_text(encoding="utf-8")
        return text.replace("$MODEL_LINE", html.escape(model_line)).replace("$LIMITS_LINE", html.escape(limits))

    @api.get("/", response_class=HTMLResponse)
    async def page_route(self) -> HTMLResponse:
        return HTMLResponse(self.page)

    @api.get("/model")
    async def model_route(self) -> dict[str, Any]:
        card = self.predictor.card
        return {
            "family": card.family,
            "size": card.size,
            "classes": list(card.class_names),
            "frames": card.frames,
            "frame_size": card.frame_size,
            "protocol": self.predictor.protocol.describe(),
            "device": str(self.predictor.device),
            "max_upload_mb": self.settings.max_upload_mb,
            "max_duration_s": self.settings.max_duration_s,
            "max_batch_size": self.settings.max_batch_size,
        }

    @api.get("/stats")
    async def stats_route(self) -> dict[str, Any]:
        return {
            "replica": os.getpid(),  # this replica's process: stats are per replica
            "requests": dict(self.requests),
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
        }

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def scores(self, views: list[Any]) -> list[Any]:
        """Concurrent requests' views in one forward pass (in a thread: the event loop keeps serving)."""
        self.batch_sizes[len(views)] += 1
        return await asyncio.to_thread(self.predictor.probabilities, views)

    @api.post("/predict")
    async def predict_route(self, request: Request, explain: bool = False, filename: str | None = None) -> JSONResponse:
        try:
            body = await read_upload(request, self.settings.max_upload_bytes)
        except UploadRefused as refused:
            self.requests[f"refused_{refused.status}"] += 1
            return _refusal(refused.status, str(refused))
        name = _safe_name(filename)
        with tempfile.TemporaryDirectory(prefix="harp-upload-") as folder:
            path = Path(folder) / name
            path.write_bytes(body)
            try:
                video = await asyncio.to_thread(self.predictor.read, path, max_duration_s=self.settings.max_duration_s)
            except VideoError as exc:
                status = 413 if exc.too_long else 422
                self.requests[f"refused_{status}"] += 1
                return _refusal(status, str(exc))
            probabilities = await self.scores(video.views)
            prediction = Prediction(path, probabilities, self.predictor.top(probabilities), video)
            answer = prediction.to_json()
            answer["video"] = name
            answer["model"] = {"family": self.predictor.card.family, "protocol": self.predictor.protocol.describe()}
            if explain:
                answer.update(await asyncio.to_thread(self._pictures, prediction))
        self.requests["ok"] += 1
        return JSONResponse(answer)

    def _pictures(self, prediction: Prediction) -> dict[str, str]:
        explanation = explain_prediction(self.predictor, prediction)
        return {
            "frames_png": base64.b64encode(png_bytes(explanation.frames)).decode("ascii"),
            "explanation_png": base64.b64encode(png_bytes(explanation.strip)).decode("ascii"),
            "explanation_method": explanation.heatmap.method,
        }


def build_application(settings: ServiceSettings, *, replicas: int = 1, gpus_per_replica: float = 0.0, cpus_per_replica: float = 1.0):
    """The bound Serve application for ``serve.run``."""
    options: dict[str, Any] = {"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica}
    if settings.device is None and not gpus_per_replica:
        settings = dataclasses.replace(settings, device="cpu")
    service: Any = HarpService  # a Serve Deployment once decorated
    deployment = service.options(num_replicas=replicas, ray_actor_options=options, max_ongoing_requests=max(32, 4 * settings.max_batch_size))
    return deployment.bind(settings)


__all__ = ["HarpService", "ServiceSettings", "UploadRefused", "build_application", "read_upload"]
