"""A user's own videos: ``ROOT/real/*.mp4`` and ``ROOT/fake/*.mp4``.

Each video is its own identity; the split is a seeded 72/14/14. Compressed copies live in
``ROOT/compressed/<level>/<real|fake>/<name>`` (``data_prep compress`` makes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from data_prep.readers.common import level_path, list_videos, refuse_split_files, require_root
from data_prep.readers.splits import split_identities
from data_prep.records import FAKE, REAL, ReadResult, Skip, VideoRecord, canonical_level

FOLDERS = {"real": REAL, "fake": FAKE}
FRACTIONS = {"train": 0.72, "val": 0.14, "test": 0.14}


def read_folder(
    root: Path,
    levels: Sequence[str],
    seed: int = 0,
    methods: Sequence[str] | None = None,
    splits_dir: Path | None = None,
) -> ReadResult:
    root = Path(root)
    refuse_split_files(splits_dir)
    require_root(root, "real/ + fake/ folder")
    skipped: list[Skip] = []
    videos = [
        (folder, label, path.relative_to(root))
        for folder, label in FOLDERS.items()
        if not methods or folder in methods
        for path in list_videos(root / folder, skipped)
    ]
    if not videos:
        raise FileNotFoundError(f"{root}: no videos in real/ or fake/")
    identity = {rel: (rel.with_suffix("").as_posix(),) for _, _, rel in videos}
    assignment = split_identities(identity.values(), FRACTIONS, seed)
    records = []
    for folder, label, relative in videos:
        paths = {level: level_path(root, relative, level) for level in map(canonical_level, levels)}
        paths = {level: p for level, p in paths.items() if p.is_file()}
        ids = identity[relative]
        records.append(
            VideoRecord("folder", folder, relative.stem, label, assignment[ids[0]], ids, paths)
        )
    return ReadResult(records, skipped)
