"""The data path: can Ray Data feed the distillation step, and what does Ray cost?

Measured in one run, on synthetic FF++ shards (real H.264, Haar crops, PNG columns):

1. Ray Data paired decode throughput (the production ``rayjobs.lib.data.paired_dataset``), in pairs
   per second per CPU core, for each ``data.augment_on`` variant (``device``: decode only, the
   pair is augmented on the training device; ``cpu``: decode + augment in Ray Data), next to the
   floor: a plain single-process loop of ``cv2.imdecode`` over the same Parquet bytes.
2. The share of a GPU step a training worker would wait for data: a node's cores
   (``--node-cores``, one kept for the training process) decoding at the measured per-core rate
   against the GPU's KD step rate (``--gpu-samples-per-s``, or the best variant of a
   ``bench/step.py --json`` file given with ``--step-json``).
3. The Ray overhead ratio: samples/s of a one-worker TorchTrainer fed by Ray Data, divided by a
   bare PyTorch loop over in-memory batches; the same ``rayjobs.lib.step.TrainingStep``, model,
   batch and thread count, one after the other in this process's run.

    PYTHONPATH=. python bench/pipeline.py --crop-size 256 --json pipeline.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
import ray.train
import ray.train.torch
import torch
from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from data_prep.prepare import PrepareConfig, prepare
from data_prep.shards import complete_shards, png_column
from data_prep.synthetic import SyntheticConfig, generate
from rayjobs.lib.config import DataConfig, JobConfig, load_job_config
from rayjobs.lib.configtree import from_dict, to_dict
from rayjobs.lib.data import paired_dataset
from rayjobs.lib.step import TrainingStep
from rayjobs.lib.tracking import git_commit
from sffb.losses import DistillationLoss
from sffb.model import SFFB

LEVELS = ("raw", "c23")
TARGET_PAIRS_PER_S_PER_CORE = 400.0
TARGET_WAIT_SHARE = 0.05
TARGET_RAY_RATIO = 0.95
#: A guess for an H100's bf16 KD step at 256x256 until bench/step.py has run on one
#: (pass --step-json with its output); the row in BENCHMARKS.md says which was used.
ASSUMED_GPU_SAMPLES_PER_S = 1000.0


def make_shards(workdir: Path, args: argparse.Namespace) -> Path:
    """Synthetic FF++ clips prepared into raw/c23 shards; reused when already there."""
    synthetic = SyntheticConfig(
        reals=args.reals, frames=args.frames, width=args.width, height=args.height
    )
    root = workdir / "ffpp"
    if not (root / "original_sequences").is_dir():
        print(f"generating {args.reals * 5} synthetic videos in {root}", flush=True)
        generate(root, synthetic)
    config = PrepareConfig(
        root=str(root),
        output=str(workdir / f"shards_{args.crop_size}"),
        levels=LEVELS,
        frames_per_video=args.frames,
        crop_size=args.crop_size,
    )
    print(f"preparing {args.crop_size}x{args.crop_size} shards in {config.output}", flush=True)
    prepare(config, progress=True)
    return Path(config.output)


def replicated(shards: Path, rows: int) -> Path:
    """A shard folder whose ``train`` split links the real shards over and over, to ``rows``.

    Ray Data buffers a small dataset during its start-up, which makes a short pass look faster
    than it is; a long one measures the streaming rate, start-up included.
    """
    files = complete_shards(shards, "train")
    per_pass = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    copies = max(1, -(-rows // per_pass))
    target = shards.with_name(f"{shards.name}_x{copies}") / "train"
    if len(complete_shards(target.parent, "train")) != copies * len(files):
        target.mkdir(parents=True, exist_ok=True)
        for i in range(copies):
            for j, source in enumerate(files):
                link = target / f"part-{i * len(files) + j:05d}.parquet"
                link.unlink(missing_ok=True)
                link.symlink_to(source)
    return target.parent


def _decoded(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def _to_nchw_rgb(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image.transpose(2, 0, 1)[::-1])  # BGR HWC -> RGB CHW, one copy


def floor_rate(shards: Path, size: int) -> float:
    """Pairs/s of one process decoding both PNGs of every training row with OpenCV."""
    columns = [png_column(level) for level in LEVELS]
    tables = [pq.read_table(f, columns=columns) for f in complete_shards(shards, "train")]
    pairs, started = 0, time.perf_counter()  # bytes already in memory: decoding only
    for table in tables:
        for column in columns:
            for png in table.column(column).to_pylist():
                _to_nchw_rgb(_decoded(png), size)
        pairs += table.num_rows
    return pairs / (time.perf_counter() - started)


def storage_comparison(shards: Path, workdir: Path) -> dict:
    """PNG columns (what the shards hold) vs raw uint8 columns with Parquet's zstd: bytes per
    pair on disk and single-process pairs/s to read the file and get uint8 NCHW arrays."""
    columns = [png_column(level) for level in LEVELS]
    source = complete_shards(shards, "train")[0]
    table = pq.read_table(source, columns=columns)
    size = _decoded(table.column(0)[0].as_py()).shape[0]
    raw = {c: [_decoded(png).tobytes() for png in table.column(c).to_pylist()] for c in columns}
    raw_file = workdir / "raw_uint8.parquet"
    pq.write_table(pa.table(raw), raw_file, compression="zstd")
    png_file = workdir / "png.parquet"
    pq.write_table(table, png_file, compression="none")  # PNG bytes do not compress further

    def read_png() -> None:
        for column in pq.read_table(png_file).columns:
            for png in column.to_pylist():
                _to_nchw_rgb(_decoded(png), size)

    def read_raw() -> None:
        for column in pq.read_table(raw_file).columns:
            for data in column.to_pylist():
                image = np.frombuffer(data, np.uint8).reshape(size, size, 3)
                _to_nchw_rgb(image, size)

    result = {}
    for name, path, read in (("png", png_file, read_png), ("raw_zstd", raw_file, read_raw)):
        started = time.perf_counter()
        read()
        result[name] = {
            "bytes_per_pair": path.stat().st_size / table.num_rows,
            "pairs_per_s_one_core": table.num_rows / (time.perf_counter() - started),
        }
    return result


def ray_data_rate(shards: Path, size: int, augment_on: str, passes: int) -> float:
    """Pairs/s through ``paired_dataset`` on all cores, start-up included: the median over
    ``passes`` passes, after a short warm-up pass that starts Ray Data's worker processes."""
    config = DataConfig(shards=str(shards), augment_on=augment_on)
    dataset = paired_dataset(config, "train", LEVELS, size, augment=True)
    for _ in zip(range(4), dataset.iter_batches(batch_size=32), strict=False):
        pass  # warm-up
    rates = []
    for _ in range(passes):
        rows, started = 0, time.perf_counter()
        for batch in dataset.iter_batches(batch_size=32, batch_format="numpy"):
            rows += len(batch["label"])
        rates.append(rows / (time.perf_counter() - started))
    return statistics.median(rates)


