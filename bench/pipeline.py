"""The data path: can Ray Data feed the distillation step, and what does Ray cost?

Measured in one run, on synthetic FF++ shards (real H.264, Haar crops) prepared in both image
formats (``data_prep.image_columns``: raw planes with zstd, the default, and PNG):

1. Per format, the floor (one process turning crops already in memory into uint8 NCHW with
   the shards' own decoder), bytes per pair on disk and one-process read-and-decode rate, and
   bytes per crop on crops of real photographs (the sample photographs of matplotlib and
   scikit-learn).
2. Ray Data paired decode throughput (the production ``rayjobs.lib.data.paired_dataset``), in
   pairs per second per CPU core, per format (``data.augment_on: device``: decode only) and, for
   the default format, with augmentation in Ray Data (``cpu``); the same read without decoding;
   the default path's share of its format's floor; Ray Data's per-operator statistics.
3. The share of a GPU step a training worker would wait for data: a node's cores
   (``--node-cores``, one kept for the training process) decoding at the measured per-core rate
   against the GPU's KD step rate (``--gpu-samples-per-s``, or the best variant of a
   ``bench/step.py --json`` file given with ``--step-json``).
4. The Ray overhead ratio: samples/s of a one-worker TorchTrainer fed by Ray Data, divided by a
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

from data_prep.image_columns import (
    COMPRESSION,
    DEFAULT_IMAGE_FORMAT,
    IMAGE_FORMATS,
    decode_column,
    encode_crops,
    image_column,
)
from data_prep.prepare import PrepareConfig, prepare
from data_prep.shards import complete_shards
from data_prep.synthetic import SyntheticConfig, generate
from rayjobs.lib.config import DataConfig, JobConfig, load_job_config
from rayjobs.lib.configtree import from_dict, to_dict
from rayjobs.lib.data import paired_dataset, read_task_env, shard_format
from rayjobs.lib.step import TrainingStep
from rayjobs.lib.tracking import git_commit
from sffb.losses import DistillationLoss
from sffb.model import SFFB

LEVELS = ("raw", "c23")
TARGET_PAIRS_PER_S_PER_CORE = 400.0
TARGET_WAIT_SHARE = 0.05
TARGET_RAY_RATIO = 0.95
TARGET_SHARE_OF_FLOOR = 0.80
#: A guess for an H100's bf16 KD step at 256x256 until bench/step.py has run on one
#: (pass --step-json with its output); the row in BENCHMARKS.md says which was used.
ASSUMED_GPU_SAMPLES_PER_S = 1000.0


def make_shards(workdir: Path, args: argparse.Namespace) -> dict[str, Path]:
    """Synthetic FF++ clips prepared into raw/c23 shards in each image format; reused when
    already there. Format -> shard folder."""
    synthetic = SyntheticConfig(
        reals=args.reals, frames=args.frames, width=args.width, height=args.height
    )
    root = workdir / "ffpp"
    if not (root / "original_sequences").is_dir():
        print(f"generating {args.reals * 5} synthetic videos in {root}", flush=True)
        generate(root, synthetic)
    folders = {}
    for image_format in IMAGE_FORMATS:
        config = PrepareConfig(
            root=str(root),
            output=str(workdir / f"shards_{args.crop_size}_{image_format}"),
            levels=LEVELS,
            frames_per_video=args.frames,
            crop_size=args.crop_size,
            image_format=image_format,
        )
        print(f"preparing {image_format} shards in {config.output}", flush=True)
        prepare(config, progress=True)
        folders[image_format] = Path(config.output)
    return folders


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


def _columns(shards: Path) -> list[str]:
    image_format = shard_format(str(shards), "train")
    return [image_column(level, image_format) for level in LEVELS]


def floor_rate(shards: Path, size: int) -> float:
    """Pairs/s of one process turning both stored crops of every training row, already in
    memory, into uint8 NCHW with the shards' own decoder: the floor of their format."""
    columns = _columns(shards)
    tables = [pq.read_table(f, columns=columns) for f in complete_shards(shards, "train")]
    pairs, started = 0, time.perf_counter()
    for table in tables:
        for batch in table.to_batches(max_chunksize=64):  # as Ray Data's tasks see them
            for column in columns:
                decode_column(batch.column(column), size)
        pairs += table.num_rows
    return pairs / (time.perf_counter() - started)


