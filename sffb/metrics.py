"""Frame- and video-level detection metrics: ACC, balanced ACC, AUC, EER, AP (label 1 = fake).

Scores are fake probabilities. A video's score is the mean of its frames' scores, grouped by a
key that must be unique across manipulation methods (FF++ has a ``000_003`` under every method:
different videos), e.g. ``"Deepfakes/000_003"``. Plain NumPy, checked against scikit-learn.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

#: A sample is called fake when its fake probability exceeds this (argmax of a 2-way softmax).
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class DetectionMetrics:
    acc: float
    # The mean of the real and the fake recall: ACC that a majority class cannot inflate (with
    # 1 real to 4 fakes, "always fake" scores ACC 0.80 but balanced ACC 0.50).
    balanced_acc: float
    auc: float
    eer: float
    ap: float
    count: int  # frames or videos scored


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval."""

    low: float
    high: float

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval (for a difference: one the data shows)."""
        return value < self.low or value > self.high


#: The metrics ``video_bootstrap`` gives intervals for.
INTERVAL_METRICS = ("frame_acc", "frame_auc", "video_acc", "video_auc")


@dataclass(frozen=True)
class DetectionReport:
    frame: DetectionMetrics
    video: DetectionMetrics
    # 95 % (by default) bootstrap intervals over videos, keyed by INTERVAL_METRICS; empty when
    # not computed.
    intervals: dict[str, Interval] = field(default_factory=dict)

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{prefix}frame_auc``-style keys, for logging."""
        flat = {
            f"{prefix}{level}_{item.name}": float(getattr(getattr(self, level), item.name))
            for level in ("frame", "video")
            for item in fields(DetectionMetrics)
        }
        for name, interval in self.intervals.items():
            flat[f"{prefix}{name}_ci_low"] = interval.low
            flat[f"{prefix}{name}_ci_high"] = interval.high
        return flat

    def percent(self, name: str) -> str:
        """``97.50 [93.1, 100.0]``: metric ``name`` (e.g. ``frame_auc``) in percent, with its
        bootstrap interval when one was computed."""
        scope, metric = name.split("_")
        value = f"{100 * getattr(getattr(self, scope), metric):.2f}"
        interval = self.intervals.get(name)
        if interval is None:
            return value
        return f"{value} [{100 * interval.low:.1f}, {100 * interval.high:.1f}]"


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


