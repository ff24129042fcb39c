"""Robustness curves: a detector's AUC as its test videos are degraded.

    python rayjobs/robustness.py --checkpoint teacher=RUNS/<t>/best --checkpoint RUNS/<s>/best

Every test video of the prepared shards is taken again from its raw version (``--root``,
default the folder the shards were prepared from) and degraded: re-encoded with H.264 at CRF 0,
10, 18, 23, 28, 32, 36, 40, 45 and 51, downscaled x0.5, blurred (Gaussian, sigma 2), noised
(Gaussian, sigma 10) and JPEG-compressed at quality 50. The sampled frames are cut with the very
boxes preparation found (stored in the shards), so only the degradation differs, and scored by
each checkpoint. Frame and video AUC per degradation are printed, plotted and logged to MLflow
(``robustness/curves.png``, ``robustness/table.md``, metrics ``robust_<model>_<degradation>_*``).

Runs as Ray Data: one CPU task per video (decode, degrade, re-encode, crop) feeding one model
actor that scores every checkpoint. A video costs ten full re-encodes (H.264 is temporal: the
sampled frames cannot be re-encoded alone).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import ray
import ray.data
from mlflow.tracking import MlflowClient

from data_prep import storage
from data_prep.defaults import embedded_prepare_config
from data_prep.faces import CropBox
from data_prep.readers import read_dataset
from data_prep.video import Encoding, encode_video, iter_frames, probe
from rayjobs.lib.cross_dataset import checkpoint_name
from rayjobs.lib.data import shard_files
from rayjobs.lib.launch import USER_ERRORS, ensure_ray
from rayjobs.lib.scorer_pool import scorer_pool
from rayjobs.lib.scoring import SCORE_BATCH, CropScorer
from rayjobs.lib.tracking import find_or_create_run, log_metrics, tracking_uri
from sffb.metrics import evaluate_detection

CRFS = (0, 10, 18, 23, 28, 32, 36, 40, 45, 51)


@dataclass(frozen=True)
class Degradation:
    name: str
    kind: str  # crf | downscale | blur | noise | jpeg
    value: float


DEGRADATIONS = (
    *(Degradation(f"crf{q}", "crf", q) for q in CRFS),
    Degradation("downscale0.5", "downscale", 0.5),
    Degradation("blur2", "blur", 2.0),
    Degradation("noise10", "noise", 10.0),
    Degradation("jpeg50", "jpeg", 50),
)


def degrade_frame(
    frame: np.ndarray, box: CropBox, how: Degradation, seed: int
) -> tuple[np.ndarray, CropBox]:
    """An RGB frame degraded without re-encoding, and the crop box on the degraded frame (the
    preparation's box, scaled when the frame was)."""
    if how.kind == "downscale":
        small = cv2.resize(frame, None, fx=how.value, fy=how.value, interpolation=cv2.INTER_AREA)
        scale = small.shape[1] / frame.shape[1]
        side = max(1, min(round(box.side * scale), *small.shape[:2]))
        left = min(round(box.left * scale), small.shape[1] - side)
        top = min(round(box.top * scale), small.shape[0] - side)
        return small, CropBox(left, top, side)
    if how.kind == "blur":
        return cv2.GaussianBlur(frame, (0, 0), how.value), box
    if how.kind == "noise":
        noise = np.random.default_rng(seed).normal(0.0, how.value, frame.shape)
        return np.clip(frame + noise, 0, 255).astype(np.uint8), box
    if how.kind == "jpeg":
        quality = [cv2.IMWRITE_JPEG_QUALITY, int(how.value)]
        _, data = cv2.imencode(".jpg", np.ascontiguousarray(frame[:, :, ::-1]), quality)
        return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]), box
    raise ValueError(f"unknown degradation {how.kind!r}")