def bench_job(args: argparse.Namespace, shards: Path) -> JobConfig:
    """The cpu-demo job on the bench's shards, which hold the LEVELS (raw and c23)."""
    job = load_job_config("cpu-demo")
    data = replace(
        job.data, shards=str(shards), methods=(), batch_size=args.batch, student_level=LEVELS[1]
    )
    return replace(
        job,
        data=data,
        model=replace(job.model, backbone=args.backbone, image_size=args.train_size),
        scaling=replace(job.scaling, num_workers=1),
    )


def build_step(job: JobConfig, device: torch.device) -> TrainingStep:
    """A distillation step with randomly initialised teacher and student (timing only)."""
    torch.manual_seed(job.seed)
    model = SFFB(job.model).to(device)
    teacher = SFFB(job.model).to(device).eval().requires_grad_(False)
    optimiser = torch.optim.Adam(model.parameters(), lr=job.optim.lr)
    generator = TrainingStep.seeded_generator(device, job.seed, 0)
    return TrainingStep(
        model, teacher, DistillationLoss(**vars(job.loss)), optimiser, job,
        job.data.student_level, LEVELS, device, generator,
    )  # fmt: skip


def bare_loop_rate(job: JobConfig, steps: int, warmup: int, threads: int) -> float:
    """Samples/s of the step over batches already in memory (no Ray, no decoding)."""
    torch.set_num_threads(threads)
    step = build_step(job, torch.device("cpu"))
    rng = np.random.default_rng(0)
    size, batch = job.model.image_size, job.data.batch_size
    batches = [
        {
            **{level: torch.from_numpy(rng.integers(0, 256, (batch, 3, size, size), np.uint8))
               for level in LEVELS},
            "label": torch.from_numpy(rng.integers(0, 2, batch)),
        }
        for _ in range(4)
    ]  # fmt: skip
    for i in range(warmup):
        step(batches[i % len(batches)])
    started = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    return steps * batch / (time.perf_counter() - started)


