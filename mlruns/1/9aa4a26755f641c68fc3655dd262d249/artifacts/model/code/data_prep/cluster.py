"""Which Ray cluster the project's entry points run on, and running a check on every node."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def running_cluster_address() -> str | None:
    """``RAY_ADDRESS``, else the cluster a ``ray start`` on this machine runs (if alive)."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    from ray._private import services

    address = services.find_bootstrap_address(None)  # written by `ray start --head`
    if address and address in services.find_gcs_addresses():  # ...and its GCS still runs
        return address
    return None


def ensure_ray(verbose: bool = True) -> None:
    """Join the running cluster (``RAY_ADDRESS``, set inside ``ray job submit`` jobs, or one
    ``ray start`` runs on this machine), else start a local one with twice as many logical
    CPUs as cores (at least 4). Says which it uses.

    Trainer workers, Tune trials and Ray Data stages each reserve CPU; on a small machine whole
    CPUs run out and a stage waits forever. Oversubscribing logical CPUs on a laptop is harmless;
    on a real cluster the resources are whatever the cluster declares.
    """
    import ray

    if ray.is_initialized():
        return
    address = running_cluster_address()
    if address:
        context = ray.init(address=address)
        where = f"joined the Ray cluster at {context.address_info.get('gcs_address', address)}"
    else:
        ray.init(address="local", num_cpus=max(4, 2 * (os.cpu_count() or 1)))
        where = "started a local Ray cluster"
    if verbose:
        print(f"{where}: {describe_cluster()}", flush=True)


def describe_cluster() -> str:
    import ray

    nodes = alive_nodes()
    resources = ray.cluster_resources()
    return (
        f"{len(nodes)} node(s), {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"
    )


@dataclass(frozen=True)
class Node:
    node_id: str
    address: str  # the node's IP as Ray knows it
    name: str  # ``ray start --node-name``; Ray's default is the IP

    def __str__(self) -> str:
        named = f"{self.name} at {self.address}" if self.name != self.address else self.address
        return f"node {named} ({self.node_id[:12]})"


def alive_nodes() -> list[Node]:
    import ray

    return [
        Node(n["NodeID"], n["NodeManagerAddress"], n.get("NodeName") or n["NodeManagerAddress"])
        for n in ray.nodes()
        if n["Alive"]
    ]


def on_every_node(
    check: Callable[..., list[str]], *args: Any, timeout_s: float = 60.0
) -> dict[Node, list[str]]:
    """Run ``check(*args)`` once on every alive node (a zero-CPU task pinned to it, so busy
    nodes answer too); return each node's problems. A node that does not answer within
    ``timeout_s`` reports that as its problem.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, max_retries=0)(check)
    nodes = alive_nodes()
    refs = {
        node: task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        ).remote(*args)
        for node in nodes
    }
    ready, late = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    for ref in late:
        ray.cancel(ref, force=True)  # a node stuck on a hung mount must not keep a worker
    still_alive = {node.node_id for node in alive_nodes()}
    problems: dict[Node, list[str]] = {}
    for node, ref in refs.items():
        if node.node_id not in still_alive:
            continue  # removed meanwhile (autoscaler): nothing will run there
        if ref not in ready:
            problems[node] = [f"did not answer within {timeout_s:g} s"]
            continue
        try:
            found = ray.get(ref)
        except ray.exceptions.RayError as error:
            found = [f"the check failed: {error}"]
        problems[node] = found
    return problems


def format_problems(problems: dict[Node, list[str]]) -> str:
    """One line per problem, each naming its node; empty when there is none."""
    return "\n".join(f"  {node}: {p}" for node, found in problems.items() for p in found)
