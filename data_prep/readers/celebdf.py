"""Celeb-DF v2: ``Celeb-real/idX_NNNN.mp4``, ``YouTube-real/NNNNN.mp4``,
``Celeb-synthesis/idX_idY_NNNN.mp4`` and ``List_of_testing_videos.txt``.

The list's lines are ``<label> <folder>/<name>.mp4`` with Celeb-DF's own convention 1 = real,
0 = fake; those videos are the test split, as in every paper (they share celebrities with the
rest by Celeb-DF's design). The rest is split train/val 6:1 in videos, seeded, by *target*
identity (``idX`` of ``idX_idY_NNNN``, whose video the face is swapped into): Celeb-DF's swaps
link every celebrity to many others, so splitting by connected identities would put everybody
in one split. Celebrities and YouTube reals are split separately so that both splits hold
both. A fake whose source face ``idY`` lies in the other split is dropped and recorded.
Compressed copies live in ``ROOT/compressed/<level>/<folder>/<name>`` (``data_prep compress``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from data_prep.readers.common import level_path, list_videos, refuse_split_files, require_root
from data_prep.readers.splits import split_by_video_count
from data_prep.records import FAKE, REAL, ReadResult, Skip, VideoRecord, canonical_level

FOLDERS = {"Celeb-real": REAL, "YouTube-real": REAL, "Celeb-synthesis": FAKE}
TEST_LIST = "List_of_testing_videos.txt"
FRACTIONS = {"train": 6 / 7, "val": 1 / 7}


def _identities(folder: str, stem: str) -> tuple[str, ...]:
    if folder == "YouTube-real":
        return (f"youtube-{stem}",)  # anonymous: each video its own person
    return tuple(part for part in stem.split("_") if part.startswith("id"))


def read_test_list(path: Path) -> set[str]:
    """``folder/name.mp4`` entries of the official test list."""
    entries = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise ValueError(f"{path}:{number}: expected '<0|1> <folder>/<name>', got {line!r}")
        entries.add(parts[1])
    return entries


def read_celebdf(
    root: Path,
    levels: Sequence[str],
    seed: int = 0,
    methods: Sequence[str] | None = None,
    splits_dir: Path | None = None,
) -> ReadResult:
    root = Path(root)
    refuse_split_files(splits_dir)
    require_root(root, "Celeb-DF")
    skipped: list[Skip] = []
    test_list = root / TEST_LIST
    test = read_test_list(test_list) if test_list.is_file() else set()
    videos = []
    for folder, label in FOLDERS.items():
        if methods and folder not in methods:
            continue
        for path in list_videos(root / folder, skipped):
            videos.append((folder, label, path.relative_to(root)))
    if not videos:
        raise FileNotFoundError(f"{root}: no Celeb-DF videos in {', '.join(FOLDERS)}")

    trainval = [(f, rel) for f, _, rel in videos if rel.as_posix() not in test]
    assignment = {}
    for youtube in (False, True):
        targets = [
            _identities(f, r.stem)[0] for f, r in trainval if (f == "YouTube-real") == youtube
        ]
        assignment.update(split_by_video_count(targets, FRACTIONS, seed))
    records = []
    for folder, label, relative in videos:
        ids = _identities(folder, relative.stem)
        split = "test" if relative.as_posix() in test else assignment[ids[0]]
        record_key = f"celebdf/{folder}/{relative.stem}"
        crossing = [i for i in ids[1:] if assignment.get(i, split) != split and split != "test"]
        if crossing:
            reason = (
                f"source face {crossing[0]} is in {assignment[crossing[0]]}, target {ids[0]} in "
                f"{split}: dropped so that no face appears in two splits"
            )
            skipped.append(Skip(str(root / relative), reason, record_key))
            continue
        paths = {level: level_path(root, relative, level) for level in map(canonical_level, levels)}
        paths = {level: p for level, p in paths.items() if p.is_file()}
        records.append(VideoRecord("celebdf", folder, relative.stem, label, split, ids, paths))
    return ReadResult(records, skipped)
