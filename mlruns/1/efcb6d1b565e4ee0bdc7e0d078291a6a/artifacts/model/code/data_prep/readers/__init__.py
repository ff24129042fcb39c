"""Dataset readers by name: each turns a dataset root into ``VideoRecord``s and recorded skips."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from data_prep.readers.celebdf import read_celebdf
from data_prep.readers.ffpp import read_ffpp
from data_prep.readers.folder import read_folder
from data_prep.records import ReadResult

Reader = Callable[..., ReadResult]

READERS: dict[str, Reader] = {"ffpp": read_ffpp, "celebdf": read_celebdf, "folder": read_folder}


def read_dataset(name: str, root: Path, levels, seed: int = 0, **options) -> ReadResult:
    """Records of dataset ``name`` at ``root`` (``options``: ``methods``, FF++'s ``splits_dir``)."""
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; one of {', '.join(sorted(READERS))}")
    return READERS[name](Path(root), levels, seed=seed, **options)