def storage_figures(shards: Path, size: int) -> dict:
    """Bytes per pair on disk (both levels' crops and the row's metadata) and the pairs/s of
    one process reading the shards from disk and decoding them."""
    files = complete_shards(shards, "train")
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    columns = _columns(shards)
    started = time.perf_counter()
    for f in files:
        table = pq.read_table(f, columns=columns)
        for column in columns:
            decode_column(table.column(column), size)
    return {
        "bytes_per_pair": sum(Path(f).stat().st_size for f in files) / rows,
        "pairs_per_s_one_core": rows / (time.perf_counter() - started),
    }


def sample_photographs() -> dict[str, np.ndarray]:
    """Real photographs that ship with installed packages (RGB): a face, a building, a flower."""
    import matplotlib.cbook
    from sklearn.datasets import load_sample_images

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        data = np.frombuffer(handle.read(), np.uint8)
    photos = {"grace_hopper": cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]}
    for name, image in zip(load_sample_images().filenames, load_sample_images().images,
                           strict=True):  # fmt: skip
        photos[Path(name).stem] = image
    return photos


def photo_storage(size: int, crops_per_photo: int = 40) -> dict:
    """Bytes per crop of each format on square crops of real photographs (random position and
    scale, area-resized to ``size``), written as shards write them (codec and level)."""
    rng = np.random.default_rng(0)
    crops = []
    for image in sample_photographs().values():
        height, width = image.shape[:2]
        for _ in range(crops_per_photo):
            side = int(rng.integers(min(height, width) // 4, min(height, width)))
            top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
            crop = np.ascontiguousarray(image[top : top + side, left : left + side])
            crops.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    result = {}
    for image_format in IMAGE_FORMATS:
        sink = pa.BufferOutputStream()
        codec, level = COMPRESSION[image_format]
        table = pa.table({"crop": encode_crops(crops, image_format)})
        pq.write_table(table, sink, compression=codec, compression_level=level)
        result[image_format] = {"bytes_per_crop": sink.getvalue().size / len(crops)}
    result["crops"] = len(crops)
    return result


def _timed_passes(batches, passes: int) -> float:
    """The median rows/s over ``passes`` passes of ``batches()`` (each a fresh iterator)."""
    rates = []
    for _ in range(passes):
        rows, started = 0, time.perf_counter()
        for batch in batches():
            rows += len(batch["label"]) if isinstance(batch, dict) else batch.num_rows
        rates.append(rows / (time.perf_counter() - started))
    return statistics.median(rates)


def ray_data_rate(shards: Path, size: int, augment_on: str, passes: int) -> tuple[float, str]:
    """Pairs/s through ``paired_dataset`` on all cores, start-up included: the median over
    ``passes`` passes, after a short warm-up pass that starts Ray Data's worker processes;
    and Ray Data's own per-operator statistics of the last pass."""
    config = DataConfig(shards=str(shards), augment_on=augment_on)
    dataset = paired_dataset(config, "train", LEVELS, size, augment=True)
    for _ in zip(range(4), dataset.iter_batches(batch_size=32), strict=False):
        pass  # warm-up
    rate = _timed_passes(lambda: dataset.iter_batches(batch_size=32, batch_format="numpy"), passes)
    return rate, dataset.stats()


def read_only_rate(shards: Path, passes: int) -> float:
    """Pairs/s of the same read (files, columns, row filter) without decoding: what the
    Parquet read and Ray Data's streaming cost on their own."""
    files = complete_shards(shards, "train")
    dataset = ray.data.read_parquet(files, shuffle="files", runtime_env=read_task_env())
    dataset = dataset.select_columns(["label", "method", "video_key", *_columns(shards)])
    return _timed_passes(lambda: dataset.iter_batches(batch_size=32, batch_format="pyarrow"),
                         passes)  # fmt: skip


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
    folders = make_shards(args.workdir.resolve(), args)
    shards = folders[DEFAULT_IMAGE_FORMAT]

    print("timing the decode floor and reading from disk, per format", flush=True)
    floors = {f: floor_rate(folder, args.crop_size) for f, folder in folders.items()}
    storage = {f: storage_figures(folder, args.crop_size) for f, folder in folders.items()}
    photos = photo_storage(args.crop_size)
    print(f"  floors {floors}\n  storage {storage}\n  photographs {photos}", flush=True)
    many = {f: replicated(folder, args.rows) for f, folder in folders.items()}
    print(f"timing Ray Data over {args.rows}+ rows: {args.variants} x {IMAGE_FORMATS}", flush=True)
    per_core, by_format, stats = {}, {}, ""
    for image_format in IMAGE_FORMATS:
        for variant in args.variants:
            if image_format != DEFAULT_IMAGE_FORMAT and variant != "device":
                continue  # the other format: the default path only
            rate, text = ray_data_rate(many[image_format], args.crop_size, variant, args.passes)
            print(f"  {image_format}, augment_on={variant}: {rate / cores:.1f} pairs/s/core",
                  flush=True)  # fmt: skip
            if image_format == DEFAULT_IMAGE_FORMAT:
                per_core[variant] = rate / cores
                stats = text if variant == "device" else stats or text
            if variant == "device":
                by_format[image_format] = rate / cores
    read_only = read_only_rate(many[DEFAULT_IMAGE_FORMAT], args.passes) / cores
    default = per_core.get("device", next(iter(per_core.values())))
    floor = floors[DEFAULT_IMAGE_FORMAT]
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

    one_process_read = storage[DEFAULT_IMAGE_FORMAT]["pairs_per_s_one_core"]
    result = {
        "machine": f"{platform.machine()}, {cores} cores",
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "crop_size": args.crop_size,
        "image_format": DEFAULT_IMAGE_FORMAT,
        "pairs_per_s_per_core": default,
        "pairs_per_s_per_core_by_variant": per_core,
        "pairs_per_s_per_core_by_format": by_format,
        "read_only_pairs_per_s_per_core": read_only,
        "floor_pairs_per_s_per_core": floor,
        "floor_pairs_per_s_per_core_by_format": floors,
        "share_of_floor": default / floor,
        # Raw's floor is a memory copy; reading its shards from disk in one process is the
        # figure a Ray Data path can be held to.
        "share_of_one_process_read": default / one_process_read,
        "storage": storage,
        "photo_storage": photos,
        "ray_data_stats": stats,
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
    default = result["image_format"]
    print(f"data path at {result['crop_size']}x{result['crop_size']}, {result['machine']}; "
          f"default shard format: {default}")  # fmt: skip
    print(f"{'':44}{'pairs/s/core':>14}")
    for name, floor in result["floor_pairs_per_s_per_core_by_format"].items():
        print(f"{'floor (1 process, decode only), ' + name:44}{floor:>14.1f}")
    for name, figures in result["storage"].items():
        print(
            f"{'read from disk + decode, 1 process, ' + name:44}"
            f"{figures['pairs_per_s_one_core']:>14.1f}  "
            f"{figures['bytes_per_pair'] / 1024:.0f} KiB/pair on disk"
        )
    print(f"{'Ray Data read, no decode, ' + default:44}"
          f"{result['read_only_pairs_per_s_per_core']:>14.1f}")  # fmt: skip
    for name, rate in result["pairs_per_s_per_core_by_format"].items():
        label = f"Ray Data, augment_on=device, {name}"
        print(f"{label:44}{rate:>14.1f}  {_verdict(rate, TARGET_PAIRS_PER_S_PER_CORE)} (400)")
    for variant, rate in result["pairs_per_s_per_core_by_variant"].items():
        if variant != "device":
            print(f"{f'Ray Data, augment_on={variant}, {default}':44}{rate:>14.1f}")
    print(f"default path / its format's floor: {result['share_of_floor']:.0%}  "
          f"{_verdict(result['share_of_floor'], TARGET_SHARE_OF_FLOOR)} (80 %)")  # fmt: skip
    read = result["share_of_one_process_read"]
    print(f"default path / its format's one-process read from disk: {read:.0%}  "
          f"{_verdict(read, TARGET_SHARE_OF_FLOOR)} (80 %)")  # fmt: skip
    photos = result["photo_storage"]
    print(f"bytes per crop on {photos['crops']} crops of real photographs: " + ", ".join(
        f"{f} {photos[f]['bytes_per_crop'] / 1024:.1f} KiB" for f in IMAGE_FORMATS))  # fmt: skip
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
