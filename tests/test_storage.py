"""The storage layer on a local folder and on a real S3 endpoint (moto on 127.0.0.1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from data_prep import storage
from rayjobs.lib.strengths import load_strengths
from tests.servers import s3_endpoint

BUCKET = "storage-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """An S3 endpoint, configured the standard way (AWS_ENDPOINT_URL and keys) for this module."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with s3_endpoint(log, buckets=(BUCKET,)) as endpoint, pytest.MonkeyPatch.context() as patch:
        for key, value in endpoint.env().items():
            patch.setenv(key, value)
        storage._root.cache_clear()  # filesystems are cached per bucket: none from before
        yield endpoint
        storage._root.cache_clear()


@pytest.fixture(params=["local", "s3"])
def base(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    request.getfixturevalue("s3")
    return f"s3://{BUCKET}/{tmp_path.name}"


def test_locations_are_absolute_paths_or_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.normalise("outputs/runs") == str(tmp_path / "outputs" / "runs")
    assert storage.normalise(f"file://{tmp_path}/x") == str(tmp_path / "x")
    assert storage.normalise("s3://bucket/runs/") == "s3://bucket/runs"
    assert storage.join("s3://bucket/runs", "a", "best") == "s3://bucket/runs/a/best"
    assert storage.join("/data", "a", "best") == "/data/a/best"
    assert storage.name("s3://bucket/runs/a/best") == "best"
    assert storage.parent("s3://bucket/runs/a/best") == "s3://bucket/runs/a"
    assert storage.local_path("s3://bucket/x") is None
    assert not storage.is_uri("/data/s3:/bucket")


def test_files_round_trip_and_list(base):
    storage.write_text(storage.join(base, "train", "part-00001.parquet"), "b")
    storage.write_text(storage.join(base, "train", "part-00000.parquet"), "a")
    storage.write_text(storage.join(base, "train", "part-00002.tmp"), "partial")
    storage.write_text(storage.join(base, "epoch_0000", "state.pt"), "s")
    assert storage.read_text(storage.join(base, "train", "part-00000.parquet")) == "a"
    assert [
        storage.name(f) for f in storage.list_files(storage.join(base, "train"), "part-*.parquet")
    ] == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert [storage.name(d) for d in storage.list_dirs(base, "epoch_*")] == ["epoch_0000"]
    assert storage.list_files(storage.join(base, "absent")) == []
    assert storage.is_file(storage.join(base, "epoch_0000", "state.pt"))
    assert storage.is_dir(storage.join(base, "train"))
    storage.remove(storage.join(base, "train"))
    assert not storage.exists(storage.join(base, "train", "part-00000.parquet"))


def test_a_missing_file_is_named(base):
    missing = storage.join(base, "nope", "state.pt")
    with pytest.raises(FileNotFoundError, match=r"nope/state\.pt: file not found"):
        storage.read_bytes(missing)


def test_local_writes_leave_no_partial_file(tmp_path):
    target = tmp_path / "manifest.json"
    storage.write_text(target, "old")
    storage.write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_publish_dir_copies_a_checkpoint_folder(base, tmp_path):
    source = storage.join(base, "run", "epoch_0003")
    storage.write_bytes(storage.join(source, "state.pt"), b"\x00weights")
    storage.write_text(storage.join(source, "metrics.json"), "{}")
    target = storage.join(base, "run", "best")
    storage.write_text(storage.join(target, "state.pt"), "an older best")
    storage.publish_dir(source, target, last="state.pt")
    assert storage.read_bytes(storage.join(target, "state.pt")) == b"\x00weights"
    assert storage.read_text(storage.join(target, "metrics.json")) == "{}"
    assert sorted(storage.name(f) for f in storage.list_files(target)) == [
        "metrics.json",
        "state.pt",
    ]


def test_upload_and_download_between_local_disk_and_the_bucket(s3, tmp_path):
    local = tmp_path / "shard.parquet"
    local.write_bytes(os.urandom(1000))
    location = f"s3://{BUCKET}/up/shard.parquet"
    storage.upload_file(local, location)
    assert s3.keys(BUCKET, "up/") == ["up/shard.parquet"]
    copy = storage.download_dir(f"s3://{BUCKET}/up", tmp_path / "down")
    assert (copy / "shard.parquet").read_bytes() == local.read_bytes()
    assert not Path("s3:").exists()  # nothing went to a local folder named after the URI


def test_a_manipulations_file_is_read_from_either_store(base):
    location = storage.join(base, "manipulations.json")
    storage.write_text(location, json.dumps({"Deepfakes": {"000_001": 0.25}}))
    assert load_strengths(location) == {("Deepfakes", "000_001"): 0.25}
