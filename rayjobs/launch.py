"""Build and run one TorchTrainer job (teacher pretraining or student distillation).

Everything that can be wrong with a configuration is checked here, on the driver, before any
worker starts: the backbone and fusion names, the shards and their levels, the teacher
checkpoint. Storage paths are made absolute (Ray resolves relative ones inside a job's working
directory).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import ray
import ray.train
import yaml
from mlflow.tracking import MlflowClient
from ray.train import CheckpointConfig, FailureConfig, RunConfig
from ray.train import ScalingConfig as RayScaling
from ray.train.torch import TorchTrainer

from data_prep.cluster import ensure_ray
from data_prep.defaults import embedded_prepare_config, ensure_embedded_shards, workdir
from rayjobs.checkpoints import STATE_FILE, best_stored_checkpoint
from rayjobs.config import JobConfig
from rayjobs.configtree import flatten, to_dict
from rayjobs.data import DataError, check_levels, paired_dataset
from rayjobs.tracking import (
    EpochLogger,
    file_sha256,
    find_or_create_run,
    git_commit,
    set_tags,
    tracking_uri,
)
from rayjobs.train_loop import SELECTION_METRIC, train_worker

MODES = ("teacher", "student")


class SplitValidationConfig(ray.train.DataConfig):
    """Split ``train`` equally (DDP needs equal steps) and ``val`` unequally (no row dropped)."""

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        training = {k: v for k, v in datasets.items() if k != "val"}
        output = super().configure(training, world_size, worker_handles, worker_node_ids, **kwargs)
        if "val" in datasets:
            for i, part in enumerate(datasets["val"].streaming_split(world_size, equal=False)):
                output[i]["val"] = part
        return output


@dataclass(frozen=True)
class TrainOutcome:
    run_name: str
    mlflow_run_id: str
    best_checkpoint: Path  # folder holding state.pt, chosen by validation AUC
    metrics: dict  # the last epoch's metrics


def resolve_data(job: JobConfig) -> JobConfig:
    """``data.shards`` made absolute; empty means the embedded synthetic shards (made if absent)."""
    if job.data.shards:
        return replace(job, data=replace(job.data, shards=str(Path(job.data.shards).resolve())))
    ensure_embedded_shards(progress=True)
    return replace(job, data=replace(job.data, shards=embedded_prepare_config().output))


def storage_path(job: JobConfig) -> Path:
    return Path(job.tracking.storage_path or workdir() / "runs").resolve()


def default_run_name(job: JobConfig, mode: str) -> str:
    methods = "-".join(job.data.methods) or "all"
    level = job.input_level(mode)
    return f"{mode}-{job.model.backbone}-{job.model.fusion}-{methods}-{level}"


def best_checkpoint_path(storage: Path, run_name: str) -> Path:
    """Where a finished run's best checkpoint is copied: a stable path for the next job."""
    return storage / run_name / "best"


def preflight(job: JobConfig, mode: str, teacher_checkpoint: Path | None) -> None:
    """Refuse bad data or a missing teacher before any worker starts, naming what is wrong.

    Names (backbone, fusion, knowledge) were already checked when the JobConfig was built.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
    for split in ("train", "val"):
        check_levels(Path(job.data.shards), split, job.training_levels(mode))
    has_teacher = (
        teacher_checkpoint is not None and (Path(teacher_checkpoint) / STATE_FILE).is_file()
    )
    if job.uses_teacher(mode) and not has_teacher:
        raise FileNotFoundError(
            f"{teacher_checkpoint}: teacher checkpoint ({STATE_FILE}) not found; "
            "run rayjobs/pretrain_teacher.py first or set tracking.teacher_run"
        )


def _use_gpu(job: JobConfig) -> bool:
    if job.scaling.use_gpu == "auto":
        return ray.cluster_resources().get("GPU", 0) >= 1
    return job.scaling.use_gpu == "yes"


def run_training(
    job: JobConfig,
    mode: str,
    teacher_checkpoint: Path | None = None,
    extra_tags: dict[str, str] | None = None,
    callbacks: tuple = (),
) -> TrainOutcome:
    """Train (or resume) the job's run; return where its best checkpoint is.

    ``callbacks`` are extra Ray Train callbacks (a Tune trial passes ``TuneReportCallback``).
    """
    job = resolve_data(job)
    preflight(job, mode, teacher_checkpoint)
    ensure_ray()
    run_name = job.tracking.run_name or default_run_name(job, mode)
    storage = storage_path(job)
    storage.mkdir(parents=True, exist_ok=True)

    uri = tracking_uri(job.tracking.tracking_uri)
    manifest = Path(job.data.shards) / "manifest.json"
    tags = {
        "sffb.mode": mode,
        "sffb.git_commit": git_commit(),
        "sffb.manifest_sha256": file_sha256(manifest),
        "sffb.storage": str(storage / run_name),
        **(extra_tags or {}),
    }
    params = {**flatten(to_dict(job)), "mode": mode}
    run_id, created = find_or_create_run(uri, job.tracking.experiment, run_name, params, tags)
    client = MlflowClient(uri)
    if created:
        with tempfile.TemporaryDirectory() as directory:
            effective = Path(directory) / "config.yaml"
            effective.write_text(yaml.safe_dump(to_dict(job), sort_keys=False))
            client.log_artifact(run_id, str(effective))

    size = job.model.image_size
    datasets = {
        "train": paired_dataset(job.data, "train", job.training_levels(mode), size, augment=True),
        "val": paired_dataset(job.data, "val", (job.input_level(mode),), size, augment=False),
    }
    use_gpu = _use_gpu(job)
    resources = {"CPU": job.scaling.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "job": to_dict(job),
            "mode": mode,
            "teacher_checkpoint": str(teacher_checkpoint) if job.uses_teacher(mode) else None,
        },
        scaling_config=RayScaling(
            num_workers=job.scaling.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        datasets=datasets,
        dataset_config=SplitValidationConfig(),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=job.scaling.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=2,
                checkpoint_score_attribute=SELECTION_METRIC,
                checkpoint_score_order="max",
            ),
            callbacks=[EpochLogger(uri, run_id), *callbacks],
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    target = publish_best(storage, run_name, uri, run_id, "FINISHED")
    metrics = {k: v for k, v in result.metrics.items() if k != "history"}
    return TrainOutcome(run_name, run_id, target, metrics)


def publish_best(storage: Path, run_name: str, uri: str, run_id: str, status: str) -> Path:
    """Copy the run's best checkpoint (by validation AUC) to ``<run>/best``, attach it to the
    MLflow run and close that run with ``status``; returns the ``best`` folder.

    Works from the run's folder alone, so a sweep can also finish trials that Tune stopped.
    """
    source = best_stored_checkpoint(storage / run_name, SELECTION_METRIC)
    if source is None:
        raise FileNotFoundError(f"{storage / run_name}: the run saved no checkpoint")
    target = best_checkpoint_path(storage, run_name)
    staging = target.with_name("best.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    client = MlflowClient(uri)
    client.log_artifact(run_id, str(target / STATE_FILE), artifact_path="best_checkpoint")
    set_tags(uri, run_id, {"sffb.best_checkpoint": str(target)})
    client.set_terminated(run_id, status)
    return target


#: Errors a user can fix (configuration, data, checkpoints): one line on the command line.
USER_ERRORS = (DataError, ValueError, FileNotFoundError)
