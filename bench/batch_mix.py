"""How well training batches mix classes and videos (README: "Reproducible runs").

Reads a job's training stream in the order a worker gets it with ``data.deterministic`` (files
shuffled with the seed, Ray Data order kept, the local shuffle buffer seeded per epoch), with
only the ``label`` and ``video_key`` columns (decoding does not change the order), and reports
per batch: the fake share, whether both classes are present, and how many videos it holds.

    PYTHONPATH=. python bench/batch_mix.py                      # the embedded default, cpu-demo
    PYTHONPATH=. python bench/batch_mix.py --set data.methods=[] --set data.batch_size=32 \
        --set data.shuffle_buffer=2048 --set scaling.num_workers=1
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import ray.data
from ray.data import FileShuffleConfig

from data_prep.cluster import ensure_ray
from rayjobs.lib.config import add_config_arguments, config_from_args
from rayjobs.lib.data import methods_filter, shard_files, sized_footer_pool
from rayjobs.lib.launch import resolve_data
from rayjobs.lib.reproducible import ingest_options, stream_seed


def batch_mix(job, epochs: int = 2) -> dict:
    """Per-batch statistics over ``epochs`` epochs of one worker's batches (its batch size)."""
    per_worker = job.data.batch_size // job.scaling.num_workers
    files = shard_files(job.data.shards, "train")
    with sized_footer_pool(len(files)):  # as paired_dataset reads
        dataset = ray.data.read_parquet(files, shuffle=FileShuffleConfig(seed=job.seed))
    dataset = dataset.select_columns(["label", "method", "video_key"])
    if job.data.methods:
        dataset = dataset.filter(expr=methods_filter(job.data.methods))
    dataset.context.execution_options = ingest_options(True)
    shares, videos = [], []
    for epoch in range(epochs):
        for batch in dataset.iter_batches(
            batch_size=per_worker, batch_format="numpy", drop_last=True,
            local_shuffle_buffer_size=job.data.shuffle_buffer or None,
            local_shuffle_seed=stream_seed(job.seed, epoch) if job.data.shuffle_buffer else None,
        ):  # fmt: skip
            shares.append(float(np.mean(batch["label"])))
            videos.append(len(set(batch["video_key"].tolist())))
    shares_array, videos_array = np.array(shares), np.array(videos)
    return {
        "batch_size_per_worker": per_worker,
        "shuffle_buffer": job.data.shuffle_buffer,
        "methods": list(job.data.methods) or "all",
        "batches": len(shares),
        "fake_share_mean": round(float(shares_array.mean()), 3),
        "fake_share_sd": round(float(shares_array.std()), 3),
        "batches_with_both_classes": round(
            float(np.mean((shares_array > 0) & (shares_array < 1))), 3
        ),
        "videos_per_batch_mean": round(float(videos_array.mean()), 2),
        "videos_per_batch_min": int(videos_array.min()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    job = resolve_data(config_from_args(args))
    ensure_ray()
    print(json.dumps(batch_mix(job, args.epochs), indent=2))


if __name__ == "__main__":
    main()
