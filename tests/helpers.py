"""Small configurations the tests share."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from data_prep.prepare import PrepareConfig
from data_prep.synthetic import SyntheticConfig
from rayjobs.lib.config import JobConfig, load_job_config

#: Small enough for CI, big enough for every split and method: 6 reals, 24 fakes, 20 frames.
TEST_SYNTHETIC = SyntheticConfig(reals=6, frames=20)
TEST_FRAMES = 8
#: The MLflow experiment of the tiny training runs.
EXPERIMENT = "sffb-tests"
#: The student whose teacher the session trains (a named student's teacher has its own name).
STUDENT_NAME = "my-student"


def small_prepare_config(root: Path, output: Path, **overrides) -> PrepareConfig:
    """Tiny crops and few frames: the pipeline is the same at 256 and 50."""
    options = dict(frames_per_video=TEST_FRAMES, crop_size=64, shard_target_mb=1.0)
    options.update(overrides)
    return PrepareConfig(dataset="ffpp", root=str(root), output=str(output), **options)


def tiny_job(shards: Path, home: Path, epochs: int = 2, overrides=(), **tracking) -> JobConfig:
    """The cpu-demo job shrunk to seconds (timm's test backbone, 64x64 crops), stored in
    ``home`` (checkpoints under ``runs/``, MLflow in ``mlflow.db``)."""
    job = load_job_config(
        "cpu-demo",
        overrides=[
            "model.backbone=test_resnet",
            "model.image_size=64",
            "data.methods=[]",
            "data.batch_size=8",
            "optim.lr=1e-3",
            f"optim.epochs={epochs}",
            # teachers train `epochs` on the student's schedule, not cpu-demo's 6 on cosine
            "optim.teacher_epochs=null",
            "optim.teacher_schedule=null",
            "scaling.num_workers=2",
            # fp32 whatever the CPU: tests compare the workers' scores with ones made outside
            # Ray in fp32 (bf16 is tested in test_training_step.py)
            "scaling.cpu_bf16=false",
            *overrides,
        ],
    )
    settings = dict(
        experiment=EXPERIMENT,
        storage_path=str(home / "runs"),
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        system_metrics_interval_s=1.0,  # a few samples even in a short run
    )
    settings.update(tracking)
    return replace(
        job, data=replace(job.data, shards=str(shards)), tracking=replace(job.tracking, **settings)
    )


def crop_pixels(data: bytes, column: str) -> np.ndarray:
    """A crop stored in a shard, as RGB HWC, read without data_prep's decoder (an independent
    reference): ``png_*`` columns hold PNGs, ``rgb_*`` ones RGB planes."""
    if column.startswith("png_"):
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    side = round((len(data) // 3) ** 0.5)
    return np.frombuffer(data, np.uint8).reshape(3, side, side).transpose(1, 2, 0)


def random_checkpoint(folder: Path, seed: int) -> str:
    """A tiny random-init SFFB saved as a checkpoint: seeds give models that rank the test
    frames differently (scoring code needs no trained model)."""
    import torch

    from rayjobs.lib.checkpoints import save_state
    from sffb.model import SFFB

    job = load_job_config(
        "cpu-demo", overrides=["model.backbone=test_resnet", "model.image_size=64"]
    )
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    save_state(folder, model=SFFB(job.model).state_dict(), config=job, history=[], epoch=0)
    return str(folder)
