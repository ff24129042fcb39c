"""How a shard stores each level's crops, and how a batch of them comes back as pixels.

Two formats, chosen when preparing (``data_prep prepare --image-format``) and recorded in the
manifest; readers tell them apart by column name, so training, evaluation, scoring and the
Grad-CAM sheets read either:

| format | column | Arrow type | on disk | to read a crop |
|---|---|---|---|---|
| ``raw`` | ``rgb_<level>`` | ``fixed_size_binary(3*S*S)``: RGB planes | zstd 9 | a copy |
| ``png`` | ``png_<level>`` | ``binary``: one lossless RGB PNG | as is | a PNG decode |

Both are lossless, so both give the same pixels (tests/test_image_columns.py). Raw crops are
stored as the models take them (channels first), so a batch at the model's size is one copy
out of the Arrow buffer; zstd at level 9 keeps them within ~20 % of PNG's bytes on photographs
(BENCHMARKS.md, "Shard image format").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np
import pyarrow as pa

IMAGE_FORMATS = ("raw", "png")
DEFAULT_IMAGE_FORMAT = "raw"
_PREFIX = {"raw": "rgb_", "png": "png_"}
#: Parquet compression (codec, level) of a shard in each format: PNG bytes do not compress.
COMPRESSION = {"raw": ("zstd", 9), "png": ("none", None)}


class ImageFormatError(ValueError):
    """Crops stored in a way this reader does not expect (a mixed folder, an unknown format)."""


def image_column(level: str, image_format: str) -> str:
    """The column holding ``level``'s crops in a shard of ``image_format``."""
    if image_format not in _PREFIX:
        raise ImageFormatError(f"unknown image format {image_format!r}; one of {IMAGE_FORMATS}")
    return _PREFIX[image_format] + level


def column_type(image_format: str, crop_size: int) -> pa.DataType:
    return pa.binary() if image_format == "png" else pa.binary(3 * crop_size * crop_size)


def formats_of(columns: Iterable[str]) -> set[str]:
    """The image formats whose columns appear among ``columns`` (a shard's schema names)."""
    columns = list(columns)
    return {f for f, prefix in _PREFIX.items() if any(c.startswith(prefix) for c in columns)}


def level_column(columns: Iterable[str], level: str) -> str:
    """The column of ``level``'s crops among a shard's ``columns``, in whichever format."""
    columns = list(columns)
    for image_format in IMAGE_FORMATS:
        if image_column(level, image_format) in columns:
            return image_column(level, image_format)
    raise ImageFormatError(f"no crops of level {level!r} among the columns {sorted(columns)}")


def levels_of(columns: Iterable[str], image_format: str) -> list[str]:
    """The levels a shard of ``image_format`` holds, from its column names."""
    prefix = _PREFIX[image_format]
    return sorted(c.removeprefix(prefix) for c in columns if c.startswith(prefix))


def encode_png(crop: np.ndarray) -> bytes:
    """An RGB HWC crop as a lossless PNG."""
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV failed to encode a PNG")
    return buffer.tobytes()


def encode_crops(crops: Sequence[np.ndarray], image_format: str) -> pa.Array:
    """RGB HWC uint8 crops of one size -> the Arrow column of ``image_format``."""
    if image_format == "png":
        return pa.array([encode_png(crop) for crop in crops], pa.binary())
    side = crops[0].shape[0]
    data = np.stack(crops)
    if data.dtype != np.uint8 or data.shape[1:] != (side, side, 3):
        raise ValueError(f"raw crops must be square uint8 RGB, got {data.dtype} {data.shape[1:]}")
    data = np.ascontiguousarray(data.transpose(0, 3, 1, 2))  # channels first, as models read
    return pa.FixedSizeBinaryArray.from_buffers(
        column_type("raw", side), len(crops), [None, pa.py_buffer(data)]
    )


def to_model_size(image: np.ndarray, size: int) -> np.ndarray:
    """A square HWC crop at the model's input side (area filter): how training, evaluation and
    detection all bring crops of another size to the model, so they see the same pixels."""
    if image.shape[0] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def decode_pngs(pngs: Sequence[bytes], size: int) -> np.ndarray:
    """PNG bytes -> uint8 (N, 3, size, size) RGB, resized when the shards hold another size.

    Each image is written straight into the batch array, BGR -> RGB and HWC -> CHW in one copy.
    """
    out = np.empty((len(pngs), 3, size, size), np.uint8)
    for i, png in enumerate(pngs):
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ImageFormatError("a shard holds a PNG that does not decode")
        out[i] = to_model_size(image, size).transpose(2, 0, 1)[::-1]
    return out


def _raw_images(chunk: pa.FixedSizeBinaryArray) -> np.ndarray:
    """The chunk's crops as an (N, 3, S, S) view of its Arrow buffer: no copy."""
    width = chunk.type.byte_width
    side = round((width // 3) ** 0.5)
    if 3 * side * side != width:
        raise ImageFormatError(f"a raw crop column of {width} bytes per row is not square RGB")
    data = np.frombuffer(
        chunk.buffers()[1], np.uint8, count=len(chunk) * width, offset=chunk.offset * width
    )
    return data.reshape(len(chunk), 3, side, side)


def decode_column(column: pa.Array | pa.ChunkedArray, size: int) -> np.ndarray:
    """An image column of either format -> uint8 (N, 3, size, size) RGB, an array of its own.

    Raw crops at the model's size are one copy out of the Arrow buffer; other sizes are resized
    as ``to_model_size`` resizes a decoded PNG."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not pa.types.is_fixed_size_binary(column.type):
        return decode_pngs([png for chunk in chunks for png in chunk.to_pylist()], size)
    out = np.empty((len(column), 3, size, size), np.uint8)
    row = 0
    for view in map(_raw_images, chunks):
        if view.shape[2] == size:
            out[row : row + len(view)] = view
        else:
            for i, image in enumerate(view, row):
                out[i] = to_model_size(image.transpose(1, 2, 0), size).transpose(2, 0, 1)
        row += len(view)
    return out
