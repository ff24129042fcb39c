"""The common record every dataset reader yields: one video and its compression levels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: Compression levels by canonical name; FF++ also spells raw as c0.
LEVEL_ALIASES = {"c0": "raw"}
SPLITS = ("train", "val", "test")
REAL, FAKE = 0, 1


def canonical_level(level: str) -> str:
    return LEVEL_ALIASES.get(level, level)


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset, with the path of each compression level found for it.

    ``identities`` are the source people (FF++ ids, Celeb-DF ``idN``); splits never share one.
    """

    dataset: str
    method: str  # "original" for FF++ reals, the manipulation or the source folder otherwise
    video_id: str
    label: int  # 0 = real, 1 = fake
    split: str
    identities: tuple[str, ...]
    paths: dict[str, Path] = field(hash=False)  # level -> file; a level may be absent

    @property
    def video_key(self) -> str:
        """Unique across datasets and methods: FF++ has a ``000_003`` under every method."""
        return f"{self.dataset}/{self.method}/{self.video_id}"


@dataclass(frozen=True)
class Skip:
    """An input left out, and why; recorded in the manifest, never silently dropped."""

    path: str
    reason: str
    video_key: str | None = None


@dataclass
class ReadResult:
    records: list[VideoRecord]
    skipped: list[Skip]
