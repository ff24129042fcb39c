"""A checkpoint's calibration: temperature and decision threshold fitted on validation, stored
beside its weights (``calibration.json`` in the checkpoint folder) for scoring and detection.

Fitted on the validation split, never on test: the temperature by minimum NLL
(``sffb.calibration.fit_temperature``), then the threshold on the calibrated scores that
maximises validation frame accuracy (ties: the one nearest 0.5).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from data_prep import storage
from sffb.calibration import fake_logit, fit_temperature, scaled_scores

CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class LevelCalibration:
    temperature: float
    threshold: float  # on the temperature-scaled P(fake)
    val_frames: int

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Temperature-scaled P(fake) of raw P(fake) scores."""
        return scaled_scores(fake_logit(scores), self.temperature)


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold with the highest accuracy (a score above it: fake), among the midpoints
    between distinct scores and the two ends; ties go to the one nearest 0.5."""
    distinct = np.unique(scores)
    thresholds = np.r_[distinct[0] - 1e-12, (distinct[:-1] + distinct[1:]) / 2, distinct[-1]]
    reals, fakes = np.sort(scores[labels == 0]), np.sort(scores[labels == 1])
    correct = np.searchsorted(reals, thresholds, side="right") + (
        fakes.size - np.searchsorted(fakes, thresholds, side="right")
    )
    best = thresholds[correct == correct.max()]
    return float(np.clip(best[np.argmin(np.abs(best - 0.5))], 0.0, 1.0))


def calibrate(labels: np.ndarray, scores: np.ndarray) -> LevelCalibration:
    """Temperature and threshold from validation labels and raw P(fake) scores."""
    labels, scores = np.asarray(labels, int), np.asarray(scores, float)
    temperature = fit_temperature(labels, fake_logit(scores))
    threshold = best_threshold(labels, scaled_scores(fake_logit(scores), temperature))
    return LevelCalibration(temperature, threshold, int(labels.size))


def save_calibration(checkpoint: str, by_level: dict[str, LevelCalibration]) -> None:
    """Write (atomically) the checkpoint's calibration per input level, merged with any other
    levels already stored."""
    stored = load_calibration(checkpoint)
    stored.update(by_level)
    content = {level: asdict(value) for level, value in sorted(stored.items())}
    storage.write_text(storage.join(checkpoint, CALIBRATION_FILE), json.dumps(content, indent=2))


def load_calibration(checkpoint: str) -> dict[str, LevelCalibration]:
    """The stored calibration per level; empty when the checkpoint has none yet."""
    location = storage.join(checkpoint, CALIBRATION_FILE)
    if not storage.exists(location):
        return {}
    return {k: LevelCalibration(**v) for k, v in json.loads(storage.read_text(location)).items()}
