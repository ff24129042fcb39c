"""Dataset of videos -> paired face-crop Parquet shards, one Ray task per video.

Videos are processed in a fixed order (split, then a hash of the video key, which interleaves
methods and reals) with a bounded window of tasks in flight, and their rows are written in that
order, so memory stays flat in the number of videos and the shards are reproducible byte for
byte. Re-running on the same output resumes: finished shards are kept, the unfinished one is
discarded and redone; a completed output is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from data_prep import storage
from data_prep.cluster import ensure_ray, format_problems, on_every_node
from data_prep.extract import ExtractOptions, extract_rows
from data_prep.faces import build_detector
from data_prep.image_columns import DEFAULT_IMAGE_FORMAT, IMAGE_FORMATS
from data_prep.readers import read_dataset
from data_prep.records import SPLITS, Skip, VideoRecord, canonical_level
from data_prep.shards import ShardWriter, complete_shards, row_schema, shard_notes
from data_prep.versions import PREPARATION_PACKAGES, installed_versions
from data_prep.video import VideoError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PrepareConfig:
    """What defines a prepared dataset; the manifest records it and a rerun must match it."""

    dataset: str = "ffpp"  # a reader from data_prep.readers.READERS
    root: str = ""  # the dataset's folder
    output: str = ""  # where shards and manifest.json go
    levels: tuple[str, ...] = ("raw", "c23", "c40")  # faces are detected on raw (else the first)
    methods: tuple[str, ...] = ()  # empty: every method the reader knows
    splits_dir: str | None = None  # FF++ official split JSONs (default: ROOT/splits if present)
    frames_per_video: int = 50
    crop_size: int = 256
    margin: float = 1.3
    detector: str = "haar"  # a name from data_prep.faces.DETECTORS
    shard_target_mb: float = 256.0
    seed: int = 0
    image_format: str = DEFAULT_IMAGE_FORMAT  # how crops are stored: raw (zstd) or png

    def __post_init__(self) -> None:
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format: unknown {self.image_format!r}; one of {IMAGE_FORMATS}")
        levels = tuple(canonical_level(v) for v in self.levels)
        if "raw" in levels:  # the reference for face boxes: the cleanest frames
            levels = ("raw", *(level for level in levels if level != "raw"))
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "methods", tuple(self.methods))

    def extract_options(self) -> ExtractOptions:
        return ExtractOptions(
            self.levels, self.frames_per_video, self.crop_size, self.margin, self.image_format
        )


class InputUnavailableError(OSError):
    """An input the driver listed cannot be read on the node that processes it.

    Never a skip: the dataset root is not on storage every node sees, and skipping would lose
    good videos without a word.
    """


@dataclass
class _Outcome:
    """What one video task sends back: rows, or the reason there are none."""

    table: object = None  # pyarrow.Table
    skip: str | None = None
    notes: list[str] = field(default_factory=list)


def _check_inputs_visible(record: VideoRecord) -> None:
    """Raise ``InputUnavailableError`` when a level's file is not readable on this node."""
    for level, path in record.paths.items():
        if not Path(path).is_file() or not os.access(path, os.R_OK):
            node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
            raise InputUnavailableError(
                f"{path} ({level} of {record.video_key}): not readable on node "
                f"{socket.gethostname()} (Ray node {node[:12]}), although the driver listed it; "
                "the dataset root must be on storage that every node mounts at the same path"
            )


def _root_problems(root: str) -> list[str]:
    """Run on each node: is the dataset root a readable folder there?"""
    path = Path(root)
    if path.is_dir() and os.access(path, os.R_OK | os.X_OK):
        return []
    return [f"{root}: the dataset root is not a readable folder on this node"]


def check_root_on_every_node(root: Path) -> None:
    """Fail in seconds, naming the node, when a node cannot read the dataset root."""
    report = format_problems(on_every_node(_root_problems, str(root)))
    if report:
        raise InputUnavailableError(
            "the dataset root must be on storage that every node mounts at the same path:\n"
            + report
        )


