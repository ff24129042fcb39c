"""Helpers the dataset readers share: safe directory listing and the compressed-copy tree."""

from __future__ import annotations

from pathlib import Path

from data_prep.records import Skip

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
#: Datasets that ship one version only get their H.264 copies here (see ``data_prep compress``).
COMPRESSED_DIR = "compressed"


def list_videos(folder: Path, skipped: list[Skip]) -> list[Path]:
    """Video files directly in ``folder``, sorted; an unreadable folder is recorded, not fatal."""
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as error:
        skipped.append(Skip(str(folder), f"unreadable directory ({error.strerror or error})"))
        return []
    return [p for p in entries if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()]


def level_path(root: Path, relative: Path, level: str) -> Path:
    """Where ``level`` of the video at ``root/relative`` lives for a single-version dataset."""
    return root / relative if level == "raw" else root / COMPRESSED_DIR / level / relative


def require_root(root: Path, what: str) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: {what} dataset root not found (or not a directory)")


def refuse_split_files(splits_dir: Path | None) -> None:
    """Only FF++ ships split files; elsewhere a given folder would be silently ignored."""
    if splits_dir is not None:
        raise ValueError(f"{splits_dir}: split files are read for FF++ only")
