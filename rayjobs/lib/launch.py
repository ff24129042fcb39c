"""Build and run one TorchTrainer job (teacher pretraining or student distillation).

Everything that can be wrong with a configuration is checked here before any worker starts: the
backbone and fusion names, the shards and their levels, the teacher checkpoint (on the driver),
then that every node of the cluster sees the shards, the teacher and the storage
(``rayjobs.lib.preflight``). Every location is a path or a URI (``data_prep.storage``); local paths
are made absolute (Ray resolves relative ones inside a job's working directory).
"""

from __future__ import annotations

import json
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

from data_prep import storage
from data_prep.cluster import ensure_ray
from data_prep.defaults import embedded_prepare_config, ensure_embedded_shards, workdir
from data_prep.prepare import InputUnavailableError
from data_prep.versions import VERSIONS_TAG, changed_since, recorded_versions, versions_tag
from rayjobs.lib.balance import resolve_balance, train_class_counts
from rayjobs.lib.checkpoints import (
    METRICS_FILE,
    STATE_FILE,
    best_stored_checkpoint,
    check_teacher_init,
    has_checkpoint,
)
from rayjobs.lib.config import JobConfig
from rayjobs.lib.configtree import flatten, to_dict
from rayjobs.lib.data import DataError, check_levels, check_methods, paired_dataset, shard_files
from rayjobs.lib.ingest import SplitValidationConfig
from rayjobs.lib.mlflow_model import log_detector
from rayjobs.lib.preflight import Needs, PreflightError, check_every_node
from rayjobs.lib.run_inputs import log_shard_inputs
from rayjobs.lib.run_names import check_resume, default_run_name, teacher_job
from rayjobs.lib.tracking import (
    BEST_CHECKPOINT_TAG,
    EpochLogger,
    experiment_url,
    file_sha256,
    find_or_create_run,
    find_run,
    is_server,
    log_metrics,
    set_tags,
    sqlite_file,
    tracking_uri,
)
from rayjobs.lib.train_loop import SELECTION_METRIC, train_worker

MODES = ("teacher", "student")


@dataclass(frozen=True)
class TrainOutcome:
    run_name: str
    mlflow_run_id: str
    best_checkpoint: str  # folder (path or URI) holding state.pt, chosen by validation AUC
    metrics: dict  # the last epoch's metrics


def resolve_data(job: JobConfig) -> JobConfig:
    """``data.shards`` made absolute (or kept as a URI); empty means the embedded synthetic
    shards (made if absent)."""
    if job.data.shards:
        return replace(job, data=replace(job.data, shards=storage.normalise(job.data.shards)))
    ensure_embedded_shards(progress=True)
    return replace(job, data=replace(job.data, shards=embedded_prepare_config().output))


def storage_path(job: JobConfig) -> str:
    """Where runs, checkpoints and sweeps go: ``tracking.storage_path``, else
    ``$SFFB_HOME/runs``; an absolute path or a URI."""
    return storage.normalise(job.tracking.storage_path or storage.join(workdir(), "runs"))


def pretrain_teacher(job: JobConfig, run_name: str) -> TrainOutcome:
    """Pretrain the teacher as run ``run_name``: its own name, never the student's
    ``tracking.run_name`` (which would make the student's relaunch resume the teacher), and
    without the student's options (``model.init: teacher``: ``run_training`` drops it)."""
    return run_training(replace(job, tracking=replace(job.tracking, run_name=run_name)), "teacher")


def best_checkpoint_path(runs: str, run_name: str) -> str:
    """Where a finished run's best checkpoint is copied: a stable location for the next job."""
    return storage.join(runs, run_name, "best")


