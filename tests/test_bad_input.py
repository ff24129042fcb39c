"""Every kind of bad input is a recorded skip with its reason, and no good video loses a row."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_prep.prepare import prepare
from data_prep.video import Encoding, encode_video, iter_frames, probe
from tests.helpers import TEST_FRAMES, small_prepare_config

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("raw", "c23", "c40")


def folder(root: Path, method: str, level: str) -> Path:
    base = (
        root / "original_sequences" / "youtube"
        if method == "original"
        else (root / "manipulated_sequences" / method)
    )
    return base / level / "videos"


def frames_of(path: Path) -> list[np.ndarray]:
    count = probe(path).frame_count
    return [frame for _, frame in iter_frames(path, range(count), count)]


@pytest.fixture(scope="module")
def bad_tree(synthetic_root, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Good FF++ videos beside one of each kind of bad input; returns (root, name -> reason)."""
    root = tmp_path_factory.mktemp("bad") / "ffpp"
    (root / "splits").mkdir(parents=True)
    pairs = {"train": [["000", "001"], ["002", "003"], ["006", "007"]], "val": [["008", "009"]]}
    pairs["test"] = [["004", "005"]]
    for split, listed in pairs.items():
        (root / "splits" / f"{split}.json").write_text(json.dumps(listed))
    good = {("original", "000"), ("original", "001"), ("Deepfakes", "000_001")}
    for method, video in good:
        for level in LEVELS:
            target = folder(root, method, level)
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(folder(synthetic_root, method, level) / f"{video}.mp4", target)
    reals = folder(root, "original", "raw")
    source = reals / "000.mp4"
    fps = Fraction(25)

    def all_levels(name: str, frames: list[np.ndarray]) -> None:
        for level in LEVELS:
            encoding = Encoding.lossless() if level == "raw" else Encoding(crf=23)
            encode_video(frames, folder(root, "original", level) / name, fps, encoding)

    def all_levels_bytes(name: str, content: bytes) -> None:
        for level in LEVELS:
            (folder(root, "original", level) / name).write_bytes(content)

    frames = frames_of(source)
    all_levels_bytes("002.mp4", b"")  # zero bytes
    all_levels_bytes("003.mp4", source.read_bytes()[: source.stat().st_size // 2])  # truncated
    all_levels_bytes("004.mp4", b"this is a text file, not a video\n")  # not a video
    all_levels("005.mp4", frames[:5])  # shorter than the frames asked for: all used, noted
    all_levels("006.mp4", frames)
    encode_video(frames[:12], folder(root, "original", "c23") / "006.mp4", fps, Encoding())
    all_levels("007.mp4", frames)
    smaller = [f[:96, :128] for f in frames]
    encode_video(smaller, folder(root, "original", "c40") / "007.mp4", fps, Encoding())
    encode_video(frames, reals / "008.mp4", fps, Encoding.lossless())  # no c23/c40 copies
    rng = np.random.default_rng(0)
    noise = [(rng.random((144, 192, 3)) * 60).astype(np.uint8) for _ in range(10)]
    all_levels("009.mp4", noise)  # no face anywhere
    # An unreadable directory: a file where a level's videos folder should be.
    folder(root, "FaceSwap", "raw").parent.mkdir(parents=True)
    folder(root, "FaceSwap", "raw").write_text("not a directory")
    reasons = {
        "002": "empty file (0 bytes)",
        "003": "not a readable video",
        "004": "not a readable video",
        "006": "c23 has 12 frames of 192x144, raw has 20 of 192x144",
        "007": "c40 has 20 frames of 128x96",
        "008": "no c23, c40 version found",
        "009": "no face detected in any of 8 sampled frames",
        "FaceSwap": "unreadable directory",
    }
    return root, reasons


@pytest.fixture(scope="module")
def bad_manifest(bad_tree, ray_session, tmp_path_factory):
    root, _ = bad_tree
    output = tmp_path_factory.mktemp("bad_out")
    return output, prepare(small_prepare_config(root, output), progress=False)


def test_each_bad_input_is_skipped_with_its_reason(bad_tree, bad_manifest):
    _, reasons = bad_tree
    _, manifest = bad_manifest
    skipped = manifest["skipped"]
    for name, reason in reasons.items():
        matches = [s for s in skipped if name in s["path"] and reason in s["reason"]]
        assert matches, f"{name}: no skip saying {reason!r} in {skipped}"
    assert len(skipped) == len(reasons)


def test_good_videos_keep_all_their_rows(bad_manifest):
    output, manifest = bad_manifest
    table = pq.read_table(sorted(output.glob("*/part-*.parquet")))
    per_video: dict[str, int] = {}
    for key in table["video_key"].to_pylist():
        per_video[key] = per_video.get(key, 0) + 1
    assert per_video == {
        "ffpp/original/000": TEST_FRAMES,
        "ffpp/original/001": TEST_FRAMES,
        "ffpp/Deepfakes/000_001": TEST_FRAMES,
        "ffpp/original/005": 5,  # shorter than asked: all its frames
    }
    assert manifest["total_rows"] == table.num_rows
    notes = {n["video_key"]: n["note"] for n in manifest["notes"]}
    assert notes["ffpp/original/005"] == "only 5 frames (< 8): all used"


def test_missing_root_is_a_clear_error_and_exit_code(tmp_path, ray_session):
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(
        FileNotFoundError, match=f"{missing}: FaceForensics\\+\\+ dataset root not found"
    ):
        prepare(small_prepare_config(missing, tmp_path / "out"), progress=False)
    command = [
        sys.executable,
        "-m",
        "data_prep",
        "prepare",
        "--root",
        str(missing),
        "--output",
        str(tmp_path / "o"),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert f"{missing}: FaceForensics++ dataset root not found" in result.stderr


def test_notes_of_finished_shards_survive_a_resume(bad_tree, bad_manifest, tmp_path, ray_session):
    """Interrupted after the shard holding a noted video: the resumed manifest keeps the note."""
    root, _ = bad_tree
    _, full = bad_manifest
    output = tmp_path / "resumed"
    config = replace(small_prepare_config(root, output), shard_target_mb=0.05)
    prepare(config, progress=False)
    noted = "ffpp/original/005"
    shards = sorted(output.glob("*/part-*.parquet"))
    holder = next(
        s
        for s in shards
        if noted in pq.read_table(s, columns=["video_key"])["video_key"].to_pylist()
    )
    # The state a run killed after that shard leaves: its split's later shards never finished
    # (there may be none), and the manifest is not complete.
    for shard in [s for s in shards if s.parent == holder.parent and s.name > holder.name]:
        shard.unlink()
    manifest_path = output / "manifest.json"
    state = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({"config": state["config"], "complete": False}))

    resumed = prepare(config, progress=False)
    assert resumed["complete"]
    assert {"video_key": noted, "note": "only 5 frames (< 8): all used"} in resumed["notes"]
    assert resumed["notes"] == full["notes"]
