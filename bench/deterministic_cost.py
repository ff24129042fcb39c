"""What ``data.deterministic`` costs: one small teacher run with it on and off, wall time each.

    PYTHONPATH=. python bench/deterministic_cost.py [--shards S] [--repeats 1]

Tiny model (timm's test_resnet at 64x64) so that the input path and Ray Train's fixed start-up
(~35 s on the 2-core VM) dominate; every run gets its own name in a throw-away store.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from rayjobs.lib.config import load_job_config
from rayjobs.lib.launch import resolve_data, run_training

SMALL = ["model.backbone=test_resnet", "model.image_size=64", "data.methods=[]",
         "optim.teacher_epochs=2", "tracking.system_metrics_interval_s=0"]  # fmt: skip


def timed_run(shards: str, deterministic: bool, home: str, name: str) -> float:
    job = load_job_config("cpu-demo", overrides=[
        *SMALL, f"data.shards={shards}", f"data.deterministic={str(deterministic).lower()}",
        f"tracking.storage_path={home}/runs", f"tracking.tracking_uri=sqlite:///{home}/mlflow.db",
        f"tracking.run_name={name}",
    ])  # fmt: skip
    start = time.perf_counter()
    run_training(resolve_data(job), "teacher")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default="", help="prepared shards; default: the embedded ones")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        for repeat in range(args.repeats):
            for deterministic in (True, False):
                name = f"deterministic-{deterministic}-{repeat}"
                seconds = timed_run(args.shards, deterministic, home, name)
                print(f"data.deterministic={deterministic}: {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
