"""FaceForensics++: ``original_sequences/youtube/<level>/videos/NNN.mp4`` and
``manipulated_sequences/<Method>/<level>/videos/AAA_BBB.mp4``, levels ``raw`` (or ``c0``),
``c23``, ``c40``.

Splits come from the official ``train/val/test.json`` (lists of ``[a, b]``: reals ``a`` and ``b``
and fakes ``a_b`` and ``b_a`` belong to that split) found in ``splits_dir`` or ``ROOT/splits``;
otherwise a seeded 720/140/140 split by source identity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from data_prep.readers.common import list_videos, require_root
from data_prep.readers.splits import split_identities
from data_prep.records import FAKE, REAL, SPLITS, ReadResult, Skip, VideoRecord, canonical_level

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
REAL_METHOD = "original"
FRACTIONS = {"train": 720 / 1000, "val": 140 / 1000, "test": 140 / 1000}


def _level_dirs(method_dir: Path, level: str) -> list[Path]:
    """The folders a level may live in: raw is also spelled c0."""
    names = ["raw", "c0"] if level == "raw" else [level]
    return [method_dir / name / "videos" for name in names]


def official_splits(splits_dir: Path) -> dict[str, str]:
    """identity -> split from FF++'s JSON files."""
    assignment = {}
    for split in SPLITS:
        path = splits_dir / f"{split}.json"
        try:
            pairs = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read FF++ split file ({error})") from error
        for pair in pairs:
            for identity in pair:
                assignment[str(identity)] = split
    return assignment


def read_ffpp(
    root: Path,
    levels: Sequence[str],
    seed: int = 0,
    splits_dir: Path | None = None,
    methods: Sequence[str] | None = None,
) -> ReadResult:
    root = Path(root)
    require_root(root, "FaceForensics++")
    skipped: list[Skip] = []
    sources = [(REAL_METHOD, REAL, root / "original_sequences" / "youtube")]
    sources += [(m, FAKE, root / "manipulated_sequences" / m) for m in (methods or METHODS)]

    found: dict[tuple[str, str], dict[str, Path]] = {}  # (method, id) -> level -> path
    labels = {}
    for method, label, method_dir in sources:
        for level in map(canonical_level, levels):
            for folder in _level_dirs(method_dir, level):
                for path in list_videos(folder, skipped):
                    found.setdefault((method, path.stem), {}).setdefault(level, path)
                    labels[method] = label
    if not found:
        raise FileNotFoundError(
            f"{root}: no FF++ videos under original_sequences/ or manipulated_sequences/"
        )

    identities = {key: tuple(key[1].split("_")) for key in found}
    splits_dir = splits_dir or (root / "splits" if (root / "splits").is_dir() else None)
    if splits_dir is not None:
        assignment = official_splits(Path(splits_dir))
    else:
        assignment = split_identities(identities.values(), FRACTIONS, seed)

    records = []
    for (method, video_id), paths in sorted(found.items()):
        ids = identities[(method, video_id)]
        split = {assignment.get(i) for i in ids}
        if len(split) != 1 or None in split:
            where = "no split" if None in split else f"splits {sorted(split)}"
            reason = f"identities {list(ids)} are in {where} of the split files"
            first_path = str(next(iter(paths.values())))
            skipped.append(Skip(first_path, reason, f"ffpp/{method}/{video_id}"))
            continue
        records.append(
            VideoRecord("ffpp", method, video_id, labels[method], split.pop(), ids, paths)
        )
    return ReadResult(records, skipped)