def preflight(job: JobConfig, mode: str, teacher_checkpoint: str | None) -> None:
    """Refuse bad data or a missing teacher before any worker starts, naming what is wrong.

    Names (backbone, fusion, knowledge) were already checked when the JobConfig was built.
    Checked here, on the driver; ``cluster_preflight`` then checks every node.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
    for split in ("train", "val"):
        check_levels(job.data.shards, split, job.training_levels(mode))
        check_methods(job.data.shards, split, job.data.methods)
    has_teacher = teacher_checkpoint is not None and has_checkpoint(teacher_checkpoint)
    if job.needs_teacher_checkpoint(mode) and not has_teacher:
        raise FileNotFoundError(
            f"{teacher_checkpoint}: teacher checkpoint ({STATE_FILE}) not found; "
            "run rayjobs/pretrain_teacher.py first or set tracking.teacher_run"
        )
    check_teacher_init(job, mode, teacher_checkpoint)


def cluster_preflight(job: JobConfig, mode: str, teacher_checkpoint: str | None) -> None:
    """Every alive node reads a shard of each split and the teacher, and shares the storage
    and the tracking store with the driver (``rayjobs.lib.preflight``)."""
    readable = [shard_files(job.data.shards, split)[0] for split in ("train", "val")]
    if job.needs_teacher_checkpoint(mode) and teacher_checkpoint is not None:
        readable.append(storage.join(teacher_checkpoint, STATE_FILE))
    uri = tracking_uri(job.tracking.tracking_uri)
    database = sqlite_file(uri)
    check_every_node(
        Needs(
            readable=tuple(readable),
            writable=storage_path(job),
            tracking_db=str(database) if database else "",
            tracking_server=uri if uri.startswith(("http://", "https://")) else "",
        )
    )


def use_gpu(job: JobConfig) -> bool:
    """Whether the job's workers take a GPU (``scaling.use_gpu``; auto: the cluster has one)."""
    if job.scaling.use_gpu == "auto":
        return ray.cluster_resources().get("GPU", 0) >= 1
    return job.scaling.use_gpu == "yes"


