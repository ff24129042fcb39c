"""The consumer side of the data path: what a training worker's batch iterator costs.

``paired_dataset``'s decoded pairs are materialised in the object store first, so a timed pass
does no reading or decoding: what it measures is the consumer alone (Ray Data's batcher, the
local shuffle buffer, the Arrow tensor -> NumPy -> torch conversion, the prefetch threads).
Each variant reports pairs per second and the consumer process's CPU time per pair (all its
threads), the figure that adds to the read and decode cost of every pair on a node.

    PYTHONPATH=. python bench/consumer.py --shards /tmp/bench_pipe/shards_256_raw --json c.json

The shards are ``bench/pipeline.py``'s (raw + c23 at 256x256); any prepared shards holding both
levels serve.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import ray
import ray.data

from rayjobs.lib.config import DataConfig
from rayjobs.lib.data import paired_dataset
from rayjobs.lib.tracking import git_commit

LEVELS = ("raw", "c23")


def variants(batch: int, buffer: int, prefetch: int) -> dict[str, Callable]:
    """Name -> a function of the dataset giving a fresh batch iterator."""
    return {
        "training worker: iter_torch_batches, shuffle buffer": lambda d: d.iter_torch_batches(
            batch_size=batch, prefetch_batches=prefetch, local_shuffle_buffer_size=buffer,
            drop_last=True, dtypes=None,
        ),
        "iter_torch_batches, no shuffle buffer": lambda d: d.iter_torch_batches(
            batch_size=batch, prefetch_batches=prefetch, drop_last=True, dtypes=None
        ),
        "iter_batches numpy, shuffle buffer": lambda d: d.iter_batches(
            batch_size=batch, prefetch_batches=prefetch, local_shuffle_buffer_size=buffer,
            drop_last=True, batch_format="numpy",
        ),
        "iter_batches numpy, no shuffle buffer": lambda d: d.iter_batches(
            batch_size=batch, prefetch_batches=prefetch, drop_last=True, batch_format="numpy"
        ),
        "iter_batches numpy, whole blocks": lambda d: d.iter_batches(
            batch_size=None, prefetch_batches=prefetch, batch_format="numpy"
        ),
    }  # fmt: skip


def timed_pass(batches: Iterable) -> tuple[int, float, float]:
    """(pairs, wall seconds, this process's CPU seconds over all its threads) of one pass."""
    pairs, wall, cpu = 0, time.perf_counter(), time.process_time()
    for batch in batches:
        pairs += len(batch["label"])
    return pairs, time.perf_counter() - wall, time.process_time() - cpu


def measure(dataset: ray.data.Dataset, make: Callable, passes: int) -> dict[str, float]:
    """Median pairs/s and CPU ms per pair over ``passes`` passes, after one warm-up pass."""
    timed_pass(make(dataset))
    runs = [timed_pass(make(dataset)) for _ in range(passes)]
    return {
        "pairs_per_s": statistics.median(p / w for p, w, _ in runs),
        "cpu_ms_per_pair": statistics.median(1000 * c / p for p, _, c in runs),
        "pairs_per_pass": runs[0][0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_shards = Path("outputs/bench/pipeline/shards_256_raw")  # bench/pipeline.py's
    parser.add_argument("--shards", type=Path, default=default_shards)
    parser.add_argument("--size", type=int, default=256, help="crop size of the shards")
    parser.add_argument("--rows", type=int, default=1000, help="pairs held in the object store")
    parser.add_argument("--batch", type=int, default=16, help="per-worker batch (32 over 2)")
    parser.add_argument("--buffer", type=int, default=DataConfig.shuffle_buffer)
    parser.add_argument("--prefetch", type=int, default=DataConfig.prefetch_batches)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ray.init(num_cpus=4, log_to_driver=False)
    config = DataConfig(shards=str(args.shards))
    dataset = paired_dataset(config, "train", LEVELS, args.size, augment=True)
    dataset = dataset.limit(args.rows).materialize()
    result = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
        "args": {k: str(v) for k, v in vars(args).items()},
        "variants": {},
    }
    for name, make in variants(args.batch, args.buffer, args.prefetch).items():
        figures = measure(dataset, make, args.passes)
        result["variants"][name] = figures
        print(f"{name:55s} {figures['pairs_per_s']:8.0f} pairs/s "
              f"{figures['cpu_ms_per_pair']:6.2f} ms CPU/pair", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
