"""The shards a run read, logged as MLflow dataset inputs.

MLflow's runs table fills its Dataset column, and a run page lists its inputs, from these: one
dataset per split (``<shards folder>/<split>``), its source the split's location (a path or a
URI), its digest the preparation manifest's hash (so two runs on the same data show the same
digest), its profile the rows the run's method filter keeps; the context says how the run used
it (``training``, ``validation``, ``test``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from data_prep import storage
from rayjobs.lib.tracking import without_insert_races

#: How a run uses each split, in MLflow's context vocabulary.
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
#: MLflow's limit on a dataset digest (characters); the manifest's SHA-256 is cut to it.
DIGEST_CHARS = 32


def shard_dataset(
    shards: str, split: str, manifest_bytes: bytes, methods: Sequence[str] = ()
) -> Dataset:
    """The split as an MLflow dataset, described by the shards' manifest (its raw bytes)."""
    manifest = json.loads(manifest_bytes)
    kept = {
        method: sum(n for label, n in counts.items() if label == "0" or not methods
                    or method in methods)
        for method, counts in manifest["rows"].get(split, {}).items()
    }  # fmt: skip
    profile = {
        "rows": sum(kept.values()),
        "rows_by_method": {method: n for method, n in kept.items() if n},
        "levels": manifest["config"]["levels"],
        "crop_size": manifest["config"]["crop_size"],
    }
    location = storage.join(shards, split)
    with warnings.catch_warnings():  # a local path matches two equivalent source types
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(location)
    digest = hashlib.sha256(manifest_bytes).hexdigest()[:DIGEST_CHARS]
    described = MetaDataset(source, name=f"{storage.name(shards)}/{split}", digest=digest)
    return Dataset(**described.to_dict(), profile=json.dumps(profile))


def log_shard_inputs(
    uri: str, run_id: str, shards: str, splits: Sequence[str], methods: Sequence[str] = ()
) -> None:
    """Log each split of ``shards`` the run reads as a dataset input, with its context.

    Shards without a preparation manifest (not made by ``data_prep``) are noted and skipped:
    the run itself does not need the manifest.
    """
    location = storage.join(shards, "manifest.json")
    try:
        manifest_bytes = storage.read_bytes(location)
    except FileNotFoundError:
        print(f"{location} not found: no dataset inputs logged")
        return
    datasets = [shard_dataset(shards, split, manifest_bytes, methods) for split in splits]
    inputs = [
        DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[split])])
        for dataset, split in zip(datasets, splits, strict=True)
    ]
    without_insert_races(lambda: MlflowClient(uri).log_inputs(run_id, datasets=inputs))
