"""A Ray Serve app that scores uploaded videos and images, as ``rayjobs/detect.py`` scores files.

    serve run rayjobs.serve:app                                  # the newest distilled student
    serve run rayjobs.serve:app model=models:/sffb-student@champion frames=16
    curl -F file=@clip.mp4 127.0.0.1:8000/detect                  # a form upload
    curl --data-binary @clip.mp4 '127.0.0.1:8000/detect?filename=clip.mp4'   # or the raw body

``POST /detect`` takes the file as a multipart form upload (its first file field) or as the
request body (``filename`` then says what it is: its suffix tells an image from a video) and
answers the record ``detect.py`` writes for a file; a file
that cannot be scored gets a 400 with the reason, and the server keeps serving. ``GET /healthz``
says which model is loaded. Two deployments: the ingress cuts each upload into face crops (the
training data's frame sampler, detector and crop size, read from the checkpoint), and the model
deployment scores frames with ``@serve.batch``, so frames of concurrent requests share batches.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse

from data_prep import storage
from data_prep.image_columns import to_model_size
from data_prep.media import file_faces
from data_prep.video import VideoError
from rayjobs.lib.checkpoints import load_state, model_from_state
from rayjobs.lib.detection_results import file_record
from rayjobs.lib.scoring import fake_scores, model_device
from rayjobs.lib.trained_model import load_trained_model, resolve_model

MAX_BATCH = 64  # frames per model call
BATCH_WAIT_S = 0.02  # how long a partial batch waits for frames of other requests
MAX_UPLOAD_BYTES = 512 * 2**20


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
class FrameModel:
    """The SFFB on the replica's GPU when it has one; frames batched across requests."""

    def __init__(self, checkpoint: str) -> None:
        self.device = model_device()
        self.model = model_from_state(load_state(checkpoint), self.device)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def score(self, images: list[np.ndarray]) -> list[float]:
        return fake_scores(self.model, np.stack(images), self.device).tolist()


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
class Detector:
    """Ingress: upload -> face crops -> frame scores -> the file's record."""

    def __init__(self, frames: DeploymentHandle, checkpoint: str, frames_per_video: int) -> None:
        self.frames = frames
        self.trained = load_trained_model(checkpoint)
        crops = self.trained.crops
        self.crops = replace(crops, frames_per_video=frames_per_video or crops.frames_per_video)
        self.size = self.trained.config.model.image_size
        calibration = self.trained.calibration
        self.calibrate = calibration.apply if calibration else (lambda scores: scores)

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method == "GET" and request.url.path.rstrip("/").endswith("/healthz"):
            return JSONResponse({"status": "ok", "model": self.trained.checkpoint,
                                 "level": self.trained.level})  # fmt: skip
        if request.method != "POST" or not request.url.path.rstrip("/").endswith("/detect"):
            return JSONResponse({"error": "use POST /detect or GET /healthz"}, status_code=404)
        try:
            name, body = await uploaded_file(request)
        except ValueError as error:
            status = 413 if isinstance(error, UploadTooLarge) else 400
            return JSONResponse({"path": None, "error": str(error)}, status_code=status)
        if not body:
            return JSONResponse({"path": name, "error": "empty upload"}, status_code=400)
        if len(body) > MAX_UPLOAD_BYTES:
            return JSONResponse({"path": name, "error": "upload too large"}, status_code=413)
        try:
            faces = await asyncio.to_thread(self._faces, name, body)
        except VideoError as error:
            reason = str(error).split(": ", 1)[-1]
            return JSONResponse({"path": name, "error": reason}, status_code=400)
        indices = sorted(faces.crops)
        images = [np.ascontiguousarray(to_model_size(faces.crops[i], self.size).transpose(2, 0, 1))
                  for i in indices]  # fmt: skip
        scores = await asyncio.gather(*(self.frames.score.remote(image) for image in images))
        missing = set(faces.without_face)
        frames = [(i, s, i in missing) for i, s in zip(indices, scores, strict=True)]
        record = file_record(name, frames, None, self.calibrate, self.trained.threshold)
        return JSONResponse(record)

    def _faces(self, name: str, body: bytes):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / name
            path.write_bytes(body)
            return file_faces(str(path), self.crops).faces


class UploadTooLarge(ValueError):
    """An upload over MAX_UPLOAD_BYTES (answered 413)."""


async def uploaded_file(request: Request) -> tuple[str, bytes]:
    """(file name, bytes) of the upload: a multipart form's first file (``curl -F``), else the
    raw body named by ``?filename=``. A form without a file is a ValueError."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            async with request.form(max_files=1, max_fields=16) as form:
                upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
                if upload is None:
                    raise ValueError("the multipart form holds no file")
                if (upload.size or 0) > MAX_UPLOAD_BYTES:
                    raise UploadTooLarge(f"upload too large (over {MAX_UPLOAD_BYTES} bytes)")
                return _safe_name(upload.filename), await upload.read()
        except (MultiPartException, HTTPException) as error:  # a malformed form
            detail = getattr(error, "detail", error)
            raise ValueError(f"unreadable multipart form: {detail}") from None
    return _safe_name(request.query_params.get("filename")), await request.body()


def _safe_name(name: str | None) -> str:
    """The upload's base name (never a path), ``upload.mp4`` when it has none."""
    return Path(name or "").name or "upload.mp4"


def app(args: dict[str, str]) -> serve.Application:
    """``serve run rayjobs.serve:app [model=M] [frames=N]``; M as ``detect.py --model`` takes."""
    checkpoint = storage.normalise(resolve_model(args.get("model")))
    frames = FrameModel.bind(checkpoint)
    return Detector.bind(frames, checkpoint, int(args.get("frames", 0)))
