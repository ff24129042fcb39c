"""data_prep end to end on the synthetic FF++ dataset: real H.264, real Ray, real Parquet."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from data_prep.image_columns import level_column
from data_prep.prepare import prepare
from data_prep.records import SPLITS
from data_prep.shards import complete_shards
from tests.helpers import TEST_FRAMES, TEST_SYNTHETIC, crop_pixels, small_prepare_config

ROOT = Path(__file__).resolve().parents[1]


def read_all(output: Path):
    return pq.read_table(sorted(output.glob("*/part-*.parquet"))).to_pylist()


def shard_digests(output: Path) -> dict[str, str]:
    return {
        str(p.relative_to(output)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(output.glob("*/part-*.parquet"))
    }


def crops(row: dict, level: str) -> np.ndarray:
    return crop_pixels(row[level_column(row, level)], level_column(row, level))


def test_row_counts_match_manifest_and_dataset(prepared):
    output, manifest = prepared
    rows = read_all(output)
    videos = TEST_SYNTHETIC.reals * (1 + 4)  # each real has one fake per method as target
    assert manifest["complete"] and manifest["skipped"] == []
    assert len(rows) == manifest["total_rows"] == videos * TEST_FRAMES
    counted: dict = {}
    for row in rows:
        per_method = counted.setdefault(row["split"], {}).setdefault(row["method"], {})
        per_method[str(row["label"])] = per_method.get(str(row["label"]), 0) + 1
    assert counted == manifest["rows"]
    assert sum(s["rows"] for s in manifest["shards"]) == len(rows)
    assert set(counted) == set(SPLITS)


def test_splits_are_disjoint_by_identity(prepared):
    output, _ = prepared
    identities: dict[str, set[str]] = {split: set() for split in SPLITS}
    for row in read_all(output):
        identities[row["split"]].update(row["video_id"].split("_"))
    assert identities["train"].isdisjoint(identities["val"])
    assert identities["train"].isdisjoint(identities["test"])
    assert identities["val"].isdisjoint(identities["test"])


def test_pairs_are_pixel_aligned(prepared):
    output, _ = prepared
    rows = read_all(output)[:: TEST_FRAMES // 2]
    aligned, shifted = [], []
    for row in rows:
        raw, c23 = crops(row, "raw"), crops(row, "c23")
        assert raw.shape == c23.shape == (64, 64, 3)
        aligned.append(cv2.PSNR(raw, c23))
        shifted.append(cv2.PSNR(raw[:, 4:], c23[:, :-4]))
    assert min(aligned) > 30
    assert max(shifted) < min(aligned) - 8


def test_frame_indices_spread_over_the_whole_video(prepared):
    output, _ = prepared
    by_video: dict[str, list[int]] = {}
    for row in read_all(output):
        by_video.setdefault(row["video_key"], []).append(row["frame_index"])
        assert row["frame_count"] == TEST_SYNTHETIC.frames
    expected = np.linspace(0, TEST_SYNTHETIC.frames - 1, TEST_FRAMES).round().astype(int).tolist()
    assert len(by_video) == TEST_SYNTHETIC.reals * 5
    assert all(sorted(indices) == expected for indices in by_video.values())


def test_video_keys_keep_methods_apart(prepared):
    output, _ = prepared
    keys = {row["video_key"] for row in read_all(output)}
    assert "ffpp/Deepfakes/000_001" in keys and "ffpp/Face2Face/000_001" in keys


def test_second_run_is_a_no_op_and_overwrite_reproduces_the_bytes(prepared, synthetic_root):
    output, manifest = prepared
    before = shard_digests(output)
    mtimes = {p: p.stat().st_mtime_ns for p in output.glob("*/part-*.parquet")}
    config = small_prepare_config(synthetic_root, output)
    assert prepare(config, progress=False) == manifest
    assert {p: p.stat().st_mtime_ns for p in output.glob("*/part-*.parquet")} == mtimes
    redone = prepare(config, overwrite=True, progress=False)
    assert shard_digests(output) == before
    assert redone["shards"] == manifest["shards"]


def test_another_configuration_on_the_same_output_is_refused(prepared, synthetic_root):
    output, _ = prepared
    with pytest.raises(ValueError, match=r"another configuration.*--overwrite"):
        prepare(small_prepare_config(synthetic_root, output, crop_size=32), progress=False)


def test_killed_run_resumes_to_the_same_shards(prepared, synthetic_root, tmp_path, ray_session):
    reference, _ = prepared
    output = tmp_path / "killed"
    config = small_prepare_config(synthetic_root, output)
    command = [
        sys.executable, "-m", "data_prep", "prepare", "--dataset", "ffpp",
        "--root", str(synthetic_root), "--output", str(output),
        "--frames-per-video", str(config.frames_per_video), "--crop-size", str(config.crop_size),
        "--shard-target-mb", str(config.shard_target_mb),
    ]  # fmt: skip
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not complete_shards(output, "train") and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = len(complete_shards(output, "train"))
    assert finished_before_kill >= 1
    assert len(shard_digests(output)) < len(shard_digests(reference))  # it really was cut short

    manifest = prepare(config, progress=False)
    assert manifest["complete"]
    assert shard_digests(output) == shard_digests(reference)
    assert not list(output.glob("*/*.tmp"))


def test_shards_interleave_methods_and_reals(prepared):
    """Streaming readers see mixed classes: videos are not grouped by method in the shards."""
    output, _ = prepared
    order = list(
        dict.fromkeys(row["video_key"] for row in read_all(output) if row["split"] == "train")
    )
    assert order != sorted(order)
    labels = [0 if "/original/" in key else 1 for key in order]
    assert labels != sorted(labels) and labels != sorted(labels, reverse=True)
