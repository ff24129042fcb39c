"""Ray Data input: paired shards -> decoded (teacher, student) batches.

Shards are read lazily (only the needed columns, rows filtered at the Parquet reader) and
decoded in ``map_batches`` on CPU workers, so nothing materialises the dataset and memory stays
bounded as it grows. Crops of either storage format (``data_prep.image_columns``: raw planes,
or PNG) leave this stage as uint8 NCHW; augmentation (by default), scaling, normalisation and
the DCT happen on the training worker's device.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pyarrow.parquet as pq
import ray.data
from ray.data import FileShuffleConfig
from ray.data.expressions import col

from data_prep import storage
from data_prep.image_columns import formats_of, image_column, levels_of
from data_prep.shards import complete_shards
from rayjobs.lib.balance import RepeatClass
from rayjobs.lib.config import DataConfig
from rayjobs.lib.decode import KEY_COLUMNS, DecodePairs


class DataError(ValueError):
    """Shards that cannot feed the configured job (checked before any worker starts)."""


def shard_files(shards: str, split: str) -> list[str]:
    """The split's shard files (paths or URIs); ``DataError`` naming the folder if none."""
    files = complete_shards(shards, split)
    if not files:
        where = storage.join(shards, split)
        raise DataError(f"{where}: no shards (part-*.parquet) for split {split!r}")
    return files


def _schema_names(location: str) -> list[str]:
    fs, path = storage.filesystem(location)
    return pq.read_schema(path, filesystem=fs).names


def shard_format(shards: str, split: str) -> str:
    """The image format of the split's shards (every footer read); ``DataError`` naming the
    files when they mix formats, which one preparation never writes."""
    return _read_schemas(shards, split)[0]


def _read_schemas(shards: str, split: str) -> tuple[str, str, list[str]]:
    """(the split's image format, its first shard, that shard's column names)."""
    files = shard_files(shards, split)
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        names = list(pool.map(_schema_names, files))
    example: dict[str, str] = {}
    for location, columns in zip(files, names, strict=True):
        found = formats_of(columns)
        if len(found) != 1:
            raise DataError(f"{location}: expected the crops in one format (rgb_* or png_* "
                            f"columns), found {sorted(found) or 'none'}")  # fmt: skip
        example.setdefault(found.pop(), location)
    if len(example) > 1:
        mixed = ", ".join(f"{f} ({where})" for f, where in sorted(example.items()))
        raise DataError(
            f"{storage.join(shards, split)}: shards of two image formats: {mixed}; prepare the "
            "dataset again into one folder (data_prep prepare --image-format raw|png)"
        )
    return next(iter(example)), files[0], names[0]


def check_levels(shards: str, split: str, levels: tuple[str, ...]) -> str:
    """Fail early, naming the shard, when a level the job needs was not prepared; return the
    shards' image format, which says how to read them."""
    image_format, first, columns = _read_schemas(shards, split)
    have = levels_of(columns, image_format)
    missing = [level for level in levels if level not in have]
    if missing:
        raise DataError(f"{first}: level {missing[0]!r} is not in the shards (they hold {have})")
    return image_format


def check_methods(shards: str, split: str, methods: tuple[str, ...]) -> None:
    """Fail early when a requested fake method has no rows in ``split`` (a typo, or a method
    that was not prepared), naming the ones the shards do hold."""
    if not methods:
        return
    manifest = json.loads(storage.read_text(storage.join(shards, "manifest.json")))
    rows = manifest.get("rows", {}).get(split, {})
    have = sorted(m for m, by_label in rows.items() if by_label.get("1"))
    missing = [m for m in methods if m not in have]
    if missing:
        raise DataError(
            f"{storage.join(shards, 'manifest.json')}: no {split} fakes of method(s) "
            f"{missing}; the shards hold {have}"
        )


def methods_filter(methods: tuple[str, ...]):
    """Every real, plus the fakes of ``methods`` (pushed down to the Parquet reader)."""
    return (col("label") == 0) | col("method").is_in(list(methods))


#: Ray Data's knob for its Parquet footer readers (Ray 2.60, ``FooterFileIndexer``).
FOOTER_ACTORS_VARIABLE = "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"
#: Files one footer reader takes per call (Ray's ``RAY_DATA_PARQUET_FOOTER_BATCH_SIZE``).
FOOTER_FILES_PER_CALL = 10
_footer_lock = threading.Lock()


