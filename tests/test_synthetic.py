"""The synthetic dataset: exact FF++ layout, real H.264, deterministic, detectable faces."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from data_prep.faces import HaarDetector, crop_box
from data_prep.synthetic import METHODS, SyntheticConfig, generate
from data_prep.video import iter_frames, probe
from tests.helpers import TEST_SYNTHETIC

ROOT = Path(__file__).resolve().parents[1]


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_split_files(synthetic_root):
    reals = sorted((synthetic_root / "original_sequences/youtube/raw/videos").glob("*.mp4"))
    assert [p.stem for p in reals] == [f"{i:03d}" for i in range(TEST_SYNTHETIC.reals)]
    for method in METHODS:
        for level in ("raw", "c23", "c40"):
            fakes = sorted(
                (synthetic_root / "manipulated_sequences" / method / level / "videos").glob("*.mp4")
            )
            assert [p.stem for p in fakes] == [
                "000_001",
                "001_000",
                "002_003",
                "003_002",
                "004_005",
                "005_004",
            ]
    splits = {
        s: json.loads((synthetic_root / "splits" / f"{s}.json").read_text())
        for s in ("train", "val", "test")
    }
    assert splits == {"train": [["000", "001"]], "val": [["002", "003"]], "test": [["004", "005"]]}
    info = probe(synthetic_root / "manipulated_sequences/FaceSwap/c40/videos/002_003.mp4")
    assert (info.frame_count, info.width, info.height) == (TEST_SYNTHETIC.frames, 192, 144)


def test_haar_finds_the_face_in_every_frame(synthetic_root):
    detect = HaarDetector()
    path = synthetic_root / "manipulated_sequences/Deepfakes/raw/videos/000_001.mp4"
    for _, frame in iter_frames(path, range(TEST_SYNTHETIC.frames), TEST_SYNTHETIC.frames):
        faces = detect(frame)
        assert faces, "no face found"
        box = crop_box(max(faces, key=lambda b: b[2] * b[3]), 192, 144)
        assert 40 <= box.side <= 144


def test_deterministic_in_the_seed(tmp_path):
    small = SyntheticConfig(reals=6, frames=4)
    first = digests(generate(tmp_path / "a", small))
    assert first == digests(generate(tmp_path / "b", small))
    other = digests(generate(tmp_path / "c", SyntheticConfig(reals=6, frames=4, seed=1)))
    assert (
        other["original_sequences/youtube/raw/videos/000.mp4"]
        != first["original_sequences/youtube/raw/videos/000.mp4"]
    )


def test_command_line(tmp_path):
    command = [
        sys.executable,
        "-m",
        "data_prep",
        "synthetic",
        str(tmp_path / "s"),
        "--reals",
        "6",
        "--frames",
        "3",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "synthetic FF++ dataset at" in result.stdout
    assert len(list((tmp_path / "s").rglob("*.mp4"))) == 30 * 3
    help_text = subprocess.run(
        [sys.executable, "-m", "data_prep", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert all(word in help_text.stdout for word in ("synthetic", "compress", "prepare"))