def _ray_worker(config: dict) -> None:
    """Train ``steps`` steps from Ray Data after ``warmup``; report samples/s and data wait."""
    torch.set_num_threads(config["threads"])
    job = from_dict(JobConfig, config["job"])
    step = build_step(job, ray.train.torch.get_device())
    shard = ray.train.get_dataset_shard("train")
    total = config["warmup"] + config["steps"]
    done, waited, started = 0, 0.0, None
    while done < total:
        batches = iter(
            shard.iter_torch_batches(
                batch_size=job.data.batch_size,
                prefetch_batches=job.data.prefetch_batches,
                local_shuffle_buffer_size=job.data.shuffle_buffer or None,
                drop_last=True,
                dtypes=None,
            )
        )
        while done < total:
            asked = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break  # epoch over: start another pass
            if done == config["warmup"]:
                started, waited = asked, 0.0
            waited += time.perf_counter() - asked
            step(batch)
            done += 1
    seconds = time.perf_counter() - started
    figures = {
        "samples_per_s": config["steps"] * job.data.batch_size / seconds,
        "data_wait_share": waited / seconds,
    }
    with tempfile.TemporaryDirectory() as directory:  # Train V2 keeps checkpointed reports only
        Path(directory, "figures.json").write_text(json.dumps(figures))
        ray.train.report(figures, checkpoint=Checkpoint.from_directory(directory))


def ray_rate(job: JobConfig, steps: int, warmup: int, threads: int) -> dict:
    """The same step in a one-worker TorchTrainer, fed by ``paired_dataset``."""
    dataset = paired_dataset(job.data, "train", LEVELS, job.model.image_size, augment=True)
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"job": to_dict(job), "steps": steps, "warmup": warmup,
                           "threads": threads},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
        datasets={"train": dataset},
        run_config=RunConfig(storage_path=str(Path(job.tracking.storage_path).resolve())),
    )  # fmt: skip
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    return result.metrics


