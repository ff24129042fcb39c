"""Frame- and video-level detection metrics: ACC, AUC, EER, AP (label 1 = fake).

Scores are fake probabilities. A video's score is the mean of its frames' scores, grouped by a
key that must be unique across manipulation methods (FF++ has a ``000_003`` under every method:
different videos), e.g. ``"Deepfakes/000_003"``. Plain NumPy, checked against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: A sample is called fake when its fake probability exceeds this (argmax of a 2-way softmax).
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class DetectionMetrics:
    acc: float
    auc: float
    eer: float
    ap: float
    count: int  # frames or videos scored


@dataclass(frozen=True)
class DetectionReport:
    frame: DetectionMetrics
    video: DetectionMetrics

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{prefix}frame_auc``-style keys, for logging."""
        return {
            f"{prefix}{level}_{name}": float(value)
            for level in ("frame", "video")
            for name, value in asdict(getattr(self, level)).items()
        }


def _validated(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores as flat int64 / float64 arrays, or a clear error."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    _check(labels, scores)
    return labels, scores


def _check(labels: np.ndarray, scores: np.ndarray) -> None:
    if labels.size == 0:
        raise ValueError("cannot score an empty set of samples")
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be equal 1-D")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    present = set(np.unique(labels).tolist())
    if present != {0, 1}:
        only = "real" if present == {0} else "fake"
        raise ValueError(f"AUC, EER and AP need both classes; all {labels.size} samples are {only}")


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct score threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_labels.size - 1]
    true_pos = np.cumsum(sorted_labels)[last_of_tie]
    false_pos = last_of_tie + 1 - true_pos
    tpr = np.r_[0.0, true_pos / true_pos[-1]]
    fpr = np.r_[0.0, false_pos / false_pos[-1]]
    return fpr, tpr


def auc_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoidal, so ties count half)."""
    fpr, tpr = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The rate where false-positive and false-negative rates meet on the ROC polyline."""
    fpr, tpr = roc_curve(labels, scores)
    gap = (1 - tpr) - fpr  # decreasing from 1 to -1 along the curve
    i = int(np.argmax(gap <= 0))  # first point at or past the crossing; gap[0] = 1 > 0
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Sum over thresholds of precision x recall increase (step-wise, as scikit-learn)."""
    fpr, tpr = roc_curve(labels, scores)
    positives = labels.sum()
    true_pos, false_pos = tpr[1:] * positives, fpr[1:] * (labels.size - positives)
    precision = true_pos / (true_pos + false_pos)
    return float(np.sum(np.diff(tpr) * precision))


def detection_metrics(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
) -> DetectionMetrics:
    """ACC at ``threshold``, AUC, EER and AP of one set of scored samples."""
    labels, scores = _validated(labels, scores)
    return DetectionMetrics(
        acc=float(np.mean((scores > threshold) == labels)),
        auc=auc_score(labels, scores),
        eer=equal_error_rate(labels, scores),
        ap=average_precision(labels, scores),
        count=int(labels.size),
    )


def video_scores(
    labels: np.ndarray, scores: np.ndarray, video_keys: Sequence[str] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-video (label, mean frame score); frames of one video must agree on the label."""
    keys = np.asarray(video_keys).astype(str)
    if keys.shape != labels.shape:
        raise ValueError(f"{keys.size} video keys for {labels.size} frames")
    unique, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse)
    mean_scores = np.bincount(inverse, weights=scores) / counts
    fake_frames = np.bincount(inverse, weights=labels)
    mixed = (fake_frames != 0) & (fake_frames != counts)
    if mixed.any():
        raise ValueError(f"video {unique[mixed][0]!r} has frames labelled both real and fake")
    return (fake_frames > 0).astype(np.int64), mean_scores


def evaluate_detection(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    video_keys: Sequence[str] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
) -> DetectionReport:
    """Frame-level and video-level metrics of fake-probability ``scores``."""
    labels, scores = _validated(labels, scores)
    video_labels, video_means = video_scores(labels, scores, video_keys)
    return DetectionReport(
        frame=detection_metrics(labels, scores, threshold),
        video=detection_metrics(video_labels, video_means, threshold),
    )
