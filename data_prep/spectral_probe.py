"""What a prepared dataset holds at each compression level, measured without deep learning.

A detector that scores the same on raw and c40 frames either learnt only the traces that
survive compression or had nothing more to find. This probe tells which, with a detector that
cannot be under-trained: every crop's azimuthally averaged log power spectrum (Durall et al.,
CVPR 2020, "Watch your up-convolution") feeds a logistic regression fitted on the train split
and scored on the test split, one level at a time. Up-sampling, blending and missing sensor
noise show in the spectrum, so a probe AUC on raw frames well above a network's says the
network is under-trained, and the probe's raw-minus-c40 gap is roughly what a raw-frame
teacher has to distil that the compressed frames do not show by themselves.

    python -m data_prep.spectral_probe [SHARDS] [--levels raw c40] [--methods Deepfakes]
        [--test-shards OTHER]   # fit on SHARDS' train split, score OTHER's test split
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from data_prep import storage
from data_prep.defaults import embedded_prepare_config
from data_prep.image_columns import decode_column, level_column
from data_prep.shards import complete_shards
from sffb.metrics import DetectionReport, evaluate_detection

READ_ROWS = 256  # crops decoded at a time: only their spectra are kept


def radial_spectrum(images: np.ndarray) -> np.ndarray:
    """(N, 3, S, S) uint8 crops -> (N, S // 2) log mean power at each integer distance from the
    zero frequency, of the grey image with its mean removed (radii beyond S / 2 would count
    only the corners)."""
    grey = images.astype(np.float64).mean(axis=1)
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey), axes=(1, 2))) ** 2
    side = grey.shape[-1]
    ys, xs = np.indices((side, side)) - side // 2
    radius = np.hypot(xs, ys).astype(np.int64).ravel()
    keep = radius < side // 2
    counts = np.bincount(radius[keep], minlength=side // 2)
    flat = power.reshape(len(power), -1)[:, keep]
    sums = np.stack([np.bincount(radius[keep], weights=row, minlength=side // 2) for row in flat])
    return np.log(sums / counts + 1e-8)


@dataclass(frozen=True)
class SplitSpectra:
    features: np.ndarray  # (frames, S // 2)
    labels: np.ndarray  # 0 real, 1 fake
    video_keys: np.ndarray


def _batches(shards: str, split: str, level: str, methods: Sequence[str]) -> Iterator[tuple]:
    """(record batch of the wanted rows, image column of ``level``), shard by shard."""
    files = complete_shards(shards, split)
    if not files:
        raise FileNotFoundError(f"{storage.join(shards, split)}: no complete shards")
    for location in files:
        fs, path = storage.filesystem(location)
        with fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            try:
                column = level_column(parquet.schema_arrow.names, level)
            except ValueError as error:
                raise ValueError(f"{location}: {error}") from None
            for batch in parquet.iter_batches(
                batch_size=READ_ROWS, columns=["label", "method", "video_key", column]
            ):
                wanted = np.ones(batch.num_rows, bool)
                if methods:
                    fake_of = np.isin(batch.column("method").to_numpy(False), methods)
                    wanted = (batch.column("label").to_numpy() == 0) | fake_of
                if wanted.any():
                    yield batch.filter(wanted), column


def split_spectra(
    shards: str, split: str, level: str, methods: Sequence[str] = (), size: int | None = None
) -> SplitSpectra:
    """Spectra of every real crop and every fake of ``methods`` (all when empty) of a split,
    read shard by shard; ``size``: resize crops to it first (None: as stored)."""
    size = size or crop_size(shards)
    features, labels, keys = [], [], []
    for batch, column in _batches(shards, split, level, methods):
        images = decode_column(batch.column(column), size)
        features.append(radial_spectrum(images))
        labels.append(batch.column("label").to_numpy())
        keys.append(batch.column("video_key").to_numpy(False))
    if not features:
        raise ValueError(f"{storage.join(shards, split)}: no rows of methods {list(methods)}")
    return SplitSpectra(np.concatenate(features), np.concatenate(labels), np.concatenate(keys))


def crop_size(shards: str) -> int:
    """The side the shards' crops were prepared at (their manifest)."""
    manifest = json.loads(storage.read_text(storage.join(shards, "manifest.json")))
    return int(manifest["config"]["crop_size"])


@dataclass(frozen=True)
class ProbeResult:
    level: str
    train_frames: int
    report: DetectionReport  # on the test split, with bootstrap intervals over videos


def probe_level(
    shards: str,
    level: str,
    methods: Sequence[str] = (),
    resamples: int = 1000,
    test_shards: str | None = None,
) -> ProbeResult:
    """Fit the spectral detector on ``level``'s train split of ``shards``, score the test split
    of ``test_shards`` (default: the same shards; crops resized to the training side)."""
    side = crop_size(shards)
    train = split_spectra(shards, "train", level, methods, side)
    test = split_spectra(test_shards or shards, "test", level, methods, side)
    for where, split in ((shards, train), (test_shards or shards, test)):
        if len(set(split.labels.tolist())) < 2:
            kinds = "reals and fakes" + (f" of {list(methods)}" if methods else "")
            raise ValueError(f"{where}: the probe needs {kinds} in train and test")
    detector = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    detector.fit(train.features, train.labels)
    scores = detector.predict_proba(test.features)[:, 1]
    report = evaluate_detection(test.labels, scores, test.video_keys, resamples=resamples)
    return ProbeResult(level, len(train.labels), report)


def table(results: Sequence[ProbeResult]) -> str:
    lines = ["| level | test frame AUC [95 % CI] | test video AUC | train frames |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for result in results:
        frame, interval = result.report.frame.auc, result.report.intervals["frame_auc"]
        lines.append(f"| {result.level} | {100 * frame:.2f} [{100 * interval.low:.1f}, "
                     f"{100 * interval.high:.1f}] | {100 * result.report.video.auc:.2f} | "
                     f"{result.train_frames} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards", nargs="?", help="prepared shards (path or URI; default: the "
                        "embedded ones, whose folder carries the generator's digest)")  # fmt: skip
    parser.add_argument("--levels", nargs="+", default=["raw", "c23", "c40"])
    parser.add_argument("--methods", nargs="*", default=[], help="fake methods (default: all)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--test-shards", help="score this dataset's test split instead (the "
                        "probe still fits on SHARDS' train split), e.g. a fresh held-out "
                        "draw")  # fmt: skip
    args = parser.parse_args(argv)
    shards = storage.normalise(args.shards or embedded_prepare_config().output)
    tested = storage.normalise(args.test_shards) if args.test_shards else None
    try:
        results = [probe_level(shards, level, args.methods, args.resamples, tested)
                   for level in args.levels]  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(table(results))


if __name__ == "__main__":
    main()
