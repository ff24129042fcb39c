"""One video -> its rows: sampled frames, one face box per frame, aligned crops of every level.

The face is found on the reference (raw) level only; the very same box is cut from every
compressed level, so the teacher's and the student's crops of a row are pixel-aligned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from data_prep.faces import Box, CropBox, crop_box, largest
from data_prep.image_columns import DEFAULT_IMAGE_FORMAT, encode_crops, image_column
from data_prep.records import VideoRecord
from data_prep.shards import row_schema
from data_prep.video import VideoError, VideoInfo, iter_frames, probe


@dataclass(frozen=True)
class ExtractOptions:
    levels: tuple[str, ...]  # the first is the reference the face is detected on
    frames_per_video: int = 50
    crop_size: int = 256
    margin: float = 1.3
    image_format: str = DEFAULT_IMAGE_FORMAT  # data_prep.image_columns.IMAGE_FORMATS


def sample_indices(frame_count: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly over the whole video (all frames if it is shorter)."""
    if frame_count <= wanted:
        return list(range(frame_count))
    return np.linspace(0, frame_count - 1, wanted).round().astype(int).tolist()


def _probe_levels(record: VideoRecord, levels: Sequence[str]) -> VideoInfo:
    """The reference level's info, after checking every level exists and matches it."""
    reference = record.paths.get(levels[0])
    missing = [level for level in levels if level not in record.paths]
    if missing:
        anchor = reference or next(iter(record.paths.values()), record.video_key)
        raise VideoError(f"{anchor}: no {', '.join(missing)} version found")
    infos = {level: probe(record.paths[level]) for level in levels}
    info = infos[levels[0]]
    for level, other in infos.items():
        if (other.frame_count, other.width, other.height) != (
            info.frame_count,
            info.width,
            info.height,
        ):
            raise VideoError(
                f"{record.paths[level]}: {level} has {other.frame_count} frames of "
                f"{other.width}x{other.height}, {levels[0]} has {info.frame_count} of "
                f"{info.width}x{info.height}"
            )
    return info


def _nearest(index: int, boxes: dict[int, CropBox]) -> CropBox:
    return boxes[min(boxes, key=lambda i: (abs(i - index), i))]


@dataclass(frozen=True)
class FaceCrops:
    """One clip's sampled frames cut around its face: the box and the crop of every frame."""

    boxes: dict[int, CropBox]
    crops: dict[int, np.ndarray]  # RGB, crop_size x crop_size
    without_face: tuple[int, ...]  # frames where no face was found: the nearest box was used


def crop_faces(
    frames: Iterable[tuple[int, np.ndarray]],
    detect: Callable[[np.ndarray], list[Box]],
    crop_size: int,
    margin: float,
) -> FaceCrops:
    """Detect the largest face in every ``(index, RGB frame)`` and cut its enlarged square box;
    a frame without a face borrows the nearest frame's box (faces move little between sampled
    frames). No crops at all when no frame has a face.

    Preparation and detection both cut their crops here, so a detector sees what it trained on.
    """
    boxes: dict[int, CropBox] = {}
    crops: dict[int, np.ndarray] = {}
    undetected: dict[int, np.ndarray] = {}  # frames kept whole until a neighbour's box is known
    for index, frame in frames:
        face = largest(detect(frame))
        if face is None:
            undetected[index] = frame
            continue
        height, width = frame.shape[:2]
        boxes[index] = crop_box(face, width, height, margin)
        crops[index] = boxes[index].cut(frame, crop_size)
    if not boxes:
        return FaceCrops({}, {}, tuple(sorted(undetected)))
    for index, frame in undetected.items():
        boxes[index] = _nearest(index, boxes)
        crops[index] = boxes[index].cut(frame, crop_size)
    return FaceCrops(boxes, crops, tuple(sorted(undetected)))


def extract_rows(
    record: VideoRecord,
    options: ExtractOptions,
    detect: Callable[[np.ndarray], list[Box]],
) -> tuple[pa.Table, list[str]]:
    """The video's rows as an Arrow table, and notes worth recording (e.g. a short video).

    Raises ``VideoError`` when the video cannot give aligned pairs; the caller records a skip.
    """
    levels = options.levels
    info = _probe_levels(record, levels)
    indices = sample_indices(info.frame_count, options.frames_per_video)
    notes = []
    if info.frame_count < options.frames_per_video:
        notes.append(f"only {info.frame_count} frames (< {options.frames_per_video}): all used")

    frames = iter_frames(record.paths[levels[0]], indices, info.frame_count)
    faces = crop_faces(frames, detect, options.crop_size, options.margin)
    if not faces.boxes:
        raise VideoError(
            f"{record.paths[levels[0]]}: no face detected in any of {len(indices)} sampled frames"
        )
    if faces.without_face:
        notes.append(
            f"no face in {len(faces.without_face)} of {len(indices)} frames: nearest box reused"
        )
    boxes = faces.boxes
    crops: dict[str, dict[int, np.ndarray]] = {levels[0]: faces.crops}
    for level in levels[1:]:
        crops[level] = {
            index: boxes[index].cut(frame, options.crop_size)
            for index, frame in iter_frames(record.paths[level], indices, info.frame_count)
        }

    columns = {
        "dataset": [record.dataset] * len(indices),
        "method": [record.method] * len(indices),
        "video_id": [record.video_id] * len(indices),
        "video_key": [record.video_key] * len(indices),
        "label": [record.label] * len(indices),
        "split": [record.split] * len(indices),
        "frame_index": indices,
        "frame_count": [info.frame_count] * len(indices),
        "box_left": [boxes[i].left for i in indices],
        "box_top": [boxes[i].top for i in indices],
        "box_side": [boxes[i].side for i in indices],
    }
    for level in levels:
        images = [crops[level][i] for i in indices]
        column = image_column(level, options.image_format)
        columns[column] = encode_crops(images, options.image_format)
    schema = row_schema(levels, options.image_format, options.crop_size)
    return pa.Table.from_pydict(columns, schema=schema), notes
