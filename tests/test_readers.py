"""Dataset readers on tiny fake trees (empty files: readers never decode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.readers import read_dataset
from data_prep.readers.splits import identity_groups, split_by_video_count, split_identities


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def ffpp_tree(root: Path, reals: int, levels=("raw", "c23"), raw_name="raw") -> None:
    for i in range(reals):
        for level in levels:
            name = raw_name if level == "raw" else level
            touch(root / "original_sequences/youtube" / name / "videos" / f"{i:03d}.mp4")
    for i in range(0, reals, 2):
        for a, b in ((i, i + 1), (i + 1, i)):
            for method in ("Deepfakes", "NeuralTextures"):
                for level in levels:
                    name = raw_name if level == "raw" else level
                    path = root / "manipulated_sequences" / method / name / "videos"
                    touch(path / f"{a:03d}_{b:03d}.mp4")


def test_ffpp_official_splits_and_c0_spelling(tmp_path):
    ffpp_tree(tmp_path, 6, raw_name="c0")
    splits = tmp_path / "my_splits"
    splits.mkdir()
    for split, pairs in {
        "train": [["000", "001"]],
        "val": [["002", "003"]],
        "test": [["004", "005"]],
    }.items():
        (splits / f"{split}.json").write_text(json.dumps(pairs))
    found = read_dataset("ffpp", tmp_path, ["c0", "c23", "c40"], splits_dir=splits)
    by_key = {r.video_key: r for r in found.records}
    assert len(by_key) == 6 + 2 * 6
    real, fake = by_key["ffpp/original/002"], by_key["ffpp/NeuralTextures/003_002"]
    assert (real.label, real.split, fake.label, fake.split) == (0, "val", 1, "val")
    assert fake.identities == ("003", "002")
    assert set(fake.paths) == {"raw", "c23"}  # c0 read as raw; no c40 copies in this tree
    assert fake.paths["raw"].parts[-3] == "c0"


def test_ffpp_seeded_split_is_identity_disjoint_and_720_140_140(tmp_path):
    ffpp_tree(tmp_path, 100, levels=("raw",))
    first = read_dataset("ffpp", tmp_path, ["raw"], seed=1)
    splits: dict[str, set[str]] = {}
    for record in first.records:
        for identity in record.identities:
            splits.setdefault(identity, set()).add(record.split)
    assert all(len(s) == 1 for s in splits.values())
    counts = {
        name: sum(1 for s in splits.values() if name in s) for name in ("train", "val", "test")
    }
    assert counts == {"train": 72, "val": 14, "test": 14}
    again = read_dataset("ffpp", tmp_path, ["raw"], seed=1)
    other = read_dataset("ffpp", tmp_path, ["raw"], seed=2)
    assert [r.split for r in again.records] == [r.split for r in first.records]
    assert [r.split for r in other.records] != [r.split for r in first.records]


def test_identity_groups_follow_fake_links():
    groups = identity_groups([("a",), ("b", "c"), ("c", "d"), ("e",)])
    assert groups == [["a"], ["b", "c", "d"], ["e"]]
    assignment = split_identities([("a", "b"), ("c",), ("d",)], {"x": 0.5, "y": 0.5}, seed=0)
    assert assignment["a"] == assignment["b"]


def test_split_by_video_count_fills_shares_in_videos():
    # One prolific key (40 videos) and many small ones: identity shares would be far off.
    keys = ["big"] * 40 + [f"k{i}" for i in range(60) for _ in range(2)]
    assignment = split_by_video_count(keys, {"train": 0.75, "val": 0.25}, seed=3)
    val_videos = sum(1 for k in keys if assignment[k] == "val")
    assert abs(val_videos - 40) <= 40  # never more than one key's worth off
    small_only = [f"k{i}" for i in range(60) for _ in range(2)]
    small = split_by_video_count(small_only, {"train": 0.75, "val": 0.25}, seed=3)
    assert sum(1 for k in small_only if small[k] == "val") == 30
    assert split_by_video_count(keys, {"train": 0.75, "val": 0.25}, seed=3) == assignment


def test_celebdf_test_list_labels_and_levels(tmp_path):
    for name in ("id0_0000", "id0_0001", "id1_0000", "id2_0000", "id3_0000", "id4_0000"):
        touch(tmp_path / "Celeb-real" / f"{name}.mp4")
    for name in ("id0_id1_0000", "id2_id3_0000", "id4_id0_0001"):
        touch(tmp_path / "Celeb-synthesis" / f"{name}.mp4")
    touch(tmp_path / "YouTube-real" / "00000.mp4")
    touch(tmp_path / "compressed/c23/Celeb-real/id1_0000.mp4")
    (tmp_path / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id1_0000.mp4\n0 Celeb-synthesis/id2_id3_0000.mp4\n"
    )
    found = read_dataset("celebdf", tmp_path, ["raw", "c23"], seed=0)
    by_key = {r.video_key: r for r in found.records}
    assert len(by_key) == 10
    tested = by_key["celebdf/Celeb-real/id1_0000"]
    assert (tested.split, tested.label, set(tested.paths)) == ("test", 0, {"raw", "c23"})
    assert by_key["celebdf/Celeb-synthesis/id2_id3_0000"].split == "test"
    assert by_key["celebdf/Celeb-synthesis/id2_id3_0000"].label == 1
    assert by_key["celebdf/YouTube-real/00000"].identities == ("youtube-00000",)
    rest = [r for r in found.records if r.split != "test"]
    assert {r.split for r in rest} <= {"train", "val"}
    assert by_key["celebdf/Celeb-synthesis/id0_id1_0000"].identities == ("id0", "id1")


def _celebdf_like(root, celebrities=21, sources_per_target=8):
    """Celeb-DF's shape: every celebrity swapped with many others (one connected graph)."""
    for target in range(celebrities):
        for n in range(4):
            touch(root / "Celeb-real" / f"id{target}_{n:04d}.mp4")
        for step in range(1, sources_per_target + 1):
            source = (target + step) % celebrities
            touch(root / "Celeb-synthesis" / f"id{target}_id{source}_{step:04d}.mp4")
    for n in range(14):
        touch(root / "YouTube-real" / f"{n:05d}.mp4")
    (root / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id1_id2_0001.mp4\n"
    )


