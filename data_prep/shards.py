"""The Parquet shard format of paired face crops, and its atomic, size-bounded writer.

Layout: ``OUTPUT/<split>/part-NNNNN.parquet`` plus ``OUTPUT/manifest.json``. One row per
(video, sampled frame):

| column | type | meaning |
|---|---|---|
| dataset, method, video_id | string | origin, e.g. ``ffpp``, ``Deepfakes``, ``000_003`` |
| video_key | string | ``dataset/method/video_id``: unique across methods; video metric key |
| label | int8 | 0 = real, 1 = fake |
| split | string | ``train``, ``val`` or ``test`` |
| frame_index, frame_count | int32 | the sampled frame and the video's length |
| box_left, box_top, box_side | int32 | the square crop box, in reference-level pixels |
| rgb_<level> | fixed_size_binary | the crop of that level (``rgb_raw``, ...), RGB planes |
| png_<level> | binary | or, in PNG shards, a lossless RGB PNG (``data_prep.image_columns``) |

Every level's crop of a row comes from the same frame and the same box, and every crop of a
prepared dataset has one format (recorded in the schema's ``sffb.image_format`` and the manifest;
raw shards are zstd-compressed, PNG ones not). A shard holds whole
videos, one row group per video, and is written under a temporary name and renamed when complete.
Its footer (key ``sffb.notes``) keeps the preparation notes of its videos, so the notes of a
resumed run's earlier shards are not lost.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep import storage
from data_prep.image_columns import COMPRESSION, column_type, image_column

SHARD_GLOB = "part-*.parquet"
NOTES_KEY = "sffb.notes"
_METADATA_FIELDS = [
    ("dataset", pa.string()),
    ("method", pa.string()),
    ("video_id", pa.string()),
    ("video_key", pa.string()),
    ("label", pa.int8()),
    ("split", pa.string()),
    ("frame_index", pa.int32()),
    ("frame_count", pa.int32()),
    ("box_left", pa.int32()),
    ("box_top", pa.int32()),
    ("box_side", pa.int32()),
]
METADATA_COLUMNS = tuple(name for name, _ in _METADATA_FIELDS)


def row_schema(levels: Sequence[str], image_format: str, crop_size: int) -> pa.Schema:
    fields = [pa.field(n, t, nullable=False) for n, t in _METADATA_FIELDS]
    image_type = column_type(image_format, crop_size)
    fields += [
        pa.field(image_column(level, image_format), image_type, nullable=False) for level in levels
    ]
    metadata = {"sffb.levels": ",".join(levels), "sffb.image_format": image_format}
    return pa.schema(fields, metadata=metadata)


def shard_notes(location: str) -> list[dict]:
    """The notes (``{"video_key", "note"}``) a finished shard's footer holds."""
    fs, path = storage.filesystem(location)
    metadata = pq.read_metadata(path, filesystem=fs).metadata or {}
    return json.loads(metadata.get(NOTES_KEY.encode(), b"[]"))


def shard_path(output: str | Path, split: str, index: int) -> str:
    return storage.join(output, split, f"part-{index:05d}.parquet")


def complete_shards(output: str | Path, split: str) -> list[str]:
    """The finished shards of a split (paths or URIs), in order; temporary files never match."""
    return storage.list_files(storage.join(output, split), SHARD_GLOB)


class ShardWriter:
    """Streams one split's videos into shards of about ``target_bytes`` each.

    A shard is closed after the video that brings it to the target, so shard boundaries depend on
    the content only: the same videos in the same order give the same shards, byte for byte.
    ``output`` may be a URI: a shard is then staged on local disk and put whole when complete.
    """

    def __init__(
        self, output: str | Path, split: str, schema: pa.Schema, target_bytes: int, start: int
    ):
        self.output, self.split, self.schema = output, split, schema
        self.target_bytes = target_bytes
        self.index = start
        self.written: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._temporary: Path | None = None
        self._bytes = 0
        self._notes: list[dict] = []

    def write(self, table: pa.Table, notes: Sequence[dict] = ()) -> None:
        """Append one video's rows (and its notes, kept in the shard's footer)."""
        if self._writer is None:
            self._temporary = self._staging_path()
            image_format = self.schema.metadata[b"sffb.image_format"].decode()
            codec, level = COMPRESSION[image_format]
            self._writer = pq.ParquetWriter(
                self._temporary, self.schema, compression=codec, compression_level=level
            )
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._notes.extend(notes)
        self._bytes += table.nbytes
        if self._bytes >= self.target_bytes:
            self._finish()

    def _staging_path(self) -> Path:
        """Beside the shard when local (renamed in place), else in the local temp folder."""
        final = shard_path(self.output, self.split, self.index)
        local = storage.local_path(final)
        if local is not None:
            local.parent.mkdir(parents=True, exist_ok=True)
            return local.with_suffix(".tmp")
        handle, name = tempfile.mkstemp(prefix="sffb-shard-", suffix=".parquet.tmp")
        os.close(handle)
        return Path(name)

    def close(self) -> None:
        if self._writer is not None:
            self._finish()

    def discard(self) -> None:
        """Drop the open, unfinished shard (its staging file included)."""
        if self._writer is not None:
            self._writer.close()
            self._temporary.unlink(missing_ok=True)
            self._writer, self._temporary, self._bytes, self._notes = None, None, 0, []

    def _finish(self) -> None:
        self._writer.add_key_value_metadata({NOTES_KEY: json.dumps(self._notes)})
        self._writer.close()
        final = shard_path(self.output, self.split, self.index)
        if storage.is_uri(final):
            storage.upload_file(self._temporary, final)
            self._temporary.unlink()
        else:
            os.replace(self._temporary, final)
        self.written.append(final)
        self._writer, self._temporary, self._bytes, self._notes = None, None, 0, []
        self.index += 1
