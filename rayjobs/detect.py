"""Score your own videos and images with a trained detector: P(fake) per frame and per file.

    python rayjobs/detect.py clip.mp4 photos/ 'more/**/*.mov' [--model M] [--output out.jsonl]
    python rayjobs/detect.py s3://bucket/uploads/ --output s3://bucket/scores.csv --cam cams/

Each file is cut as the model's training data was (the same even frame sampler, face detector,
box enlargement and crop size, read from the checkpoint), scored, and written as one record:
``path``, ``video_score`` (mean calibrated frame P(fake)), ``label``, ``frames_scored``,
``frames_without_face``, ``frame_scores`` and ``error``. A file that cannot be scored gets its
reason and the batch goes on; the exit status is non-zero only when no file could be scored.

It runs as Ray Data: a CPU stage (decode, sample, detect, crop: one task per file) feeding a pool
of model actors (one per GPU, bf16, when the cluster has GPUs), so memory stays flat however
many files there are. ``--cam DIR`` also writes Grad-CAM pictures of the spatial, frequency and
fused maps of every scored frame (paper Fig. 4).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import ray
import ray.data
import torch
from tqdm import tqdm

from data_prep import storage
from data_prep.defaults import workdir
from data_prep.image_columns import encode_png, to_model_size
from data_prep.media import CropSettings, expand_inputs, file_faces
from data_prep.video import VideoError
from rayjobs.lib.checkpoints import STATE_FILE, load_state, model_from_state
from rayjobs.lib.config import TrackingConfig
from rayjobs.lib.detection_results import Collector, ResultWriter, file_record, summary_table
from rayjobs.lib.launch import USER_ERRORS, ensure_ray
from rayjobs.lib.preflight import Needs, check_every_node
from rayjobs.lib.scorer_pool import scorer_pool
from rayjobs.lib.scoring import SCORE_BATCH, fake_scores, model_device
from rayjobs.lib.trained_model import TrainedModel, load_trained_model, resolve_model
from sffb.cam import overlay_strip, stage_cams

COLUMNS = ("order", "rows", "frame_index", "without_face", "error")


def crop_file(item: dict, crops: CropSettings, size: int) -> list[dict]:
    """CPU stage: one file -> one row per sampled frame (a uint8 CHW crop at the model's size),
    or a single row carrying the reason it cannot be scored."""
    path, order = item["path"], item["order"]
    try:
        found = file_faces(path, crops).faces
    except Exception as error:  # any bad file is recorded; the batch goes on
        reason = str(error).removeprefix(f"{path}: ")
        if not isinstance(error, VideoError):  # unforeseen: say what kind of failure it was
            reason = f"{type(error).__name__}: {reason}"
        empty = np.zeros((3, size, size), np.uint8)
        return [dict(order=order, rows=1, frame_index=-1, without_face=False, error=reason,
                     image=empty)]  # fmt: skip
    missing = set(found.without_face)
    return [
        dict(
            order=order,
            rows=len(found.crops),
            frame_index=index,
            without_face=index in missing,
            error="",
            image=np.ascontiguousarray(to_model_size(crop, size).transpose(2, 0, 1)),
        )
        for index, crop in sorted(found.crops.items())
    ]


class FrameScorer:
    """Model stage (a Ray Data actor): raw P(fake) per frame, and Grad-CAM pictures on request."""

    def __init__(self, checkpoint: str, cam: bool, rows: int) -> None:
        self.device = model_device()
        self.model = model_from_state(load_state(checkpoint), self.device)
        self.cam = cam
        self.rows = rows  # crops per forward pass

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scorable = np.flatnonzero(batch["error"] == "")
        out = {key: batch[key] for key in COLUMNS}
        out["score"] = np.full(len(batch["order"]), np.nan, np.float32)
        images = batch["image"][scorable]
        if len(scorable):
            out["score"][scorable] = fake_scores(self.model, images, self.device, self.rows)
        if self.cam:
            out["cam"] = np.array([b""] * len(batch["order"]), dtype=object)
            if len(scorable):
                cams = stage_cams(self.model, torch.from_numpy(images).to(self.device))
                for j, row in enumerate(scorable):
                    maps = {name: stage[j] for name, stage in cams.items()}
                    out["cam"][row] = encode_png(overlay_strip(images[j], maps))
        return out


@dataclass(frozen=True)
class Outcome:
    output: str  # where the records went
    files: int  # inputs after expanding folders and globs
    scored: int  # files with a score
    failed: int  # files recorded with an error
    shown: list[dict]  # the first records, for the summary table


def default_output() -> str:
    return storage.join(workdir(), "detections", time.strftime("detections-%Y%m%d-%H%M%S.jsonl"))


def cam_folder(cam_dir: str, order: int, path: str) -> str:
    """Per input file: numbered, so equal file names from different folders do not collide."""
    return storage.join(cam_dir, f"{order:05d}-{Path(storage.name(path)).stem}")


def scored_frames(
    paths: list[str], model: TrainedModel, crops: CropSettings, cam: bool, batch_size: int
) -> ray.data.Dataset:
    """The Ray Data pipeline: files -> cropped frames (CPU tasks) -> scores (model actors)."""
    size = model.config.model.image_size
    items = [{"path": path, "order": order} for order, path in enumerate(paths)]
    frames = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 1000)))
    frames = frames.flat_map(crop_file, fn_kwargs={"crops": crops, "size": size})
    return frames.map_batches(
        FrameScorer,
        fn_constructor_kwargs={"checkpoint": model.checkpoint, "cam": cam, "rows": batch_size},
        batch_size=batch_size,
        batch_format="numpy",
        **scorer_pool(),
    )


def detect(
    inputs: list[str],
    model: str | None = None,
    output: str | None = None,
    frames: int | None = None,
    threshold: float | None = None,
    cam_dir: str | None = None,
    batch_size: int = SCORE_BATCH,
    progress: bool = True,
    shown_limit: int = 20,
    experiment: str = TrackingConfig.experiment,
) -> Outcome:
    """Score every file ``inputs`` names; see the module docstring. With no ``model``, the
    newest distilled student in the MLflow ``experiment`` is used."""
    paths = expand_inputs(inputs)
    if not paths:
        raise ValueError("no input files given")
    trained = load_trained_model(resolve_model(model, experiment=experiment))
    crops = replace(trained.crops, frames_per_video=frames or trained.crops.frames_per_video)
    cut = threshold if threshold is not None else trained.threshold
    calibrate = trained.calibration.apply if trained.calibration else (lambda s: s)
    output = storage.normalise(output or default_output())
    cam_dir = storage.normalise(cam_dir) if cam_dir else None
    print(f"model {trained.checkpoint} (reads {trained.level}; threshold {cut:.3f}"
          f"{', temperature-calibrated' if trained.calibration else ''})")  # fmt: skip
    print(f"{len(paths)} file(s); {crops.frames_per_video} frames per video, face detector "
          f"{crops.detector}, margin {crops.margin}, crops {crops.crop_size} px")  # fmt: skip
    ensure_ray()
    check_every_node(Needs((storage.join(trained.checkpoint, STATE_FILE),)))

    def make_record(path, frame_list, error):
        return file_record(path, frame_list, error, calibrate, cut)

    collector = Collector(paths, make_record)
    writer = ResultWriter(output)
    scored = failed = 0
    shown: list[dict] = []
    bar = tqdm(total=len(paths), unit="file", disable=not progress, desc="detect")
    try:
        pipeline = scored_frames(paths, trained, crops, cam_dir is not None, batch_size)
        for batch in pipeline.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["order"])):
                order, error = int(batch["order"][i]), str(batch["error"][i])
                frame = (int(batch["frame_index"][i]), float(batch["score"][i]),
                         bool(batch["without_face"][i]))  # fmt: skip
                if cam_dir is not None and not error:
                    folder = cam_folder(cam_dir, order, paths[order])
                    name = f"frame_{frame[0]:06d}.png"
                    storage.write_bytes(storage.join(folder, name), batch["cam"][i])
                collector.add(order, int(batch["rows"][i]), frame, error)
            for record in collector.ready():
                writer.write(record)
                scored, failed = scored + (record["error"] is None), failed + bool(record["error"])
                if len(shown) < shown_limit:
                    shown.append(record)
                bar.update()
    except BaseException:
        writer.abandon()
        raise
    finally:
        bar.close()
    writer.close()
    return Outcome(output, len(paths), scored, failed, shown)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="video/image files, folders, globs or URIs")
    parser.add_argument(
        "--model",
        help="a checkpoint folder (path or URI) or runs:/<MLflow run id>; "
        "default: the newest distilled student in MLflow",
    )
    parser.add_argument("--output", help="results file, .jsonl or .csv (path or URI); default: "
                        "$SFFB_HOME/detections/detections-<time>.jsonl")  # fmt: skip
    parser.add_argument("--frames", type=int, help="frames per video (default: as in training)")
    parser.add_argument("--threshold", type=float,
                        help="P(fake) above which a file is labelled fake (default: the "
                        "threshold calibrated on validation, else 0.5)")  # fmt: skip
    parser.add_argument("--cam", metavar="DIR", help="write Grad-CAM pictures here")
    parser.add_argument("--batch-size", type=int, default=SCORE_BATCH,
                        help="frames per forward pass (the last padded, so a frame's score "
                        "does not depend on its batch; the default gives evaluation's "
                        "scores)")  # fmt: skip
    parser.add_argument("--experiment", default=TrackingConfig.experiment,
                        help="MLflow experiment searched for the default model")  # fmt: skip
    args = parser.parse_args(argv)
    if args.frames is not None and args.frames < 1:
        parser.error("--frames must be at least 1")
    ray.data.DataContext.get_current().enable_progress_bars = False  # ours counts files
    try:
        outcome = detect(args.inputs, args.model, args.output, args.frames, args.threshold,
                         args.cam, args.batch_size, experiment=args.experiment)  # fmt: skip
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    print(summary_table(outcome.shown, outcome.files))
    print(f"{outcome.scored} scored, {outcome.failed} not scored; results: {outcome.output}")
    if args.cam:
        print(f"Grad-CAM pictures (crop | spatial | frequency | fused): {args.cam}")
    if outcome.scored == 0:
        raise SystemExit("error: no input could be scored")


if __name__ == "__main__":
    main(sys.argv[1:])