def roc_curve(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct score threshold, from (0, 0) to (1, 1).

    ``weights`` count each sample that many times (a bootstrap resample's multiplicities): shape
    (N,), or (R, N) for R weightings at once, which gives R curves (rows) on the same thresholds:
    the scores, hence their order and ties, are the same in every resample.
    """
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    sorted_weights = np.ones(labels.size) if weights is None else weights[..., order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_labels.size - 1]
    true_pos = np.cumsum(sorted_weights * sorted_labels, axis=-1)[..., last_of_tie]
    false_pos = np.cumsum(sorted_weights * (1 - sorted_labels), axis=-1)[..., last_of_tie]
    origin = np.zeros((*true_pos.shape[:-1], 1))
    tpr = np.concatenate([origin, true_pos / true_pos[..., -1:]], axis=-1)
    fpr = np.concatenate([origin, false_pos / false_pos[..., -1:]], axis=-1)
    return fpr, tpr


def auc_scores(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Area under the ROC curve (trapezoidal, so ties count half) under each row of ``weights``
    (R, N): R resamples' AUCs from one sort of the scores."""
    fpr, tpr = roc_curve(labels, scores, weights)
    trapezoids = np.diff(fpr, axis=-1) * (tpr[..., 1:] + tpr[..., :-1]) / 2
    # Summed row by row in memory order: the same rounding as a single curve's sum.
    return np.ascontiguousarray(trapezoids).sum(axis=-1)


def auc_score(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve (trapezoidal, so ties count half)."""
    return float(auc_scores(labels, scores, np.ones(labels.size) if weights is None else weights))


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
    """ACC and balanced ACC at ``threshold``, AUC, EER and AP of one set of scored samples."""
    labels, scores = _validated(labels, scores)
    correct = (scores > threshold) == labels
    return DetectionMetrics(
        acc=float(np.mean(correct)),
        balanced_acc=float((correct[labels == 0].mean() + correct[labels == 1].mean()) / 2),
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


#: Elements of one block of resamples x frames in ``_VideoResampler.metrics`` (~32 MB of
#: float64 per array): all resamples at once on a small test split, a few dozen at a time on
#: FF++'s (~22,000 frames).
_BLOCK_ELEMENTS = 4_000_000


@functools.lru_cache(maxsize=16)
def _video_draws(video_labels: bytes, resamples: int, seed: int) -> np.ndarray:
    """(resamples, videos): each resample's multiplicity of every video, drawn with replacement
    within each class. Cached (read-only): every model, level and baseline scored on the same
    videos shares one set of draws, and drawing them is a Python loop."""
    labels = np.frombuffer(video_labels, np.int64)
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in (0, 1)]
    draws = np.empty((resamples, labels.size))
    for row in draws:
        drawn = np.concatenate([rng.choice(videos, videos.size) for videos in by_class])
        row[:] = np.bincount(drawn, minlength=labels.size)
    draws.setflags(write=False)
    return draws


class _VideoResampler:
    """Draws bootstrap resamples of *videos* and scores any model's frames on them.

    Frames of one video are not independent samples (they share a face, a scene and an
    encoder), so each resample draws whole videos with replacement, stratified by class (the
    real and fake counts stay fixed, so every resample has both classes); a drawn video brings
    all its frames, as weights rather than copies. One resampler serves several models' scores
    of the same frames, which is what makes their differences paired.
    """

    def __init__(self, labels: np.ndarray, video_keys, resamples: int, seed: int) -> None:
        keys = np.asarray(video_keys).astype(str)
        if keys.shape != labels.shape:
            raise ValueError(f"{keys.size} video keys for {labels.size} frames")
        self.labels = labels
        _, self.frame_video = np.unique(keys, return_inverse=True)
        self.video_labels, _ = video_scores(labels, labels.astype(np.float64), keys)
        self.video_weights = _video_draws(self.video_labels.tobytes(), resamples, seed)

    def metrics(self, scores: np.ndarray, threshold: float) -> np.ndarray:
        """(resamples, len(INTERVAL_METRICS)): each resample's value of every interval metric,
        computed for a block of resamples at a time (weighted sums and cumulative sums over
        frames, one row per resample) rather than in a Python loop per resample."""
        video_means = np.bincount(self.frame_video, weights=scores) / np.bincount(self.frame_video)
        video_correct = ((video_means > threshold) == self.video_labels).astype(np.float64)
        frame_correct = ((scores > threshold) == self.labels).astype(np.float64)
        samples = np.empty((len(self.video_weights), len(INTERVAL_METRICS)))
        step = max(1, _BLOCK_ELEMENTS // max(1, self.labels.size))
        for start in range(0, len(self.video_weights), step):
            video_weights = self.video_weights[start : start + step]
            frame_weights = video_weights[:, self.frame_video]
            values = {
                "frame_acc": _weighted_means(frame_correct, frame_weights),
                "frame_auc": auc_scores(self.labels, scores, frame_weights),
                "video_acc": _weighted_means(video_correct, video_weights),
                "video_auc": auc_scores(self.video_labels, video_means, video_weights),
            }
            samples[start : start + step] = np.stack([values[n] for n in INTERVAL_METRICS], 1)
        return samples


def _weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``np.average(values, weights=row)`` for each row of ``weights``."""
    weights = np.ascontiguousarray(weights)  # summed in memory order, as np.average does
    return np.multiply(values, weights).sum(axis=-1) / weights.sum(axis=-1)


def _percentile_intervals(samples: np.ndarray, confidence: float) -> dict[str, Interval]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return {
        name: Interval(float(low[i]), float(high[i])) for i, name in enumerate(INTERVAL_METRICS)
    }


def video_bootstrap(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    video_keys: Sequence[str] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of frame/video ACC and AUC, resampling *videos*
    (stratified by class; see ``_VideoResampler``). Deterministic in ``seed``."""
    labels, scores = _validated(labels, scores)
    resampler = _VideoResampler(labels, video_keys, resamples, seed)
    return _percentile_intervals(resampler.metrics(scores, threshold), confidence)


@dataclass(frozen=True)
class PairedDifference:
    """Model A minus model B on the same frames: the point differences and their intervals."""

    delta: dict[str, float]  # keyed by INTERVAL_METRICS
    intervals: dict[str, Interval]

    def separates(self, name: str) -> bool:
        """Whether the interval of the difference excludes 0 (a difference the test set shows)."""
        return self.intervals[name].excludes(0.0)


def paired_bootstrap(
    labels: Sequence[int] | np.ndarray,
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    video_keys: Sequence[str] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Percentile intervals of A minus B in frame/video ACC and AUC, both models scored on
    every resample of the same videos.

    Two models' separate intervals overlap even when one is better on nearly every video: most
    of each interval's width is which videos happened to be drawn, and that is shared. The
    paired difference removes it, so a test split of a few dozen videos can tell two detectors
    apart when their separate intervals cannot.
    """
    differences = paired_bootstraps(
        labels, scores_a, {"b": scores_b}, video_keys, threshold, resamples, confidence, seed
    )
    return differences["b"]


def paired_bootstraps(
    labels: Sequence[int] | np.ndarray,
    scores_a: Sequence[float] | np.ndarray,
    baselines: Mapping[str, Sequence[float] | np.ndarray],
    video_keys: Sequence[str] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, PairedDifference]:
    """``paired_bootstrap`` of A against each of several baselines (name -> scores), A's
    resamples computed once."""
    labels, scores_a = _validated(labels, scores_a)
    resampler = _VideoResampler(labels, video_keys, resamples, seed)
    samples_a = resampler.metrics(scores_a, threshold)
    a = evaluate_detection(labels, scores_a, video_keys, threshold)
    differences = {}
    for name, scores_b in baselines.items():
        _, scores_b = _validated(labels, scores_b)
        samples = samples_a - resampler.metrics(scores_b, threshold)
        b = evaluate_detection(labels, scores_b, video_keys, threshold)
        delta = {metric: _metric(a, metric) - _metric(b, metric) for metric in INTERVAL_METRICS}
        differences[name] = PairedDifference(delta, _percentile_intervals(samples, confidence))
    return differences


def seed_averaged_bootstrap(
    labels: Sequence[int] | np.ndarray,
    runs_a: Sequence[Sequence[float] | np.ndarray],
    runs_b: Sequence[Sequence[float] | np.ndarray],
    video_keys: Sequence[str] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    resample_runs: bool = True,
) -> PairedDifference:
    """Recipe A minus recipe B, each metric averaged over the recipe's runs (trainings with
    different seeds, scored on the same frames), with a two-level percentile interval.

    One training is one draw of a recipe: on a few hundred training videos a second seed moves
    test AUC by as much as two recipes differ, so a single pair can say either. Each resample
    draws the test videos (stratified, shared by every run, so the comparison stays paired)
    and, with ``resample_runs``, each recipe's runs with replacement: the interval then holds
    the test set's randomness and the training's. With few runs the second level understates
    the spread between seeds (a bootstrap of n values has (n - 1) / n of their variance), so
    read an interval from 3 runs as a lower bound on the uncertainty.
    """
    if not runs_a or not runs_b:
        raise ValueError(f"each recipe needs a run: got {len(runs_a)} and {len(runs_b)}")
    labels, _ = _validated(labels, runs_a[0])
    resampler = _VideoResampler(labels, video_keys, resamples, seed)
    rng = np.random.default_rng([seed, 1])  # run draws apart from the video draws
    resample_rows = np.arange(resamples)[:, None]
    points, samples = [], []
    for runs in (runs_a, runs_b):
        scores = [_validated(labels, run)[1] for run in runs]
        reports = [evaluate_detection(labels, s, video_keys, threshold) for s in scores]
        points.append(np.mean([[_metric(r, m) for m in INTERVAL_METRICS] for r in reports], 0))
        per_run = np.stack([resampler.metrics(s, threshold) for s in scores])  # (runs, R, M)
        if resample_runs:
            drawn = rng.integers(0, len(runs), (resamples, len(runs)))
        else:
            drawn = np.broadcast_to(np.arange(len(runs)), (resamples, len(runs)))
        samples.append(per_run[drawn, resample_rows].mean(axis=1))  # (R, M)
    delta = {name: float(points[0][i] - points[1][i]) for i, name in enumerate(INTERVAL_METRICS)}
    return PairedDifference(delta, _percentile_intervals(samples[0] - samples[1], confidence))


def _metric(report: DetectionReport, name: str) -> float:
    """``report``'s value of an INTERVAL_METRICS name (``frame_auc`` -> report.frame.auc)."""
    scope, metric = name.split("_")
    return float(getattr(getattr(report, scope), metric))


def evaluate_detection(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    video_keys: Sequence[str] | np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    resamples: int = 0,
) -> DetectionReport:
    """Frame-level and video-level metrics of fake-probability ``scores``.

    With ``resamples`` > 0, also 95 % bootstrap intervals over videos (``video_bootstrap``).
    """
    labels, scores = _validated(labels, scores)
    video_labels, video_means = video_scores(labels, scores, video_keys)
    intervals = {}
    if resamples:
        intervals = video_bootstrap(labels, scores, video_keys, threshold, resamples)
    return DetectionReport(
        frame=detection_metrics(labels, scores, threshold),
        video=detection_metrics(video_labels, video_means, threshold),
        intervals=intervals,
    )