def process_video(record: VideoRecord, config: PrepareConfig) -> _Outcome:
    """Rows of one video, or a recorded reason; never raises for a bad video.

    Raises ``InputUnavailableError`` for an input this node cannot see (a cluster problem).
    """
    _check_inputs_visible(record)
    try:
        table, notes = extract_rows(
            record, config.extract_options(), build_detector(config.detector)
        )
    except VideoError as error:
        return _Outcome(skip=str(error))
    return _Outcome(table=table, notes=notes)


_process_video_task = ray.remote(num_cpus=1, max_retries=2)(process_video)


def _ordered(records: list[VideoRecord]) -> list[VideoRecord]:
    """Split by split, videos in a fixed pseudo-random order (a hash of the video key).

    Sorting by key would put every fake of one method, then every real, into the same shards;
    a streaming reader with a local shuffle buffer would then serve single-class batches, and
    BatchNorm trained on those learns statistics that invert at evaluation time.
    """

    def position(record: VideoRecord) -> tuple[int, str]:
        digest = hashlib.sha256(record.video_key.encode()).hexdigest()
        return SPLITS.index(record.split), digest

    return sorted(records, key=position)


def _ordered_results(records: list[VideoRecord], config: PrepareConfig, window: int) -> Iterator:
    """``(record, outcome)`` in the records' order, with at most ``window`` tasks in flight."""
    config_ref = ray.put(config)
    pending = []
    for record in records:
        pending.append((record, _process_video_task.remote(record, config_ref)))
        if len(pending) >= window:
            record, ref = pending.pop(0)
            yield record, _result(ref)
    for record, ref in pending:
        yield record, _result(ref)


def _result(ref: ray.ObjectRef) -> _Outcome:
    """A task's outcome; an input missing on its node is re-raised as itself, not wrapped."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, InputUnavailableError):
            raise InputUnavailableError(str(error.cause)) from None
        raise


def _write_json(location: str, content: dict) -> None:
    storage.write_text(location, json.dumps(content, indent=2, sort_keys=True) + "\n")


def _config_json(config: PrepareConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))


def recorded_config(manifest: dict) -> dict:
    """The preparation settings a manifest records; those written before shards had an image
    format hold PNG crops."""
    return {"image_format": "png", **manifest.get("config", {})}


def completed_format(output: str) -> str | None:
    """The image format of a finished preparation at ``output``, or None if there is none."""
    manifest_path = storage.join(storage.normalise(output), MANIFEST)
    if not storage.is_file(manifest_path):
        return None
    manifest = json.loads(storage.read_text(manifest_path))
    return recorded_config(manifest)["image_format"] if manifest.get("complete") else None


def _clear(output: str) -> None:
    """Remove what an earlier preparation wrote (only its own files)."""
    for split in SPLITS:
        storage.remove(storage.join(output, split))
    storage.remove(storage.join(output, MANIFEST))


def _summarise(output: str) -> dict:
    """Row counts per split/method/label, and each shard's rows and checksum, from the shards."""
    counts: Counter = Counter()
    shards = []
    for split in SPLITS:
        for path in complete_shards(output, split):
            data = storage.read_bytes(path)
            table = pq.read_table(pa.BufferReader(data), columns=["method", "label"])
            for method, label in zip(
                table["method"].to_pylist(), table["label"].to_pylist(), strict=True
            ):
                counts[(split, method, label)] += 1
            digest = hashlib.sha256(data).hexdigest()
            relative = f"{split}/{storage.name(path)}"
            shards.append({"path": relative, "rows": table.num_rows, "sha256": digest})
    rows: dict = {}
    for (split, method, label), n in sorted(counts.items()):
        rows.setdefault(split, {}).setdefault(method, {})[str(label)] = n
    return {"rows": rows, "total_rows": sum(counts.values()), "shards": shards}