def run_training(
    job: JobConfig,
    mode: str,
    teacher_checkpoint: str | None = None,
    extra_tags: dict[str, str] | None = None,
    callbacks: tuple = (),
) -> TrainOutcome:
    """Train (or resume) the job's run; return where its best checkpoint is.

    A teacher ignores the student-only ``model.init: teacher`` and trains
    ``optim.teacher_epochs`` when set (``teacher_job``), so one configuration serves both jobs.
    ``callbacks`` are extra Ray Train callbacks (a Tune trial passes ``TuneReportCallback``).
    """
    job = resolve_data(teacher_job(job) if mode == "teacher" else job)
    teacher_checkpoint = storage.normalise(teacher_checkpoint) if teacher_checkpoint else None
    preflight(job, mode, teacher_checkpoint)
    manifest = storage.join(job.data.shards, "manifest.json")
    prepared = json.loads(storage.read_text(manifest))  # read once: class counts, crop settings
    balance = resolve_balance(job.data.balance, *train_class_counts(prepared, job.data.methods))
    print(balance.describe(), flush=True)
    if mode == "teacher":  # optim.teacher_epochs / teacher_schedule override the student's
        print(f"the teacher trains {job.optim.epochs} epochs, {job.optim.schedule} learning rate "
              "(optim.teacher_epochs, optim.teacher_schedule)", flush=True)  # fmt: skip
    ensure_ray()
    runs = storage_path(job)
    storage.makedirs(runs)
    cluster_preflight(job, mode, teacher_checkpoint)
    run_name = job.tracking.run_name or default_run_name(job, mode)

    uri = tracking_uri(job.tracking.tracking_uri)
    existing = find_run(uri, job.tracking.experiment, run_name)
    logged = MlflowClient(uri).get_run(existing).data if existing else None
    check_resume(job, mode, run_name, logged.params if logged else None)
    if logged is not None:
        changed = changed_since(recorded_versions(logged.tags))
        if changed:  # the run's tag keeps the versions it started with
            print(f"warning: resuming run {run_name!r} with other package versions than it "
                  f"started with ({', '.join(changed)}): its remaining epochs may train "
                  "differently", flush=True)  # fmt: skip
    tags = {
        "sffb.mode": mode,
        "sffb.manifest_sha256": file_sha256(manifest),
        "sffb.storage": storage.join(runs, run_name),
        VERSIONS_TAG: versions_tag(),  # what rerun checks, beside the commit and the shards
        **(extra_tags or {}),
    }
    params = {**flatten(to_dict(job)), "mode": mode}
    run_id, created = find_or_create_run(uri, job.tracking.experiment, run_name, params, tags)
    client = MlflowClient(uri)
    if is_server(uri):  # where to watch it, in the model-training view
        print(f"MLflow: {experiment_url(uri, client.get_run(run_id).info.experiment_id)}")
    if created:
        log_shard_inputs(uri, run_id, job.data.shards, ("train", "val"), job.data.methods)
        with tempfile.TemporaryDirectory() as directory:
            effective = Path(directory) / "config.yaml"
            effective.write_text(yaml.safe_dump(to_dict(job), sort_keys=False))
            client.log_artifact(run_id, str(effective))

    rows = f"{balance.real} real, {balance.fake} fake"
    set_tags(uri, run_id, {"sffb.balance": balance.method, "sffb.train_rows": rows})
    size = job.model.image_size
    levels = job.training_levels(mode)
    datasets = {
        "train": paired_dataset(
            job.data,
            "train",
            levels,
            size,
            augment=True,
            repeat=balance.oversampling(),
            seed=job.seed if job.data.deterministic else None,
        ),
        "val": paired_dataset(job.data, "val", (job.input_level(mode),), size, augment=False),
    }
    gpus = use_gpu(job)
    resources = {"CPU": job.scaling.cpus_per_worker, **({"GPU": 1} if gpus else {})}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "job": to_dict(job),
            "mode": mode,
            "teacher_checkpoint": (
                teacher_checkpoint if job.needs_teacher_checkpoint(mode) else None
            ),
            "mlflow": {"uri": uri, "run_id": run_id},  # rank 0 logs system metrics there
            "class_weights": balance.loss_weights(),  # data.balance: loss_weights
            # How the training crops were cut, kept in every checkpoint so that detection on
            # new files cuts them the same way (JSON of data_prep's PrepareConfig).
            "preparation": json.dumps(prepared["config"]),
        },
        scaling_config=RayScaling(
            num_workers=job.scaling.num_workers,
            use_gpu=gpus,
            resources_per_worker=resources,
            placement_strategy=job.scaling.placement_strategy,
        ),
        datasets=datasets,
        dataset_config=SplitValidationConfig(job.data.deterministic, storage.join(runs, run_name)),
        run_config=RunConfig(
            name=run_name,
            storage_path=runs,
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
    target = publish_best(runs, run_name, uri, run_id, "FINISHED")
    metrics = {k: v for k, v in result.metrics.items() if k != "history"}
    return TrainOutcome(run_name, run_id, target, metrics)


def publish_best(runs: str, run_name: str, uri: str, run_id: str, status: str) -> str:
    """Copy the run's best checkpoint (by validation AUC) to ``<run>/best``, attach it to the
    MLflow run and close that run with ``status``; returns the ``best`` location.

    Works from the run's folder alone (a path or a URI), so a sweep can also finish trials that
    Tune stopped.
    """
    run_dir = storage.join(runs, run_name)
    source = best_stored_checkpoint(run_dir, SELECTION_METRIC)
    if source is None:
        raise FileNotFoundError(f"{run_dir}: the run saved no checkpoint")
    target = best_checkpoint_path(runs, run_name)
    storage.publish_dir(source, target, last=STATE_FILE)
    client = MlflowClient(uri)
    # The best model as an MLflow model (the checkpoint inside), registered under its mode.
    run = client.get_run(run_id)
    mode = run.data.tags.get("sffb.mode", "student")
    image_size = int(run.data.params["model.image_size"])  # logged with the run's config
    version = log_detector(uri, run_id, target, image_size, mode)
    set_tags(uri, run_id, {BEST_CHECKPOINT_TAG: target, "sffb.model_version": version})
    # The published checkpoint's own validation figures: a run's last epoch is not its best.
    chosen = json.loads(storage.read_text(storage.join(source, METRICS_FILE)))
    best = {f"best_{k}": v for k, v in chosen.items() if k.startswith("val_") or k == "epoch"}
    log_metrics(uri, run_id, best)
    client.set_terminated(run_id, status)
    return target


#: Errors a user can fix (configuration, data, checkpoints): one line on the command line.
USER_ERRORS = (DataError, ValueError, FileNotFoundError, PreflightError, InputUnavailableError)
