"""The Parquet read's footer readers: as many as the split's files need, not Ray's 32."""

from __future__ import annotations

import os

from ray.util.state import list_actors

from rayjobs.lib.config import load_job_config
from rayjobs.lib.data import FOOTER_ACTORS_VARIABLE, footer_readers, paired_dataset, shard_files


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
