"""Fixed cost of one training run: a tiny teacher (timm's test backbone, 64x64 crops, one
epoch of a few batches) trained with ``run_training`` several times on one local Ray, so that
what is measured is Ray Train's and the job's start-up and teardown, not the training.

    PYTHONPATH=. python bench/fit_startup.py [--runs 3] [--workers 2] [--workdir /tmp/bench_fit]

Prints each run's ``TorchTrainer.fit`` and ``run_training`` wall time and the median of the
runs after the first (the first also starts Ray's worker pool). To compare commits, run this
file with ``PYTHONPATH`` and the working directory set to each commit's tree: Ray's workers
import the job's modules from the driver's working directory (BENCHMARKS.md, "Fixed cost of a
training run").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from ray.train.torch import TorchTrainer

from data_prep.cluster import ensure_ray
from data_prep.prepare import PrepareConfig, prepare
from data_prep.synthetic import SyntheticConfig, generate
from rayjobs.lib.config import load_job_config
from rayjobs.lib.launch import run_training

TINY = [
    "model.backbone=test_resnet",
    "model.image_size=64",
    "data.methods=[]",
    "data.batch_size=8",
    "optim.epochs=1",
    "optim.teacher_epochs=null",
]


def tiny_shards(workdir: Path) -> Path:
    """6 real clips and their fakes, 8 frames each at 64x64: a few batches per epoch."""
    output = workdir / "shards"
    if not (output / "manifest.json").is_file():
        root = generate(workdir / "videos", SyntheticConfig(reals=6, frames=20))
        config = PrepareConfig(
            dataset="ffpp", root=str(root), output=str(output), frames_per_video=8,
            crop_size=64, shard_target_mb=1.0,
        )  # fmt: skip
        prepare(config, progress=False)
    return output


def timed_fit() -> list[float]:
    """Patches ``TorchTrainer.fit`` to record its wall time in the returned list."""
    durations: list[float] = []
    fit = TorchTrainer.fit

    def recorded(self):
        start = time.perf_counter()
        try:
            return fit(self)
        finally:
            durations.append(time.perf_counter() - start)

    TorchTrainer.fit = recorded
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="DDP workers (scaling.num_workers)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_fit"))
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    shards = tiny_shards(workdir)
    ensure_ray(verbose=False)
    fits, runs = timed_fit(), []
    for i in range(args.runs):
        job = load_job_config(
            "cpu-demo",
            overrides=[*TINY, f"scaling.num_workers={args.workers}", f"data.shards={shards}"],
        )
        home = workdir / f"home-{time.time_ns()}"  # a fresh store: nothing to resume
        tracking = replace(
            job.tracking, storage_path=str(home / "runs"),
            tracking_uri=f"sqlite:///{home / 'mlflow.db'}", experiment="bench-fit",
        )  # fmt: skip
        start = time.perf_counter()
        run_training(replace(job, tracking=tracking), "teacher")
        runs.append(time.perf_counter() - start)
        print(f"run {i + 1}: fit {fits[-1]:.1f} s, run_training {runs[-1]:.1f} s", flush=True)
    later = slice(1, None) if args.runs > 1 else slice(None)
    figures = {
        "fit_s": [round(x, 1) for x in fits],
        "run_training_s": [round(x, 1) for x in runs],
        "median_fit_s_after_first": round(statistics.median(fits[later]), 1),
        "median_run_training_s_after_first": round(statistics.median(runs[later]), 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