def gpu_rate(args: argparse.Namespace) -> tuple[float, str]:
    if args.step_json:
        figures = json.loads(args.step_json.read_text())
        best = max(figures["samples_per_s"].values())
        return best, f"bench/step.py on {figures['device']} ({args.step_json})"
    if args.gpu_samples_per_s:
        return args.gpu_samples_per_s, "given with --gpu-samples-per-s"
    return ASSUMED_GPU_SAMPLES_PER_S, "assumed (no GPU measurement given)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("outputs/bench/pipeline"))
    parser.add_argument("--reals", type=int, default=6, help="synthetic real clips (x5 videos)")
    parser.add_argument("--frames", type=int, default=48, help="frames per clip, all sampled")
    parser.add_argument("--width", type=int, default=640, help="synthetic clip size (FF++'s)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--passes", type=int, default=2, help="timed Ray Data passes")
    parser.add_argument("--rows", type=int, default=8000, help="rows per Ray Data pass")
    parser.add_argument("--variants", nargs="+", default=["cpu", "device"])
    parser.add_argument("--node-cores", type=int, default=16, help="CPU cores per GPU")
    parser.add_argument("--gpu-samples-per-s", type=float)
    parser.add_argument("--step-json", type=Path, help="bench/step.py --json output (GPU)")
    parser.add_argument("--backbone", default="legacy_xception")
    parser.add_argument("--train-size", type=int, default=96, help="overhead-ratio image size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both loops")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    ray.init(num_cpus=max(4, 2 * cores), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    args.workdir.mkdir(parents=True, exist_ok=True)
    shards = make_shards(args.workdir.resolve(), args)

    print("timing the cv2 floor and PNG vs raw storage", flush=True)
    floor = floor_rate(shards, args.crop_size)
    storage = storage_comparison(shards, args.workdir.resolve())
    many = replicated(shards, args.rows)
    print(f"timing Ray Data over {args.rows}+ rows per variant: {args.variants}", flush=True)
    per_core = {
        variant: ray_data_rate(many, args.crop_size, variant, args.passes) / cores
        for variant in args.variants
    }
    default = per_core.get("device", next(iter(per_core.values())))
    demand, demand_source = gpu_rate(args)
    supply = default * max(args.node_cores - 1, 1)
    wait_share = max(0.0, 1.0 - supply / demand)

    job = bench_job(args, shards)
    job = replace(job, tracking=replace(job.tracking, storage_path=str(args.workdir / "runs")))
    print("timing the bare PyTorch loop, then the same step in a TorchTrainer", flush=True)
    bare = bare_loop_rate(job, args.steps, args.warmup, args.threads)
    through_ray = ray_rate(job, args.steps, args.warmup, args.threads)
    ray.shutdown()
    ratio = through_ray["samples_per_s"] / bare

    result = {
        "machine": f"{platform.machine()}, {cores} cores",
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "crop_size": args.crop_size,
        "pairs_per_s_per_core": default,
        "pairs_per_s_per_core_by_variant": per_core,
        "floor_pairs_per_s_per_core": floor,
        "storage": storage,
        "data_wait_share": wait_share,
        "gpu_samples_per_s": demand,
        "gpu_samples_per_s_source": demand_source,
        "node_cores": args.node_cores,
        "ray_overhead_ratio": ratio,
        "bare_samples_per_s": bare,
        "ray_samples_per_s": through_ray["samples_per_s"],
        "data_wait_share_cpu_run": through_ray["data_wait_share"],
        "overhead_setup": f"{args.backbone} {args.train_size}x{args.train_size}, batch "
        f"{args.batch}, {args.threads} torch thread(s), {args.steps} timed steps",
    }
    report(result, args)
    if args.json:
        staging = args.json.with_suffix(".tmp")
        staging.write_text(json.dumps(result, indent=2))
        os.replace(staging, args.json)


def _verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    met = value >= target if higher_is_better else value <= target
    if met:
        return "meets target"
    missed = (target / value if higher_is_better else value / target) if value else float("inf")
    return f"MISSES target by {missed:.2f}x"


def report(result: dict, args: argparse.Namespace) -> None:
    print(f"data path at {result['crop_size']}x{result['crop_size']}, {result['machine']}")
    print(f"{'':34}{'pairs/s/core':>14}")
    print(f"{'cv2 decode loop, 1 process (floor)':34}{result['floor_pairs_per_s_per_core']:>14.1f}")
    for name, figures in result["storage"].items():
        label = f"read+decode 1 process, {name} column"
        print(
            f"{label:34}{figures['pairs_per_s_one_core']:>14.1f}  "
            f"{figures['bytes_per_pair'] / 1024:.0f} KiB/pair on disk"
        )
    for variant, rate in result["pairs_per_s_per_core_by_variant"].items():
        label = f"Ray Data, augment_on={variant}"
        print(f"{label:34}{rate:>14.1f}  {_verdict(rate, TARGET_PAIRS_PER_S_PER_CORE)} (400)")
    share = result["data_wait_share"]
    print(
        f"worker wait for data at {result['gpu_samples_per_s']:.0f} samples/s "
        f"({result['gpu_samples_per_s_source']}), {result['node_cores']} cores: "
        f"{share:.1%}  {_verdict(share, TARGET_WAIT_SHARE, higher_is_better=False)} (5 %)"
    )
    print(
        f"Ray overhead ratio ({result['overhead_setup']}): {result['ray_samples_per_s']:.2f} / "
        f"{result['bare_samples_per_s']:.2f} samples/s = {result['ray_overhead_ratio']:.3f}  "
        f"{_verdict(result['ray_overhead_ratio'], TARGET_RAY_RATIO)} (0.95); the worker "
        f"waited for data {result['data_wait_share_cpu_run']:.1%} of that run"
    )


if __name__ == "__main__":
    main()
