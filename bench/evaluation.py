"""Wall time of one evaluation as the main job runs it: a model and its baselines scored on the
test and validation splits (calibration), the tables printed, nothing logged to MLflow.

    PYTHONPATH=. python bench/evaluation.py --checkpoint STUDENT --baseline teacher=TEACHER \
        [--shards S] [--levels c40] [--methods Deepfakes]

Ray is started before the clock, as a job's Ray is up when it evaluates. To compare commits,
run this file with ``PYTHONPATH`` set to each commit's tree (BENCHMARKS.md, "Evaluation
scoring, CPU").
"""

from __future__ import annotations

import argparse
import json
import time

from data_prep import storage
from data_prep.cluster import ensure_ray
from data_prep.defaults import embedded_prepare_config, embedded_strengths
from rayjobs.evaluate import evaluate, parse_baselines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="the evaluated model's folder")
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME=CHECKPOINT")
    parser.add_argument("--shards", help="prepared shards (default: the embedded ones)")
    parser.add_argument("--levels", nargs="+", default=["c40"])
    parser.add_argument("--methods", nargs="+", default=["Deepfakes"])
    args = parser.parse_args()
    shards = storage.normalise(args.shards or embedded_prepare_config().output)
    ensure_ray()
    start = time.perf_counter()
    evaluate(
        args.checkpoint, shards, tuple(args.levels), tuple(args.methods),
        baselines=parse_baselines(args.baseline), model="student",
        strengths=embedded_strengths(shards),
    )  # fmt: skip
    print(json.dumps({"evaluate_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
