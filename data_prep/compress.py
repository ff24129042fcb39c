"""H.264 copies of a dataset's raw videos at any list of levels (for datasets that ship none).

``c23`` means CRF 23 (FF++'s method, the default) or, with ``mode="qp"``, constant QP 23.
Existing copies are kept; each new one is written atomically, so an interrupted run resumes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import ray
from tqdm import tqdm

from data_prep.cluster import ensure_ray
from data_prep.readers import read_dataset
from data_prep.readers.common import level_path
from data_prep.records import VideoRecord
from data_prep.video import Encoding, VideoError, compress_video

_LEVEL = re.compile(r"^c(\d{1,2})$")


@dataclass(frozen=True)
class CompressConfig:
    dataset: str = "folder"
    root: str = ""
    levels: tuple[str, ...] = ("c23", "c40")
    mode: str = "crf"  # "crf" (FF++) or "qp"
    # x264's C code: the same bytes on every run and CPU. False: its SIMD code, ~4x
    # faster, whose bytes depend on the CPU (and on AVX-512 CPUs can change between runs).
    bit_exact: bool = True


def encoding_for(level: str, mode: str = "crf", bit_exact: bool = True) -> Encoding:
    """``cNN`` -> libx264 at CRF NN (or QP NN); ``raw`` -> lossless RGB."""
    if level in ("raw", "c0"):
        return Encoding.lossless()
    match = _LEVEL.match(level)
    if not match or mode not in ("crf", "qp"):
        raise ValueError(f"level {level!r} / mode {mode!r}: expected cNN (0-51) and crf or qp")
    value = int(match.group(1))
    if value > 51:
        raise ValueError(f"level {level!r}: H.264 quality runs from 0 to 51")
    rate = {"crf": value} if mode == "crf" else {"crf": None, "qp": value}
    return Encoding(**rate, bit_exact=bit_exact)


def target_path(dataset: str, root: Path, raw: Path, level: str) -> Path:
    """Where a level's copy of ``raw`` goes, in the layout the dataset's reader looks in."""
    if dataset == "ffpp":  # .../<Method>/raw/videos/x.mp4 -> .../<Method>/<level>/videos/x.mp4
        return raw.parent.parent.parent / level / "videos" / raw.name
    return level_path(root, raw.relative_to(root), level)


def _compress_one(source: Path, targets: list[tuple[Path, Encoding]]) -> list[str]:
    errors = []
    for target, encoding in targets:
        try:
            compress_video(source, target, encoding)
        except VideoError as error:
            errors.append(str(error))
    return errors


_compress_task = ray.remote(num_cpus=1)(_compress_one)


def compress_dataset(config: CompressConfig, progress: bool = True) -> list[str]:
    """Write the missing copies; return the errors of videos that could not be compressed."""
    if not config.root:  # else the working directory would be compressed
        raise ValueError("compress needs the dataset's folder: --root (or root: in --config)")
    root = Path(config.root).resolve()
    found = read_dataset(config.dataset, root, ["raw"])
    jobs: list[tuple[VideoRecord, list]] = []
    for record in found.records:
        raw = record.paths.get("raw")
        if raw is None:
            continue
        targets = [
            (
                target_path(config.dataset, root, raw, level),
                encoding_for(level, config.mode, config.bit_exact),
            )
            for level in config.levels
        ]
        missing = [(t, e) for t, e in targets if not t.is_file()]
        if missing:
            jobs.append((record, missing))
    ensure_ray()
    refs = [_compress_task.remote(record.paths["raw"], targets) for record, targets in jobs]
    errors = [f"{s.path}: {s.reason}" for s in found.skipped]
    with tqdm(total=len(refs), unit="video", desc="compress", disable=not progress) as bar:
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            errors.extend(ray.get(ready[0]))
            bar.update(1)
    return errors