def degrade_video(item: dict, crop_size: int, bit_exact: bool = True) -> list[dict]:
    """CPU stage: every degradation of one test video, as crops at its stored boxes.

    ``bit_exact``: re-encode with x264's C code, as ``data_prep compress`` and the synthetic
    dataset do by default, so CRF 23 and 40 give their c23/c40 files' very bytes."""
    path = Path(item["path"])
    boxes = {i: CropBox(*b) for i, b in zip(item["indices"], item["boxes"], strict=True)}
    info = probe(path)
    indices = sorted(boxes)
    rows = []

    def add(name: str, crop: np.ndarray) -> None:
        rows.append({"degradation": name, "label": item["label"], "video_key": item["video_key"],
                     "image": np.ascontiguousarray(crop)})  # fmt: skip

    seed = zlib.crc32(item["video_key"].encode())
    for index, frame in iter_frames(path, indices, info.frame_count):
        for how in DEGRADATIONS:
            if how.kind != "crf":
                degraded, box = degrade_frame(frame, boxes[index], how, seed + index)
                add(how.name, box.cut(degraded, crop_size))
    with tempfile.TemporaryDirectory() as directory:
        for how in DEGRADATIONS:
            if how.kind == "crf":
                target = Path(directory) / f"{how.name}.mp4"
                every = range(info.frame_count)
                frames = (f for _, f in iter_frames(path, every, info.frame_count))
                encoding = Encoding(crf=int(how.value), bit_exact=bit_exact)
                encode_video(frames, target, info.fps, encoding)
                for index, frame in iter_frames(target, indices, info.frame_count):
                    add(how.name, boxes[index].cut(frame, crop_size))
    return rows


def test_videos(
    shards: str, preparation: dict, root: str, methods: tuple[str, ...] = ()
) -> list[dict]:
    """Each test video's raw file (under ``root``, read as ``preparation`` read the dataset),
    label, sampled frame indices and crop boxes."""
    columns = ["video_key", "method", "label", "frame_index", "box_left", "box_top", "box_side"]
    videos: dict[str, dict] = {}
    for location in shard_files(shards, "test"):
        fs, path = storage.filesystem(location)
        for row in pq.read_table(path, columns=columns, filesystem=fs).to_pylist():
            if methods and row["label"] == 1 and row["method"] not in methods:
                continue
            key = row["video_key"]
            empty = {"video_key": key, "label": row["label"], "indices": [], "boxes": []}
            video = videos.setdefault(key, empty)
            video["indices"].append(row["frame_index"])
            video["boxes"].append((row["box_left"], row["box_top"], row["box_side"]))
    dataset, seed = preparation["dataset"], preparation["seed"]
    records = read_dataset(dataset, Path(root), ("raw",), seed=seed).records
    raw = {r.video_key: r.paths.get("raw") for r in records}
    missing = [key for key in videos if not raw.get(key)]
    if missing:
        raise FileNotFoundError(
            f"{root}: no raw video for {len(missing)} test video(s), e.g. {missing[0]}"
        )
    return [video | {"path": str(raw[key])} for key, video in videos.items()]


