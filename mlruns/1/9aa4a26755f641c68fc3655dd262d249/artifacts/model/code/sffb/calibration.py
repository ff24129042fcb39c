"""Calibration of fake probabilities: expected calibration error, reliability, temperature scaling.

A detector's P(fake) is only a probability if, among frames scored ~0.8, ~80 % are fake. ECE
measures the gap; temperature scaling (Guo et al. 2017) divides the logits by one scalar T fitted
on validation data, which keeps the ranking (AUC) and fixes over-confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

#: Equal-width bins of P(fake) for ECE and the reliability diagram.
DEFAULT_BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Per bin of P(fake): how many samples, their mean score and the share that is fake."""

    edges: np.ndarray  # (bins + 1,)
    counts: np.ndarray  # (bins,)
    mean_score: np.ndarray  # (bins,), NaN where empty
    fake_rate: np.ndarray  # (bins,), NaN where empty

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |fake rate - mean score|."""
        filled = self.counts > 0
        gaps = np.abs(self.fake_rate[filled] - self.mean_score[filled])
        return float(np.sum(self.counts[filled] * gaps) / self.counts.sum())


def reliability(labels, scores, bins: int = DEFAULT_BINS) -> Reliability:
    """Bin P(fake) into ``bins`` equal-width bins over [0, 1] (1.0 falls in the last one)."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.size == 0 or labels.shape != scores.shape:
        raise ValueError(
            f"need equal, non-empty labels and scores, got {labels.shape}, {scores.shape}"
        )
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(index, scores, bins) / counts
        fake_rate = np.bincount(index, labels, bins) / counts
    return Reliability(edges, counts, mean_score, fake_rate)


def expected_calibration_error(labels, scores, bins: int = DEFAULT_BINS) -> float:
    return reliability(labels, scores, bins).ece


def fake_logit(scores) -> np.ndarray:
    """log(p / (1 - p)): the two-class logit difference behind a P(fake), clipped away from
    0 and 1 so that saturated scores stay finite."""
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def negative_log_likelihood(labels, logits, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of sigmoid(logit / T) against the labels."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * log_expit(z) + (1 - y) * log_expit(-z)))


def fit_temperature(labels, logits) -> float:
    """The T > 0 minimising validation NLL of sigmoid(logit / T), searched on log T."""
    labels = np.asarray(labels, dtype=np.float64)
    logits = np.asarray(logits, dtype=np.float64)
    if set(np.unique(labels)) != {0.0, 1.0}:
        raise ValueError("temperature scaling needs both classes in the validation scores")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(labels, logits, float(np.exp(log_t))),
        bounds=(np.log(1e-2), np.log(1e3)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def scaled_scores(logits, temperature: float) -> np.ndarray:
    """P(fake) after temperature scaling."""
    return expit(np.asarray(logits, dtype=np.float64) / temperature)
