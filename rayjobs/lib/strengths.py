"""Detection by manipulation strength: how far down a detector still finds fakes.

The synthetic generator records each fake's strength (``manipulations.json``: method -> video
-> s, from barely visible to obvious). An AUC over all fakes hides where a detector fails; the
same AUC per strength bin (each bin's fakes against every real of the test split) shows it, e.g.
a teacher that misses weak fakes alike on raw and c40 frames (docs/distillation.md, "Twelfth").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep import storage
from sffb.metrics import DetectionReport, evaluate_detection

#: Strength bins a table splits the fakes into, evenly over the strengths found.
DEFAULT_BINS = 4


def load_strengths(path: str | Path) -> dict[tuple[str, str], float]:
    """``(method, video_id) -> strength`` from a generator's ``manipulations.json`` (a path or
    a URI)."""
    try:
        found = json.loads(storage.read_text(path))
        return {
            (str(method), str(video)): float(strength)
            for method, videos in found.items()
            for video, strength in videos.items()
        }
    except (OSError, ValueError, AttributeError, TypeError) as error:
        raise ValueError(
            f"{path}: not a manipulations file (method -> video -> strength): {error}"
        ) from None


def row_strengths(
    scores: Mapping[str, np.ndarray], strengths: Mapping[tuple[str, str], float], source: str
) -> np.ndarray:
    """Each scored row's strength: NaN for reals; a fake with none recorded is an error that
    names ``source`` (the strengths then belong to another dataset)."""
    labels = scores["label"].astype(int)
    methods, keys = scores["method"].astype(str), scores["video_key"].astype(str)
    out = np.full(labels.shape, np.nan)
    missing = set()
    for index in np.flatnonzero(labels == 1):
        video = keys[index].rsplit("/", 1)[-1]
        strength = strengths.get((methods[index], video))
        if strength is None:
            missing.add(keys[index])
        else:
            out[index] = strength
    if missing:
        example = sorted(missing)[0]
        raise ValueError(
            f"{source}: no strength for {len(missing)} fake test video(s), e.g. {example}: "
            "the file describes another dataset"
        )
    return out


def bin_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """``bins`` equal-width bins from the weakest to the strongest fake."""
    fakes = values[~np.isnan(values)]
    if fakes.size == 0:
        raise ValueError("no fake rows to split by strength")
    return np.linspace(fakes.min(), fakes.max(), bins + 1)


@dataclass(frozen=True)
class StrengthRow:
    """One model at one level, on one strength bin's fakes against every real."""

    model: str
    level: str
    low: float
    high: float
    fake_videos: int
    report: DetectionReport


def strength_rows(
    scored: Mapping[str, Mapping[str, np.ndarray]],
    strengths: np.ndarray,
    levels: tuple[str, ...],
    edges: np.ndarray,
    resamples: int = 0,
) -> list[StrengthRow]:
    """Per model, level and bin (the last bin closed): the bin's fakes and every real, with
    ``resamples`` bootstrap intervals over videos. Every model's scores must be in the same row
    order as ``strengths`` (``score_test_split`` sorts them)."""
    last = len(edges) - 2
    bins = np.clip(np.searchsorted(edges, np.nan_to_num(strengths), side="right") - 1, 0, last)
    fake = ~np.isnan(strengths)
    rows = []
    for model, scores in scored.items():
        labels, keys = scores["label"].astype(int), scores["video_key"]
        for level in levels:
            for index in range(last + 1):
                in_bin = fake & (bins == index)
                if not in_bin.any():
                    continue  # a small test split may leave a bin without fakes
                keep = (labels == 0) | in_bin
                report = evaluate_detection(
                    labels[keep],
                    scores[f"score_{level}"][keep].astype(float),
                    keys[keep],
                    resamples=resamples,
                )
                low, high = float(edges[index]), float(edges[index + 1])
                videos = len(set(keys[in_bin]))
                rows.append(StrengthRow(model, level, low, high, videos, report))
    return rows


def strength_markdown(rows: list[StrengthRow]) -> str:
    """Frame and video AUC per strength bin, with intervals when computed."""
    lines = [
        "AUC by manipulation strength (each bin's fakes against every real test video):",
        "",
        "| model | level | strength | fake videos | frame AUC | video AUC |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        cells = f"{row.report.percent('frame_auc')} | {row.report.percent('video_auc')}"
        span = f"{row.low:.2f}-{row.high:.2f}"
        lines.append(f"| {row.model} | {row.level} | {span} | {row.fake_videos} | {cells} |")
    return "\n".join(lines)


def strength_table(
    scored: Mapping[str, Mapping[str, np.ndarray]],
    recorded: Mapping[tuple[str, str], float],
    source: str,
    levels: tuple[str, ...],
    bins: int = DEFAULT_BINS,
    resamples: int = 0,
) -> list[StrengthRow]:
    """``strength_rows`` for the strengths ``load_strengths`` read from ``source``."""
    first = next(iter(scored.values()))
    strengths = row_strengths(first, recorded, source)
    return strength_rows(scored, strengths, levels, bin_edges(strengths, bins), resamples)