def footer_readers(files: int) -> int:
    """Footer-reading actors worth starting for ``files`` Parquet files: one per call's batch,
    at most Ray's default of 32."""
    return max(1, min(32, math.ceil(files / FOOTER_FILES_PER_CALL)))


@contextmanager
def sized_footer_pool(files: int) -> Iterator[None]:
    """Size the footer-reader pool of the Parquet reads created inside the block.

    Ray Data reads every Parquet footer on a pool of actors that it starts, and kills, at every
    execution of a read: 32 of them by default, each a new Python process. For a split of a few
    shards that is most of an epoch on a small machine (~8 of 10 s per validation pass of the
    test data on 2 cores). The reader takes the pool size from the environment when the read is
    created (on this process), so it is set around that call; a value the user exported wins.
    """
    if FOOTER_ACTORS_VARIABLE in os.environ:
        yield
        return
    with _footer_lock:  # threads (concurrent trainings) must not see each other's value
        os.environ[FOOTER_ACTORS_VARIABLE] = str(footer_readers(files))
        try:
            yield
        finally:
            del os.environ[FOOTER_ACTORS_VARIABLE]


#: Arrow's CPU thread pool in a Parquet read task: Ray 2.60's ``ParquetFileReader`` sets it to
#: 32 (sized for wide S3 scans) in every read task, and Ray Data runs one read task per CPU, so
#: a node decompresses with 32 threads per core. One per task cut the read's CPU per pair by
#: 36-47 % on the 2-core dev VM (BENCHMARKS.md, "Ray Data read path").
READER_CPU_VARIABLE = "RAY_DATA_PARQUET_READER_CPU_COUNT"
#: Threads per read task unless the user exports ``READER_CPU_VARIABLE`` on the driver.
READER_CPU_THREADS = 1


def read_task_env() -> dict[str, dict[str, str]]:
    """The ``runtime_env`` of the Parquet read tasks: Arrow's CPU pool sized to the task's one
    CPU (or to the driver's ``READER_CPU_VARIABLE``). Set per task, so it reaches the read
    workers on every node, merged into the job's own runtime environment."""
    threads = os.environ.get(READER_CPU_VARIABLE, str(READER_CPU_THREADS))
    return {"env_vars": {READER_CPU_VARIABLE: threads}}


def paired_dataset(
    config: DataConfig,
    split: str,
    levels: tuple[str, ...],
    image_size: int,
    augment: bool,
    repeat: tuple[int, float] | None = None,
    seed: int | None = None,
) -> ray.data.Dataset:
    """The split's rows with one decoded image per level (see ``DecodePairs``).

    Training input (``augment=True``) is shuffled by file, and augmented here when
    ``config.augment_on == "cpu"`` (else the training worker augments on its device);
    evaluation input keeps the row's ``KEY_COLUMNS`` for video-level and paired metrics. ``repeat``
    (label, expected copies) oversamples a class before decoding (``data.balance: sampler``).
    ``seed`` makes the training file order a function of the seed and the epoch (Ray Data
    reseeds every execution), else it is drawn afresh.
    """
    shards = config.shards
    image_format = check_levels(shards, split, levels)
    keys = KEY_COLUMNS if not augment else ("method", "video_key")
    columns = ["label", *keys, *(image_column(level, image_format) for level in levels)]
    shuffle = (FileShuffleConfig(seed=seed) if seed is not None else "files") if augment else None
    files = shard_files(shards, split)
    with sized_footer_pool(len(files)):
        dataset = ray.data.read_parquet(files, shuffle=shuffle, runtime_env=read_task_env())
    dataset = dataset.select_columns(columns)  # projected down to the Parquet reader
    if config.methods:
        dataset = dataset.filter(expr=methods_filter(config.methods))
    if repeat is not None:
        dataset = dataset.map_batches(RepeatClass(*repeat), batch_format="pyarrow", batch_size=64)
    here = augment and config.augment_on == "cpu"
    step = DecodePairs(
        levels, image_format, image_size, config.augment if here else None, keys=not augment
    )
    return dataset.map_batches(step, batch_format="pyarrow", batch_size=64)
