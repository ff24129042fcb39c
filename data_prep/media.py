"""A user's own files -> face crops cut exactly as preparation cuts them (for detection).

Inputs are video files (anything FFmpeg decodes), images, folders (searched recursively for
both), glob patterns and storage URIs. Every problem with one file is a ``VideoError`` naming
the file and the reason, so a batch records it and goes on.
"""

from __future__ import annotations

import glob
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data_prep import storage
from data_prep.extract import FaceCrops, crop_faces, sample_indices
from data_prep.faces import build_detector
from data_prep.video import VideoError, iter_frames, probe

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts"}
)
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


def is_image(location: str) -> bool:
    return Path(storage.name(location)).suffix.lower() in IMAGE_SUFFIXES


def _media_under(folder: str) -> list[str]:
    """Video and image files anywhere under ``folder`` (a path or a URI), sorted."""
    found = [f for f in storage.list_files(folder) if is_media(f)]
    for sub in storage.list_dirs(folder):
        found.extend(_media_under(sub))
    return sorted(found)


def is_media(location: str) -> bool:
    return Path(storage.name(location)).suffix.lower() in MEDIA_SUFFIXES


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Files to score, in the order given, each once: a file as is (any suffix: FFmpeg decides),
    a folder's videos and images (recursively), a glob's matches. An input that names nothing
    stays in the list, so that it is reported as not found instead of silently dropped."""
    files: list[str] = []
    for item in inputs:
        if not storage.is_uri(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            files.extend(storage.normalise(m) for m in matches if Path(m).is_file())
            if not matches:
                files.append(item)
        elif storage.is_dir(item):
            files.extend(_media_under(storage.normalise(item)))
        else:
            files.append(storage.normalise(item))
    return list(dict.fromkeys(files))


@contextmanager
def local_copy(location: str) -> Iterator[Path]:
    """A local path for FFmpeg to open: the file itself, or a temporary download of a URI."""
    local = storage.local_path(location)
    if local is not None:
        yield local
        return
    try:
        data = storage.read_bytes(location)
    except FileNotFoundError:
        raise VideoError(f"{location}: file not found") from None
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / storage.name(location)
        path.write_bytes(data)
        yield path


def read_image(location: str) -> np.ndarray:
    """An image file as RGB, or a ``VideoError`` saying why not."""
    try:
        data = storage.read_bytes(location)
    except (FileNotFoundError, IsADirectoryError):
        raise VideoError(f"{location}: file not found") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise VideoError(f"{location}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class CropSettings:
    """How a detector's training crops were cut (the data_prep PrepareConfig keys of the same
    names, which hold their defaults), and how many frames of a video to score."""

    detector: str
    margin: float
    crop_size: int
    frames_per_video: int

    @classmethod
    def from_preparation(cls, preparation: Mapping[str, Any]) -> CropSettings:
        """From a PrepareConfig as a dict: a manifest's ``config`` or a checkpoint's record."""
        return cls(**{f.name: preparation[f.name] for f in fields(cls)})


_per_thread = threading.local()


def _detector(name: str):
    """One detector per thread and name: OpenCV's cascade is loaded once, and never shared
    between threads (``detectMultiScale`` on one classifier from two threads corrupts boxes)."""
    detectors = _per_thread.__dict__.setdefault("detectors", {})
    if name not in detectors:
        detectors[name] = build_detector(name)
    return detectors[name]


@dataclass(frozen=True)
class FileFaces:
    """The sampled frames of one file cut around its face, and how many frames it has."""

    faces: FaceCrops
    frame_count: int
    sampled: int


def file_faces(location: str, settings: CropSettings) -> FileFaces:
    """Sample ``frames_per_video`` frames evenly (one for an image), detect the face and cut
    each crop as preparation does; ``VideoError`` when the file gives no face crop at all."""
    detect = _detector(settings.detector)
    if is_image(location):
        frame_count, indices = 1, [0]
        faces = crop_faces([(0, read_image(location))], detect, settings.crop_size, settings.margin)
    else:
        with local_copy(location) as path:
            frame_count = probe(path).frame_count
            indices = sample_indices(frame_count, settings.frames_per_video)
            frames = iter_frames(path, indices, frame_count)
            faces = crop_faces(frames, detect, settings.crop_size, settings.margin)
    if not faces.boxes:
        raise VideoError(f"{location}: no face detected in any of {len(indices)} sampled frames")
    return FileFaces(faces, frame_count, len(indices))
