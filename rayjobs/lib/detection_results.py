"""Detection results: one record per input file, gathered from scored frames, written as JSONL or
CSV (atomically: a temporary local file, moved into place at the end).
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import storage

#: Every record's keys, in the order CSV columns take.
FIELDS = (
    "path",
    "video_score",
    "label",
    "frames_scored",
    "frames_without_face",
    "frame_scores",
    "error",
)


def file_record(
    path: str,
    frames: list[tuple[int, float, bool]],
    error: str | None,
    calibrate: Callable[[np.ndarray], np.ndarray],
    threshold: float,
) -> dict[str, Any]:
    """A file's record from its ``(frame index, raw P(fake), no face found)`` frames.

    The video score is the mean of the frames' calibrated P(fake), as evaluation scores a video;
    a score above ``threshold`` is labelled fake.
    """
    if error is not None:
        return dict.fromkeys(FIELDS) | {
            "path": path,
            "frames_scored": 0,
            "frames_without_face": 0,
            "frame_scores": {},
            "error": error,
        }
    frames = sorted(frames)
    scores = calibrate(np.array([score for _, score, _ in frames], np.float64))
    video_score = float(scores.mean())
    return {
        "path": path,
        "video_score": video_score,
        "label": "fake" if video_score > threshold else "real",
        "frames_scored": len(frames),
        "frames_without_face": sum(missing for _, _, missing in frames),
        "frame_scores": {str(i): float(s) for (i, _, _), s in zip(frames, scores, strict=True)},
        "error": None,
    }


@dataclass
class Collector:
    """Scored frames arrive in any order; a file is done when all its rows are in. Done records
    leave in input order, so memory holds only files still in flight."""

    paths: list[str]
    make_record: Callable[[str, list, str | None], dict]
    _frames: dict[int, list] = field(default_factory=lambda: defaultdict(list))
    _done: dict[int, dict] = field(default_factory=dict)
    _next: int = 0

    def add(self, order: int, rows: int, frame: tuple[int, float, bool] | None, error: str) -> None:
        if error:
            self._done[order] = self.make_record(self.paths[order], [], error)
            return
        self._frames[order].append(frame)
        if len(self._frames[order]) == rows:
            self._done[order] = self.make_record(self.paths[order], self._frames.pop(order), None)

    def ready(self) -> list[dict]:
        """The records that are done and whose predecessors are all out."""
        out = []
        while self._next in self._done:
            out.append(self._done.pop(self._next))
            self._next += 1
        return out


class ResultWriter:
    """Streams records to ``location`` (JSONL, or CSV when it ends in ``.csv``), atomically."""

    def __init__(self, location: str) -> None:
        self.location = storage.normalise(location)
        self.is_csv = self.location.lower().endswith(".csv")
        self._directory = tempfile.TemporaryDirectory()
        self._path = Path(self._directory.name) / "results"
        self._file = self._path.open("w", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=FIELDS) if self.is_csv else None
        if self._csv:
            self._csv.writeheader()

    def write(self, record: dict) -> None:
        if self._csv:
            self._csv.writerow(record | {"frame_scores": json.dumps(record["frame_scores"])})
        else:
            self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Publish the file (only now does ``location`` appear or change)."""
        self._file.close()
        storage.upload_file(self._path, self.location)
        self._directory.cleanup()

    def abandon(self) -> None:
        self._file.close()
        self._directory.cleanup()


def read_results(location: str) -> list[dict]:
    """Records back from a JSONL or CSV results file (CSV numbers and maps parsed)."""
    text = storage.read_text(location)
    if not location.lower().endswith(".csv"):
        return [json.loads(line) for line in text.splitlines() if line]
    records = []
    for row in csv.DictReader(text.splitlines()):
        record: dict[str, Any] = {k: (v if v != "" else None) for k, v in row.items()}
        record["frame_scores"] = json.loads(row["frame_scores"])
        for key in ("frames_scored", "frames_without_face"):
            record[key] = int(row[key])
        if record["video_score"] is not None:
            record["video_score"] = float(record["video_score"])
        records.append(record)
    return records


def summary_table(records: list[dict], total: int) -> str:
    """A Markdown table of ``records`` (the first of ``total`` files)."""
    lines = [
        "| file | label | video score | frames | no face | error |",
        "|---|---|---:|---:|---:|---|",
    ]
    for record in records:
        score = "" if record["video_score"] is None else f"{record['video_score']:.3f}"
        lines.append(
            f"| {storage.name(record['path'])} | {record['label'] or ''} | {score} | "
            f"{record['frames_scored']} | {record['frames_without_face']} | "
            f"{record['error'] or ''} |"
        )
    if total > len(records):
        lines.append(f"| ... {total - len(records)} more in the results file | | | | | |")
    return "\n".join(lines)
