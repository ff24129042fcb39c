"""What Ray Data's Parquet footer-reader pool costs per pass: sized to the split (the default
here) against Ray's own 32 actors per execution.

    PYTHONPATH=. python bench/footer_pool.py [--shards S] [--passes 3] [--fit]

Each pass reads one split as a training worker group does (``streaming_split(2)``, two
consumers) and decodes it; ``--fit`` adds one small teacher run per setting (test_resnet at
64x64, 2 epochs: bench/deterministic_cost.py's run), where every epoch makes two such passes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from dataclasses import replace

from data_prep.cluster import ensure_ray
from rayjobs.lib.config import load_job_config
from rayjobs.lib.data import FOOTER_ACTORS_VARIABLE, footer_readers, paired_dataset, shard_files
from rayjobs.lib.launch import resolve_data

RAY_DEFAULT = 32


def one_pass(data, split: str) -> float:
    """Seconds to stream and decode ``split`` to two consumers, as a 2-worker trainer reads."""
    start = time.perf_counter()
    dataset = paired_dataset(data, split, ("raw", "c23"), 64, augment=split == "train", seed=0)
    consumers = dataset.streaming_split(2, equal=split == "train")

    def consume(iterator) -> None:
        for _ in iterator.iter_batches(batch_size=8):
            pass

    threads = [threading.Thread(target=consume, args=(c,)) for c in consumers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default="", help="prepared shards; default: the embedded ones")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--fit", action="store_true", help="also one teacher run per setting")
    args = parser.parse_args()
    job = load_job_config("cpu-demo", overrides=["data.methods=[]"])
    job = resolve_data(replace(job, data=replace(job.data, shards=args.shards)))
    ensure_ray()
    files = {split: len(shard_files(job.data.shards, split)) for split in ("train", "val")}
    print(f"shards: {files['train']} train, {files['val']} val files")
    settings = {"sized": None, f"Ray's {RAY_DEFAULT}": str(RAY_DEFAULT)}
    for label, value in settings.items():
        if value is None:
            os.environ.pop(FOOTER_ACTORS_VARIABLE, None)
        else:
            os.environ[FOOTER_ACTORS_VARIABLE] = value
        for split in ("train", "val"):
            actors = value or footer_readers(files[split])
            seconds = [one_pass(job.data, split) for _ in range(args.passes)]
            print(
                f"{label:>9} ({actors} actors) {split:>5}: pass {statistics.mean(seconds):.2f} s "
                f"(min {min(seconds):.2f}, max {max(seconds):.2f}, {args.passes} passes)",
                flush=True,
            )
        if args.fit:
            from bench.deterministic_cost import timed_run  # the same small run

            with tempfile.TemporaryDirectory() as home:
                seconds = timed_run(job.data.shards, True, home, f"footer-{value or 'sized'}")
            print(f"{label:>9}: teacher run, 2 epochs: {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
