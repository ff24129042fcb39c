"""The Parquet read's footer readers and Arrow threads (as many as the read needs, not Ray's 32),
and a decode step that Ray Data's workers load without PyTorch."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import cloudpickle
import ray
from ray.util.state import list_actors

from rayjobs.lib.config import load_job_config
from rayjobs.lib.data import (
    FOOTER_ACTORS_VARIABLE,
    READER_CPU_THREADS,
    READER_CPU_VARIABLE,
    footer_readers,
    paired_dataset,
    read_task_env,
    shard_files,
)
from rayjobs.lib.decode import DecodePairs


def _footer_actors_started() -> int:
    return len(list_actors(filters=[("class_name", "=", "FooterReader")], limit=10_000))


def _one_pass(shards, split: str) -> int:
    job = load_job_config("cpu-demo", overrides=[f"data.shards={shards}", "data.methods=[]"])
    dataset = paired_dataset(job.data, split, ("raw",), 64, augment=False)
    return sum(len(batch["label"]) for batch in dataset.iter_batches(batch_size=64))


def test_a_pass_starts_one_footer_reader_per_ten_files(prepared, ray_session, monkeypatch):
    shards, manifest = prepared
    files = len(shard_files(str(shards), "val"))
    assert footer_readers(files) == 1 and footer_readers(95) == 10 and footer_readers(10**4) == 32
    rows = sum(sum(by_label.values()) for by_label in manifest["rows"]["val"].values())
    before = _footer_actors_started()
    assert _one_pass(shards, "val") == rows
    assert _footer_actors_started() - before == footer_readers(files)
    assert FOOTER_ACTORS_VARIABLE not in os.environ  # set around the read only

    # A value the user exported wins.
    monkeypatch.setenv(FOOTER_ACTORS_VARIABLE, "3")
    before = _footer_actors_started()
    _one_pass(shards, "val")
    assert _footer_actors_started() - before == 3


@ray.remote(num_cpus=0.1)
def _reader_arrow_threads() -> int:
    """The Arrow CPU pool size Ray's Parquet reader sets in this worker's read tasks."""
    from ray.data._internal.datasource_v2.formats.parquet import parquet_file_reader

    return parquet_file_reader._READER_CPU_COUNT


def test_parquet_read_tasks_decompress_with_one_arrow_thread(ray_session, monkeypatch):
    """Ray sizes every read task's Arrow pool for S3 (32 threads); ours run with one. If a Ray
    upgrade renames the variable, this fails instead of the reads silently slowing down."""
    monkeypatch.delenv(READER_CPU_VARIABLE, raising=False)
    assert ray.get(_reader_arrow_threads.remote()) == 32  # Ray's own default
    read = _reader_arrow_threads.options(runtime_env=read_task_env())
    assert ray.get(read.remote()) == READER_CPU_THREADS == 1
    monkeypatch.setenv(READER_CPU_VARIABLE, "3")  # a value the user exported wins
    assert ray.get(_reader_arrow_threads.options(runtime_env=read_task_env()).remote()) == 3


def _read_remote_args(dataset) -> dict:
    """The Ray remote arguments of the dataset's Parquet read operator (its logical plan)."""
    op = dataset._logical_plan.dag
    while type(op).__name__ != "ReadFiles":
        op = op.input_dependencies[0]
    return op.ray_remote_args


def test_paired_datasets_read_with_the_read_task_env(prepared, ray_session, monkeypatch):
    monkeypatch.delenv(READER_CPU_VARIABLE, raising=False)
    job = load_job_config("cpu-demo", overrides=[f"data.shards={prepared[0]}", "data.methods=[]"])
    for augment in (True, False):  # training and evaluation input
        dataset = paired_dataset(job.data, "val", ("raw",), 64, augment=augment)
        env = _read_remote_args(dataset)["runtime_env"]["env_vars"]
        assert env[READER_CPU_VARIABLE] == str(READER_CPU_THREADS)


def test_the_decode_step_loads_in_a_worker_without_torch():
    """Ray Data's workers import what the decode step needs: NumPy and Arrow, not PyTorch and
    timm (3.5 s of CPU per worker process here, against 1.6 s)."""
    step = DecodePairs(("raw", "c40"), "raw", 64, augment=None, keys=False)
    pickled = cloudpickle.dumps(step)
    check = (
        "import pickle, sys; step = pickle.loads(sys.stdin.buffer.read()); "
        "print(sorted(m for m in ('torch', 'timm', 'sffb') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", check], input=pickled, capture_output=True, check=True
    )
    assert found.stdout.decode().strip() == "[]"
    assert type(pickle.loads(pickled)).__module__ == "rayjobs.lib.decode"
