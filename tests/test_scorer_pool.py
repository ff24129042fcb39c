"""The scoring actor pool: one actor per GPU, else CPU actors that leave Ray Data room to decode."""

from __future__ import annotations

import pytest
import ray

from rayjobs.lib.scorer_pool import scorer_pool


@pytest.mark.parametrize(("cpus", "actors"), [(1, 1), (2, 1), (4, 2), (5, 2), (64, 32)])
def test_cpu_clusters_grow_up_to_one_actor_per_two_cpus(cpus, actors):
    pool = scorer_pool({"CPU": float(cpus)})
    assert (pool["compute"].min_size, pool["compute"].max_size) == (1, actors)
    assert (pool["num_gpus"], pool["num_cpus"]) == (0, 0.5)


def test_gpu_clusters_run_one_actor_per_gpu():
    pool = scorer_pool({"CPU": 64.0, "GPU": 8.0})
    assert (pool["compute"].min_size, pool["compute"].max_size) == (8, 8)
    assert (pool["num_gpus"], pool["num_cpus"]) == (1, 1)


def test_the_pool_reads_the_connected_cluster(ray_session):
    expected = max(1, int(ray.cluster_resources()["CPU"]) // 2)
    assert scorer_pool()["compute"].max_size == expected
