"""Where the model actors that score a Ray dataset run (evaluation, robustness, detection)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ray
import ray.data


def scorer_pool(resources: Mapping[str, float] | None = None) -> dict[str, Any]:
    """``map_batches`` arguments for the pool of model actors scoring a dataset.

    One actor per GPU of the cluster (evaluation used one GPU of a multi-GPU node). Without
    GPUs, up to one actor per two logical CPUs, each running one torch thread while Ray Data
    keeps the other half to decode. Extra actors start only while blocks wait, so a caller
    whose input is one large block gets one actor (evaluation cuts its split into blocks of
    one batch).
    """
    resources = ray.cluster_resources() if resources is None else resources
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return {"compute": ray.data.ActorPoolStrategy(size=gpus), "num_gpus": 1, "num_cpus": 1}
    actors = max(1, int(resources.get("CPU", 1)) // 2)
    return {
        "compute": ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
        "num_gpus": 0,
        "num_cpus": 0.5,
    }