def curves(scores: dict[str, np.ndarray], models: list[str]) -> dict[str, dict[str, dict]]:
    """model -> degradation -> {"frame_auc", "video_auc"}, degradations in DEGRADATIONS order."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for how in DEGRADATIONS:
        keep = scores["degradation"] == how.name
        for model in models:
            report = evaluate_detection(scores["label"][keep].astype(int),
                                        scores[f"score_{model}"][keep].astype(float),
                                        scores["video_key"][keep])  # fmt: skip
            out[model][how.name] = {"frame_auc": report.frame.auc, "video_auc": report.video.auc}
    return dict(out)


def table_markdown(result: dict[str, dict[str, dict]]) -> str:
    lines = ["| model | degradation | frame AUC | video AUC |", "|---|---|---:|---:|"]
    for model, by_degradation in result.items():
        for name, values in by_degradation.items():
            lines.append(f"| {model} | {name} | {100 * values['frame_auc']:.2f} | "
                         f"{100 * values['video_auc']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def plot_curves(result: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [how.name for how in DEGRADATIONS]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for axis, scope in zip(axes, ("frame_auc", "video_auc"), strict=True):
        for model, by_degradation in result.items():
            axis.plot(range(len(names)), [by_degradation[n][scope] for n in names], marker="o",
                      label=model)  # fmt: skip
        axis.axvline(len(CRFS) - 0.5, color="grey", linestyle=":")
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set(title=scope.replace("_", " "), ylim=(0.4, 1.0))
        axis.axhline(0.5, color="grey", linewidth=0.5)
    axes[0].set_ylabel("AUC")
    axes[0].legend(loc="lower left")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def robustness(
    checkpoints: dict[str, str],
    shards: str,
    root: str = "",
    methods: tuple[str, ...] = (),
    bit_exact: bool = True,
) -> dict[str, dict[str, dict]]:
    """Score every checkpoint on every degradation of the test videos; the curves. ``root``:
    the raw videos ("" = the folder the shards were prepared from); ``bit_exact=False``:
    re-encode with x264's SIMD code (~4x faster, bytes that depend on the CPU)."""
    ensure_ray()
    manifest = json.loads(storage.read_text(storage.join(shards, "manifest.json")))["config"]
    videos = test_videos(shards, manifest, root or manifest["root"], methods)
    rows = ray.data.from_items(videos, override_num_blocks=max(1, min(len(videos), 1000)))
    options = {"crop_size": manifest["crop_size"], "bit_exact": bit_exact}
    rows = rows.flat_map(degrade_video, fn_kwargs=options)
    passthrough = ("degradation", "label", "video_key")
    scored = rows.map_batches(
        CropScorer, fn_constructor_args=(checkpoints, passthrough), batch_size=SCORE_BATCH,
        batch_format="numpy", **scorer_pool(),
    )  # fmt: skip
    columns = [*passthrough, *(f"score_{m}" for m in checkpoints)]
    frame = scored.select_columns(columns).to_pandas()
    return curves({c: frame[c].to_numpy() for c in columns}, list(checkpoints))


def log_curves(uri: str, run_id: str, result: dict[str, dict[str, dict]]) -> None:
    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        (folder / "table.md").write_text(table_markdown(result) + "\n")
        plot_curves(result, folder / "curves.png")
        for name in ("table.md", "curves.png"):
            client.log_artifact(run_id, str(folder / name), artifact_path="robustness")
    metrics = {
        f"robust_{model}_{name}_{key}": value
        for model, by_degradation in result.items()
        for name, values in by_degradation.items()
        for key, value in values.items()
    }
    log_metrics(uri, run_id, metrics)


def parse_checkpoints(values: list[str]) -> dict[str, str]:
    """``NAME=CHECKPOINT`` or ``CHECKPOINT`` (named after its run folder)."""
    named = {}
    for value in values:
        name, sep, location = value.partition("=")
        if not sep:
            name, location = checkpoint_name(storage.normalise(value)), value
        named[name] = storage.normalise(location)
    return named


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True,
                        metavar="[NAME=]CHECKPOINT", help="repeatable")  # fmt: skip
    parser.add_argument("--shards", help="prepared shards (default: the embedded ones)")
    parser.add_argument("--root", help="the raw videos (default: the shards' source folder)")
    parser.add_argument("--methods", nargs="+", default=[], help="fake methods (default: all)")
    parser.add_argument("--experiment", default="sffb")
    parser.add_argument(
        "--fast-encode", action="store_true",
        help="x264's SIMD code: ~4x faster re-encodes whose bytes depend on the CPU "
        "(default: its C code, the same bytes on every run and CPU)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    shards = storage.normalise(args.shards or embedded_prepare_config().output)
    uri = tracking_uri()
    try:
        checkpoints = parse_checkpoints(args.checkpoint)
        name = "robustness-" + "-".join(checkpoints)[:200] + ("-fast" if args.fast_encode else "")
        params = {"checkpoints": json.dumps(checkpoints), "shards": shards,
                  "root": args.root or "", "bit_exact": not args.fast_encode}  # fmt: skip
        run_id, _ = find_or_create_run(uri, args.experiment, name, params,
                                       {"sffb.mode": "robustness"})  # fmt: skip
        result = robustness(checkpoints, shards, args.root or "", tuple(args.methods),
                            not args.fast_encode)  # fmt: skip
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    print(table_markdown(result))
    log_curves(uri, run_id, result)
    MlflowClient(uri).set_terminated(run_id, "FINISHED")
    print(f"curves: MLflow run {run_id}, artifact robustness/curves.png")


if __name__ == "__main__":
    main(sys.argv[1:])
