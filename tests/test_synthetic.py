"""The synthetic dataset: exact FF++ layout, real H.264, deterministic, detectable faces."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from data_prep.faces import HaarDetector, crop_box
from data_prep.synthetic import (
    MARKER,
    METHODS,
    STRENGTHS,
    SyntheticConfig,
    config_digest,
    face_mask,
    generate,
    identities,
    manipulate,
    render_real,
    split_pairs,
)
from data_prep.video import iter_frames, probe
from tests.helpers import TEST_SYNTHETIC

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")


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
    """Byte for byte, c40 included (x264's bit-exact mode), whatever the number of processes."""
    small = SyntheticConfig(reals=6, frames=6)
    first = digests(generate(tmp_path / "a", small, workers=1))
    assert first == digests(generate(tmp_path / "b", small, workers=2))
    other = digests(generate(tmp_path / "c", replace(small, seed=1)))
    assert (
        other["original_sequences/youtube/raw/videos/000.mp4"]
        != first["original_sequences/youtube/raw/videos/000.mp4"]
    )


def test_a_dataset_written_before_a_config_field_existed_is_not_generated_again(tmp_path):
    """Fields added later (the trace amplitudes, the checker cell) read as what the generator
    hard-coded before them, not as today's default: a finished dataset whose marker lacks them
    is kept when that old value is wanted, and written again when the default has moved on."""
    old = SyntheticConfig(reals=6, frames=4, checkerboard=10.0, checker_cell=1)
    root = generate(tmp_path / "d", old, workers=1)
    marker = root / MARKER
    recorded = json.loads(marker.read_text())
    del recorded["checkerboard"], recorded["noise_loss"], recorded["checker_cell"]
    marker.write_text(json.dumps(recorded))
    video = root / "original_sequences/youtube/raw/videos/000.mp4"
    video.write_bytes(b"left alone when the dataset is kept")
    generate(root, old, workers=1)
    assert video.read_bytes() == b"left alone when the dataset is kept"
    today = SyntheticConfig(reals=6, frames=4)  # the new default: 2-pixel cells at 7
    generate(root, today, workers=1)
    assert video.read_bytes()[:4] != b"left"
    assert json.loads(marker.read_text())["checker_cell"] == today.checker_cell == 2


def test_the_config_digest_tells_dataset_versions_apart():
    """The embedded shards' folder is named by it (data_prep/defaults.py)."""
    today = SyntheticConfig()
    assert config_digest(today) == config_digest(SyntheticConfig())
    assert config_digest(replace(today, checker_cell=1)) != config_digest(today)
    assert config_digest(replace(today, checkerboard=10.0)) != config_digest(today)
    assert len(config_digest(today)) == 8 and int(config_digest(today), 16) >= 0


def test_command_line(tmp_path):
    command = [
        sys.executable,
        "-m",
        "data_prep",
        "synthetic",
        str(tmp_path / "s"),
        "--reals",
        "10",
        "--frames",
        "3",
        "--held-out",
        "0.4",
        "--checker-cell",
        "2",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "synthetic FF++ dataset at" in result.stdout
    assert json.loads((tmp_path / "s" / MARKER).read_text())["checker_cell"] == 2
    assert len(list((tmp_path / "s").rglob("*.mp4"))) == 50 * 3
    splits = {s: json.loads((tmp_path / "s/splits" / f"{s}.json").read_text()) for s in SPLITS}
    assert [len(splits[s]) for s in SPLITS] == [1, 2, 2]  # 5 pairs, 2 in each of val and test
    help_text = subprocess.run(
        [sys.executable, "-m", "data_prep", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert all(word in help_text.stdout for word in ("synthetic", "compress", "prepare"))
    refused = subprocess.run(
        [*command[:-1], "0"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2 and "--checker-cell 0" in refused.stderr
    with pytest.raises(ValueError, match="at least one pixel, got 0"):
        SyntheticConfig(checker_cell=0)  # also where no command line checks it


def _pattern_power_after_cropping(frame: np.ndarray, mask: np.ndarray) -> float:
    """Share of the face's power at a period-4 checkerboard's frequency once the face is
    area-resized as preparation does (a 113-pixel box to a 96-pixel crop)."""
    ys, xs = np.nonzero(mask[..., 0] > 0.95)
    size = min(ys.max() - ys.min(), xs.max() - xs.min())
    face = frame[ys.min() : ys.min() + size, xs.min() : xs.min() + size]
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32)
    crop = cv2.resize(grey, None, fx=96 / 113, fy=96 / 113, interpolation=cv2.INTER_AREA)
    power = np.abs(np.fft.fft2(crop - crop.mean())) ** 2
    frequency = np.abs(np.fft.fftfreq(crop.shape[0]))
    near = np.abs(frequency - 0.25 * 113 / 96) < 0.04  # period 4, shrunk with the face
    return float(power[np.ix_(near, near)].sum() / power.sum())


def test_two_pixel_checker_cells_survive_the_crop_resampling():
    """``checker_cell=2`` (the embedded default) leaves a trace in the prepared crop where the
    finest checkerboard leaves none: why the Fourteenth's probe sees it on raw frames."""
    config = SyntheticConfig(reals=4, frames=3)
    people = identities(config)
    clip = render_real(config, people[0], 0)
    masks = [face_mask(config, people[0], t) for t in range(config.frames)]
    reals = [_pattern_power_after_cropping(f, m) for f, m in zip(clip.frames(), masks, strict=True)]
    for cell in (1, 2):
        fakes = manipulate("Deepfakes", replace(config, checker_cell=cell), clip, *people[:2], 0.5)
        powers = [_pattern_power_after_cropping(f, m) for f, m in zip(fakes, masks, strict=True)]
        if cell == 1:
            assert max(powers) < 2 * max(reals), (powers, reals)
        else:
            assert min(powers) > 20 * max(reals), (powers, reals)


def test_a_held_out_share_that_leaves_nothing_to_train_on_is_refused():
    assert [len(v) for v in split_pairs(20, 0.45).values()] == [2, 4, 4]
    with pytest.raises(ValueError, match="leaves none to train on"):
        split_pairs(20, 0.5)


def _checkerboard_contrast(path: Path, person, config: SyntheticConfig) -> list[float]:
    """Per frame: the face's projection on the up-sampling checkerboard (+-1 squares of the
    config's cell, aligned with the frame as a generator's output grid is), in grey levels.

    Smooth content and sensor noise average out over the face's thousands of pixels; what is
    left is the pattern's amplitude (0 for a real face), whatever the face's own texture.
    """
    cells = (
        np.arange(config.height) // config.checker_cell,
        np.arange(config.width) // config.checker_cell,
    )
    pattern = (np.add.outer(*cells) % 2 * 2 - 1).astype(np.float32)
    values = []
    for t, frame in iter_frames(path, range(config.frames), config.frames):
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        face = face_mask(config, person, t)[..., 0] > 0.95
        values.append(float((grey * pattern)[face].mean()))
    return values


def test_traces_are_graded_and_mostly_removed_by_c40(synthetic_root):
    """A short training of a one-feature detector (the face's up-sampling checkerboard): near
    perfect on raw, no better than chance on c40; and weaker fakes carry less of it."""
    config, people = TEST_SYNTHETIC, identities(TEST_SYNTHETIC)
    strengths = json.loads((synthetic_root / STRENGTHS).read_text())["Deepfakes"]
    splits = {s: json.loads((synthetic_root / f"splits/{s}.json").read_text()) for s in SPLITS}
    auc = {}
    for level in ("raw", "c40"):
        rows = {split: [] for split in SPLITS}  # (feature, label, strength) per frame
        for split, pairs in splits.items():
            for target, source in [(a, b) for x, y in pairs for a, b in ((x, y), (y, x))]:
                person, name = people[int(target)], f"{target}_{source}"
                real = synthetic_root / f"original_sequences/youtube/{level}/videos/{target}.mp4"
                fake = synthetic_root / f"manipulated_sequences/Deepfakes/{level}/videos/{name}.mp4"
                rows[split] += [(v, 0, 0.0) for v in _checkerboard_contrast(real, person, config)]
                rows[split] += [
                    (v, 1, strengths[name]) for v in _checkerboard_contrast(fake, person, config)
                ]
        train, held_out = np.array(rows["train"]), np.array(rows["val"] + rows["test"])
        detector = LogisticRegression().fit(train[:, :1], train[:, 1])
        auc[level] = roc_auc_score(held_out[:, 1], detector.decision_function(held_out[:, :1]))
        if level == "raw":
            fakes = np.concatenate([train, held_out])
            fakes = fakes[fakes[:, 1] == 1]
            weak = fakes[:, 2] < np.median(fakes[:, 2])
            assert fakes[weak, 0].mean() + 0.1 < fakes[~weak, 0].mean()
    assert auc["raw"] >= 0.95, auc
    assert auc["c40"] <= 0.75, auc
