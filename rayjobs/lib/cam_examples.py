"""Grad-CAM pictures of a few test frames per method, logged with every evaluation (paper Fig. 4).

One sheet per class of input (``real`` and each fake method): a row per frame, each from a
different video, showing the crop and the fake-class Grad-CAM of the spatial, frequency and
fused maps. Frames are the first ones of the test shards, so reruns show the same faces.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from mlflow.tracking import MlflowClient

from data_prep import storage
from data_prep.image_columns import decode_column, encode_png, image_column
from rayjobs.lib.checkpoints import load_model
from rayjobs.lib.data import shard_files, shard_format
from sffb.cam import overlay_strip, stage_cams

REAL = "real"


def example_frames(
    shards: str,
    level: str,
    size: int,
    methods: tuple[str, ...] = (),
    per_class: int = 2,
    split: str = "test",
) -> dict[str, np.ndarray]:
    """Up to ``per_class`` uint8 NCHW crops per class (``real``, then each fake method of
    ``methods``, or every one), one per video, read shard by shard until every class has them."""
    picked: dict[str, dict[str, pa.Array]] = {}  # class -> video_key -> its first row
    crops = image_column(level, shard_format(shards, split))
    columns = ["label", "method", "video_key", crops]

    def complete() -> bool:
        return len(picked) > 1 and all(len(v) == per_class for v in picked.values())

    for location in shard_files(shards, split):
        fs, path = storage.filesystem(location)
        with fs.open_input_file(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=256, columns=columns):
                rows = batch.select(["label", "method", "video_key"]).to_pylist()
                for i, row in enumerate(rows):
                    name = REAL if row["label"] == 0 else row["method"]
                    if methods and name != REAL and name not in methods:
                        continue
                    videos = picked.setdefault(name, {})
                    if len(videos) < per_class and row["video_key"] not in videos:
                        videos[row["video_key"]] = batch.column(crops).slice(i, 1)
                if complete():
                    break
        if complete():
            break
    ordered = sorted(picked, key=lambda name: (name != REAL, name))
    return {name: decode_column(pa.chunked_array(list(picked[name].values())), size)
            for name in ordered}  # fmt: skip


def cam_sheet(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Rows of crop | spatial | frequency | fused Grad-CAM, one row per image (RGB)."""
    device = next(model.parameters()).device
    cams = stage_cams(model, torch.from_numpy(images).to(device))
    rows = [overlay_strip(image, {k: v[i] for k, v in cams.items()}) for i, image in
            enumerate(images)]  # fmt: skip
    return np.concatenate(rows, axis=0)


def log_cam_examples(
    uri: str, run_id: str, checkpoint: str, shards: str, level: str, methods: tuple[str, ...]
) -> None:
    """Sheets as MLflow artifacts ``evaluation/gradcam/<level>/<class>.png``."""
    model = load_model(checkpoint)
    frames = example_frames(shards, level, model.config.image_size, methods)
    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as directory:
        for name, images in frames.items():
            path = Path(directory) / f"{name}.png"
            path.write_bytes(encode_png(cam_sheet(model, images)))
            client.log_artifact(run_id, str(path), artifact_path=f"evaluation/gradcam/{level}")