def _all_notes(output: str) -> list[dict]:
    """Every finished shard's notes: a resumed run's earlier shards keep theirs."""
    return [n for split in SPLITS for s in complete_shards(output, split) for n in shard_notes(s)]


def prepare(config: PrepareConfig, overwrite: bool = False, progress: bool = True) -> dict:
    """Prepare (or finish preparing) ``config.output``; return the manifest.

    Runs on the Ray cluster this process is connected to, or the one ``ensure_ray`` finds.
    ``config.output`` may be a path or a URI (``s3://...``).
    """
    output = storage.normalise(config.output)
    manifest_path = storage.join(output, MANIFEST)
    wanted = _config_json(config)
    if storage.is_file(manifest_path) and not overwrite:
        previous = json.loads(storage.read_text(manifest_path))
        recorded = recorded_config(previous)
        differences = sorted(
            f"{key}: {recorded.get(key)!r} -> {wanted.get(key)!r}"
            for key in recorded.keys() | wanted.keys()
            if recorded.get(key) != wanted.get(key)
        )
        if differences:
            raise ValueError(
                f"{output}: prepared earlier with another configuration "
                f"({'; '.join(differences)}); pass --overwrite to redo it, or choose another output"
            )
        if previous.get("complete"):
            return previous

    found = read_dataset(
        config.dataset,
        Path(config.root),
        config.levels,
        seed=config.seed,
        methods=config.methods or None,
        splits_dir=Path(config.splits_dir) if config.splits_dir else None,
    )
    ensure_ray()
    check_root_on_every_node(Path(config.root).resolve())  # before anything is removed
    if overwrite:
        _clear(output)
    storage.makedirs(output)
    versions = installed_versions(PREPARATION_PACKAGES)
    _write_json(manifest_path, {"config": wanted, "complete": False, "versions": versions})
    skipped: list[Skip] = list(found.skipped)
    done_keys, start = set(), {}
    for split in SPLITS:
        local = storage.local_path(storage.join(output, split))
        for temporary in local.glob("*.tmp") if local else ():
            temporary.unlink()  # an unfinished shard of an interrupted run: redone below
        shards = complete_shards(output, split)
        start[split] = len(shards)
        for path in shards:
            fs, inner = storage.filesystem(path)
            keys = pq.read_table(inner, columns=["video_key"], filesystem=fs)["video_key"]
            done_keys.update(keys.to_pylist())
    todo = [r for r in _ordered(found.records) if r.video_key not in done_keys]

    window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    schema = row_schema(config.levels, config.image_format, config.crop_size)
    target_bytes = int(config.shard_target_mb * 1024 * 1024)
    writers: dict[str, ShardWriter] = {}
    bar = tqdm(total=len(todo), unit="video", desc="prepare", disable=not progress)
    try:
        for record, outcome in _ordered_results(todo, config, window):
            bar.update(1)
            if outcome.skip is not None:
                path = str(record.paths.get(config.levels[0], ""))
                skipped.append(Skip(path, outcome.skip, record.video_key))
                continue
            if record.split not in writers:
                for writer in writers.values():
                    writer.close()  # splits come one after another: the last one is finished
                writers[record.split] = ShardWriter(
                    output, record.split, schema, target_bytes, start[record.split]
                )
            notes = [{"video_key": record.video_key, "note": n} for n in outcome.notes]
            writers[record.split].write(outcome.table, notes)
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.discard()  # finished shards stay; the open one is redone on the rerun
        raise
    finally:
        bar.close()

    manifest = {
        "config": wanted,
        "complete": True,
        "versions": versions,
        **_summarise(output),
        "skipped": [asdict(s) for s in sorted(skipped, key=lambda s: (s.path, s.reason))],
        "notes": sorted(_all_notes(output), key=lambda n: (n["video_key"], n["note"])),
    }
    _write_json(manifest_path, manifest)
    return manifest
