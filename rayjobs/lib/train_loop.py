"""The per-worker training function of both jobs: teacher pretraining and student distillation.

Each epoch: train on this worker's shard of the training split, score this worker's part of the
validation split, gather every worker's scores so the metrics cover the whole split, checkpoint
(rank 0) and report. Resumes from ``ray.train.get_checkpoint()`` after a failure or a relaunch.
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler

from rayjobs.lib.checkpoints import initial_model, load_model, load_state, save_state
from rayjobs.lib.config import JobConfig, OptimConfig
from rayjobs.lib.configtree import from_dict
from rayjobs.lib.reproducible import stream_seed
from rayjobs.lib.step import TrainingStep, autocast, prepare_input, uses_bf16
from rayjobs.lib.weight_average import WeightAverage
from sffb.batchnorm import common_batch_count, recalibrate_batchnorm
from sffb.losses import DistillationLoss
from sffb.metrics import evaluate_detection
from sffb.model import SFFB

if TYPE_CHECKING:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

#: Metric that picks the best checkpoint (validation only, never test).
SELECTION_METRIC = "val_frame_auc"


def with_sync_batchnorm(
    network: torch.nn.Module, job: JobConfig, world: int, device: torch.device
) -> torch.nn.Module:
    """BatchNorm layers as SyncBatchNorm for multi-GPU DDP (``scaling.sync_batchnorm``).

    GPU only (PyTorch synchronises BatchNorm over NCCL); state-dict keys are unchanged, so the
    checkpoints load into a plain SFFB.
    """
    if job.scaling.sync_batchnorm and world > 1 and device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    return network


def lr_schedule(optimiser: torch.optim.Optimizer, optim: OptimConfig) -> Scheduler:
    """timm's ``optim.schedule`` after its linear warm-up; ``step(epoch)`` sets that epoch's lr."""
    scheduler, _ = create_scheduler_v2(
        optimiser, sched=optim.schedule, num_epochs=optim.epochs,
        warmup_epochs=optim.warmup_epochs, warmup_lr=optim.warmup_lr, min_lr=optim.min_lr,
    )  # fmt: skip
    return scheduler


class SystemMetrics:
    """MLflow's system-metrics monitor on rank 0 (``system/*`` metrics), from the worker's start
    to the end of its ``with`` block (the epochs).

    Resumes the run's step count, so a restarted worker or a relaunched run continues it. Built
    on a thread of its own, started before the model and data are set up: its constructor opens
    the tracking store and probes the machine (~3 s on 2 cores, with MLflow's import), which
    would otherwise hold every worker at the first all-reduce.
    """

    def __init__(self, loop_config: dict, job: JobConfig, rank: int) -> None:
        self._monitor: SystemMetricsMonitor | None = None  # set by the starter thread
        self._starter: threading.Thread | None = None
        tracking = loop_config.get("mlflow")
        interval = job.tracking.system_metrics_interval_s
        if rank != 0 or not tracking or interval <= 0:
            return

        def start() -> None:
            # Imported here: every worker imports this module, and only rank 0 needs MLflow.
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(
                tracking["run_id"], sampling_interval=interval, resume_logging=True,
                tracking_uri=tracking["uri"],
            )  # fmt: skip
            monitor.start()
            self._monitor = monitor

        self._starter = threading.Thread(target=start, name="start-system-metrics", daemon=True)
        self._starter.start()

    def __enter__(self) -> SystemMetrics:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._starter is not None:
            self._starter.join()
        if self._monitor is not None:
            self._monitor.finish()


def train_epoch(
    step: TrainingStep,
    shard,
    job: JobConfig,
    per_worker: int,
    device: torch.device,
    shuffle_seed: int | None = None,
    average: WeightAverage | None = None,
) -> tuple[dict[str, float], int, list[torch.Tensor]]:
    """One pass over this worker's training shard: summed loss terms, steps, and the first
    ``optim.precise_bn_batches`` model inputs (before augmentation) for BatchNorm statistics.
    ``shuffle_seed`` seeds the local shuffle buffer (``data.deterministic``); ``average``, when
    given, is updated after every step."""
    sums: dict[str, float] = defaultdict(float)
    steps = 0
    calibration: list[torch.Tensor] = []
    for batch in shard.iter_torch_batches(
        batch_size=per_worker,
        prefetch_batches=job.data.prefetch_batches,
        local_shuffle_buffer_size=job.data.shuffle_buffer or None,
        local_shuffle_seed=shuffle_seed if job.data.shuffle_buffer else None,
        drop_last=True,
        device=device,
        dtypes=None,
    ):
        if len(calibration) < job.optim.precise_bn_batches:
            calibration.append(batch[step.input_level])
        for name, value in step(batch).items():
            sums[name] += value
        if average is not None:
            average.update()
        steps += 1
    return sums, steps, calibration


def _mean_across_workers(sums: dict[str, float], steps: int, device: torch.device) -> dict:
    names = sorted(sums)
    totals = torch.tensor([sums[n] for n in names] + [steps], dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    count = max(1.0, float(totals[-1]))
    return {f"train_{n}": float(v) / count for n, v in zip(names, totals[:-1], strict=True)}


@torch.no_grad()
def score_split(model: torch.nn.Module, shard, level: str, batch_size: int, device, job) -> dict:
    """This worker's (labels, fake probabilities, video keys) on its part of a split."""
    model.eval()
    labels, scores, keys = [], [], []
    for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
        images = torch.from_numpy(batch[level]).to(device, non_blocking=True)
        with autocast(device, job):
            logits = model(prepare_input(images, job)).logits
        scores.append(SFFB.fake_probability(logits).cpu().numpy())
        labels.append(batch["label"])
        keys.extend(batch["video_key"])
    empty = np.zeros(0)
    return {
        "labels": np.concatenate(labels) if labels else empty.astype(np.int64),
        "scores": np.concatenate(scores) if scores else empty,
        "keys": [str(k) for k in keys],
    }


def gather_scores(local: dict) -> dict:
    """Every worker's scores, concatenated: metrics over the whole split, not shard averages."""
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return {
        "labels": np.concatenate([p["labels"] for p in parts]),
        "scores": np.concatenate([p["scores"] for p in parts]),
        "keys": [k for p in parts for k in p["keys"]],
    }


def epoch_summary(metrics: dict[str, Any], epochs: int) -> str:
    shown = ("train_total", "train_hard", "val_frame_acc", "val_frame_balanced_acc",
             "val_frame_auc", "val_video_auc")  # fmt: skip
    values = "  ".join(f"{k}={metrics[k]:.4f}" for k in shown if k in metrics)
    return f"epoch {metrics['epoch'] + 1}/{epochs}: {values}"


def train_worker(loop_config: dict) -> None:
    """Ray Train entry: ``loop_config`` = job (dict), mode, levels, teacher checkpoint."""
    job = from_dict(JobConfig, loop_config["job"])
    mode = loop_config["mode"]
    distilling = mode == "student"
    input_level = job.input_level(mode)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    node = ray.get_runtime_context().get_node_id()
    bf16 = uses_bf16(device, job)
    precision = "bf16 autocast" if bf16 else "fp32"
    print(f"worker {rank}/{world} on node {node[:12]}, device {device}, {precision}", flush=True)
    system_metrics = SystemMetrics(loop_config, job, rank)  # starts now, stops after the epochs
    torch.manual_seed(job.seed)

    initial = initial_model(job, mode, loop_config["teacher_checkpoint"])
    network = with_sync_batchnorm(initial, job, world, device)
    if job.scaling.channels_last:
        network = network.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(network)
    optimiser = torch.optim.Adam(
        model.parameters(),
        lr=job.learning_rate(mode),
        weight_decay=job.optim.weight_decay,
        fused=job.optim.fused or None,  # CUDA and CPU kernels; None: the default (foreach)
    )
    schedule = lr_schedule(optimiser, job.optim)
    weights = loop_config.get(
        "class_weights"
    )  # data.balance: loss_weights (rayjobs/lib/balance.py)
    weights = tuple(weights) if weights else None
    loss_fn = (
        DistillationLoss(**vars(job.loss), class_weights=weights)
        if distilling
        else DistillationLoss.hard_only(weights)
    )
    loss_fn.to(device)
    start_epoch, history, best_auc = 0, [], -math.inf
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_state(Path(directory))
        # With a weight average, "model" is the average and "live_model" the trained weights.
        network.load_state_dict(state.get("live_model", state["model"]))
        optimiser.load_state_dict(state["optimizer"])
        loss_fn.load_state_dict(state.get("loss", {}), strict=False)  # running magnitudes
        start_epoch, history = state["epoch"] + 1, state["history"]
        best_auc = state["best_auc"]
    average = WeightAverage(network, job.optim.ema_decay) if job.optim.ema_decay else None
    if average is not None and checkpoint is not None and "weight_average" in state:
        average.load(state["model"], state["weight_average"])
    kept = average.module if average is not None else network  # validated and checkpointed

    teacher = None
    if job.uses_teacher(mode):
        teacher = load_model(loop_config["teacher_checkpoint"], device).requires_grad_(False)
        if job.scaling.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)

    levels = job.training_levels(mode)
    on_device = job.data.augment_on == "device"
    step = TrainingStep(
        model, teacher, loss_fn, optimiser, job, input_level, levels, device,
        generator=TrainingStep.seeded_generator(device, job.seed, rank) if on_device else None,
    )  # fmt: skip
    per_worker = job.data.batch_size // world
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    with system_metrics:  # system/* metrics in MLflow
        for epoch in range(start_epoch, job.optim.epochs):
            model.train()
            loss_fn.start_epoch(epoch)  # KD warm-up
            schedule.step(epoch)  # the epoch's learning rate, from the epoch alone: resumable
            # Every draw of the epoch from (seed, epoch, rank) alone: resumable, repeatable.
            torch.manual_seed(stream_seed(job.seed, epoch, rank))
            if on_device:
                step.generator = TrainingStep.seeded_generator(device, job.seed, rank, epoch)
            shuffle_seed = stream_seed(job.seed, epoch, rank) if job.data.deterministic else None
            sums, steps, calibration = train_epoch(
                step, train_shard, job, per_worker, device, shuffle_seed, average
            )
            count = common_batch_count(len(calibration), device)
            recalibrate_batchnorm(kept, calibration[:count])
            metrics = _mean_across_workers(sums, steps, device)
            metrics["lr"] = optimiser.param_groups[0]["lr"]
            metrics["kd_weight"] = loss_fn.distillation_weight
            metrics["bf16"] = float(bf16)  # runs on other hosts compare only at equal precision
            if average is not None:
                metrics["ema_decay"] = average.decay_now()

            local = score_split(kept, val_shard, input_level, per_worker, device, job)
            scores = gather_scores(local)
            report = evaluate_detection(scores["labels"], scores["scores"], scores["keys"])
            metrics.update(report.as_dict("val_"))
            metrics["epoch"] = epoch
            history = [*history, metrics]
            best_auc = max(best_auc, metrics[SELECTION_METRIC])
            if rank == 0:
                # progress on the console
                print(epoch_summary(metrics, job.optim.epochs), flush=True)

            with tempfile.TemporaryDirectory() as directory:
                checkpoint = None
                if rank == 0:
                    averaged = {} if average is None else {
                        "live_model": network.state_dict(),
                        "weight_average": average.state_dict(),
                    }  # fmt: skip
                    save_state(
                        Path(directory),
                        model=kept.state_dict(),
                        **averaged,
                        optimizer=optimiser.state_dict(),
                        loss=loss_fn.state_dict(),
                        epoch=epoch,
                        history=history,
                        best_auc=best_auc,
                        config=job,
                        mode=mode,  # which level the model reads (detection needs it)
                        preparation=loop_config.get("preparation", ""),  # its crops' settings
                    )
                    checkpoint = ray.train.Checkpoint.from_directory(directory)
                ray.train.report(
                    {**metrics, "epochs_done": epoch + 1, "history": history},
                    checkpoint=checkpoint,
                    checkpoint_dir_name=f"epoch_{epoch:04d}",
                )