def test_celebdf_splits_by_target_identity_with_both_classes_everywhere(tmp_path):
    _celebdf_like(tmp_path)
    found = read_dataset("celebdf", tmp_path, ["raw"], seed=0)
    by_split = {s: [r for r in found.records if r.split == s] for s in ("train", "val", "test")}
    for split in ("train", "val"):
        assert {r.label for r in by_split[split]} == {0, 1}, split
        assert {r.method for r in by_split[split]} == {
            "Celeb-real",
            "Celeb-synthesis",
            "YouTube-real",
        }, split
    assert len(by_split["test"]) == 2
    # No face (target or source) of a train video appears in a val video, and the reverse.
    faces = {s: {i for r in by_split[s] for i in r.identities} for s in ("train", "val")}
    assert not faces["train"] & faces["val"]
    # Every dropped fake is recorded with its file and the reason, and nothing else is lost.
    assert found.skipped and all("source face" in s.reason for s in found.skipped)
    assert all(s.path.startswith(str(tmp_path)) and s.video_key for s in found.skipped)
    total = sum(1 for _ in tmp_path.rglob("*.mp4"))
    assert len(found.records) + len(found.skipped) == total
    again = read_dataset("celebdf", tmp_path, ["raw"], seed=0)
    assert [(r.video_key, r.split) for r in again.records] == [
        (r.video_key, r.split) for r in found.records
    ]


def test_celebdf_bad_test_list_names_the_line(tmp_path):
    touch(tmp_path / "Celeb-real" / "id0_0000.mp4")
    (tmp_path / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0000.mp4\nbroken\n")
    with pytest.raises(ValueError, match=r"List_of_testing_videos.txt:2: expected"):
        read_dataset("celebdf", tmp_path, ["raw"])


def test_folder_layout(tmp_path):
    for i in range(10):
        touch(tmp_path / "real" / f"r{i}.mp4")
        touch(tmp_path / "fake" / f"f{i}.mov")
    touch(tmp_path / "fake" / "notes.txt")
    found = read_dataset("folder", tmp_path, ["raw"], seed=0)
    assert len(found.records) == 20
    assert {r.label for r in found.records if r.method == "fake"} == {1}
    assert {r.split for r in found.records} == {"train", "val", "test"}


def test_unknown_dataset_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'dfdc'"):
        read_dataset("dfdc", tmp_path, ["raw"])
    with pytest.raises(FileNotFoundError, match="Celeb-DF dataset root not found"):
        read_dataset("celebdf", tmp_path / "absent", ["raw"])
    with pytest.raises(FileNotFoundError, match="no videos in real/ or fake/"):
        read_dataset("folder", tmp_path, ["raw"])
