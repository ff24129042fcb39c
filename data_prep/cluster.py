"""Which Ray cluster the project's entry points run on."""

from __future__ import annotations

import os


def ensure_ray() -> None:
    """Join the cluster at ``RAY_ADDRESS`` (set inside ``ray job submit`` jobs), else start a
    local one with twice as many logical CPUs as cores (at least 4).

    Trainer workers, Tune trials and Ray Data stages each reserve CPU; on a small machine whole
    CPUs run out and a stage waits forever. Oversubscribing logical CPUs on a laptop is harmless;
    on a real cluster the resources are whatever the cluster declares.
    """
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(address="local", num_cpus=max(4, 2 * (os.cpu_count() or 1)))
