"""Before any TorchTrainer or Tune trial starts: does every node see what the job needs?

Nodes that join later (an autoscaler adding GPU workers) are not checked; every trial and job
runs its own preflight, so they are checked by the next one.

Ray schedules Train workers, Ray Data reads, the Train controller and Tune trials on any node,
so a location that exists only on the driver's disk fails late (a rank-0 worker on another node
fails to save its first checkpoint after a whole epoch) or loses work. One zero-CPU task pinned
to each alive node checks, in seconds, that:

- every input file (one shard per split, the teacher's ``state.pt``) can be read there;
- the storage location can be written there, and shows the marker the driver wrote: a folder
  that only looks shared (the same path on separate disks) is caught too;
- a SQLite MLflow file is the same file everywhere (a marker written beside it by the driver is
  visible), else the job is refused: Tune trials on other nodes would each open an empty
  database of their own, and their runs would be lost;
- a tracking server answers there (``http://127.0.0.1:5000`` works on the driver's node only).
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from data_prep import storage
from data_prep.cluster import alive_nodes, format_problems, on_every_node

MARKERS = ".preflight"


class PreflightError(RuntimeError):
    """A node cannot see what the job needs; the message names each node and path."""


@dataclass(frozen=True)
class Needs:
    """What every node must reach for one job."""

    readable: tuple[str, ...] = ()  # files (paths or URIs)
    writable: str = ""  # a storage folder every node writes to ("" = none)
    tracking_db: str = ""  # a local SQLite MLflow file ("" = a server, or none)
    tracking_server: str = ""  # an http(s) MLflow tracking URI ("" = none)


def _readable_problems(files: tuple[str, ...]) -> list[str]:
    problems = []
    for location in files:
        try:
            fs, path = storage.filesystem(location)
            with fs.open_input_stream(path) as stream:
                stream.read(1)
        except (OSError, ValueError) as error:
            problems.append(f"{location}: not readable on this node ({error})")
    return problems


def _server_problems(uri: str) -> list[str]:
    """Can this node open a connection to the tracking server?"""
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=5):
            return []
    except OSError as error:
        return [
            f"{uri}: the MLflow tracking server does not answer from this node ({error}); "
            "give an address every node reaches, not 127.0.0.1"
        ]


def _first_pass(needs: Needs, markers: str, token: str) -> list[str]:
    """On each node: read the inputs, see the driver's markers, write this node's marker."""
    import ray

    problems = _readable_problems(needs.readable)
    if needs.tracking_server:
        problems += _server_problems(needs.tracking_server)
    if needs.tracking_db:
        seen = Path(f"{needs.tracking_db}.{token}.preflight")
        if not seen.is_file() or seen.read_text() != token:
            problems.append(
                f"{needs.tracking_db}: this node does not see the driver's SQLite MLflow store; "
                "on a cluster run `mlflow server` and set MLFLOW_TRACKING_URI=http://HOST:5000"
            )
    if needs.writable:
        try:
            sees_driver = storage.read_text(storage.join(markers, "driver")) == token
        except (OSError, ValueError):
            sees_driver = False
        if not sees_driver:  # and writes nothing: it would land on this node's own disk
            problems.append(
                f"{needs.writable}: this node does not see what the driver wrote there; "
                "use storage every node shares (a URI such as s3://..., or NFS/EFS mounted "
                "at the same path)"
            )
            return problems
        node_id = ray.get_runtime_context().get_node_id()
        try:
            storage.write_text(storage.join(markers, node_id), token)
        except (OSError, ValueError) as error:
            problems.append(f"{needs.writable}: not writable on this node ({error})")
    return problems


def _second_pass(markers: str, token: str, node_ids: tuple[str, ...]) -> list[str]:
    """On each node: every other node's marker is visible here."""
    problems = []
    for node_id in node_ids:
        try:
            ok = storage.read_text(storage.join(markers, node_id)) == token
        except (OSError, ValueError):
            ok = False
        if not ok:
            problems.append(
                f"{markers}: the marker written by node {node_id[:12]} is not visible here; "
                "the storage location is not shared"
            )
    return problems


def check_every_node(needs: Needs, timeout_s: float = 60.0) -> None:
    """Raise ``PreflightError`` naming every node and path that fails; returns in seconds."""
    token = uuid.uuid4().hex
    markers = storage.join(needs.writable, MARKERS, token) if needs.writable else ""
    db_marker = Path(f"{needs.tracking_db}.{token}.preflight") if needs.tracking_db else None
    if db_marker is not None and len(alive_nodes()) == 1:
        db_marker = None  # one node: the driver's database is the only one
        needs = Needs(needs.readable, needs.writable, "", needs.tracking_server)
    try:
        if markers:
            storage.write_text(storage.join(markers, "driver"), token)
        if db_marker is not None:
            db_marker.write_text(token)
        problems = on_every_node(_first_pass, needs, markers, token, timeout_s=timeout_s)
        report = format_problems(problems)
        if not report and markers:
            wrote = tuple(node.node_id for node in problems)
            report = format_problems(
                on_every_node(_second_pass, markers, token, wrote, timeout_s=timeout_s)
            )
    finally:
        if markers:
            storage.remove(markers)
        if db_marker is not None:
            db_marker.unlink(missing_ok=True)
    if report:
        raise PreflightError(
            "preflight: not every node of the Ray cluster sees what the job needs "
            f"(shards, teacher checkpoint, storage, tracking):\n{report}"
        )
