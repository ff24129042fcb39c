"""Wall time of the video bootstrap behind every evaluation table's intervals.

    PYTHONPATH=. python bench/bootstrap.py [--videos 700] [--frames 32] [--resamples 1000]

A test split of ``--videos`` videos (one real per four fakes, as FF++'s test split with its
four methods) of ``--frames`` frames each, scores drawn at random with ties; times one
``video_bootstrap`` (a table cell) and one ``paired_bootstraps`` against two baselines (a
model beside its baselines), each run twice: the first run draws the resamples, later cells on
the same videos reuse them. Pure NumPy: runs anywhere ``sffb`` imports. To compare commits,
run it with ``PYTHONPATH`` set to each commit's tree (BENCHMARKS.md, "Bootstrap intervals").
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial

import numpy as np

from sffb.metrics import paired_bootstraps, video_bootstrap


def scored_split(videos: int, frames: int, seed: int = 0):
    """(labels, scores, video keys): every fifth video real, scores rounded to 3 digits."""
    rng = np.random.default_rng(seed)
    video_labels = (np.arange(videos) % 5 != 0).astype(np.int64)
    labels = np.repeat(video_labels, frames)
    keys = np.repeat([f"v{i:04d}" for i in range(videos)], frames)
    offsets = np.repeat(rng.normal(0, 0.15, videos), frames)
    scores = np.clip(0.4 + 0.2 * labels + offsets + rng.normal(0, 0.1, labels.size), 0, 1)
    return labels, np.round(scores, 3), keys


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=700, help="FF++ test: 140 real, 560 fake")
    parser.add_argument("--frames", type=int, default=32, help="frames per video")
    parser.add_argument("--resamples", type=int, default=1000, help="evaluation's default")
    args = parser.parse_args()
    labels, scores, keys = scored_split(args.videos, args.frames)
    rng = np.random.default_rng(1)
    baselines = {
        name: np.clip(scores + rng.normal(0, 0.05, scores.size), 0, 1).round(3)
        for name in ("teacher", "sffb-alone")
    }
    cell = partial(video_bootstrap, labels, scores, keys, resamples=args.resamples)
    paired = partial(paired_bootstraps, labels, scores, baselines, keys, resamples=args.resamples)
    result = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "frames": int(labels.size),
        "videos": args.videos,
        "resamples": args.resamples,
        "cell_first_s": round(timed(cell), 3),
        "cell_again_s": round(timed(cell), 3),
        "paired_two_baselines_s": round(timed(paired), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
