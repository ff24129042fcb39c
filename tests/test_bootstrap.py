"""Bootstrap intervals over videos, against a direct resampling reference built on scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from sffb.metrics import INTERVAL_METRICS, evaluate_detection, video_bootstrap


def scored_videos(videos: int, frames: int = 6, seed: int = 0):
    """Half real, half fake videos; each video's frames share an offset (videos differ)."""
    rng = np.random.default_rng(seed)
    video_labels = np.arange(videos) % 2
    offsets = rng.normal(0, 0.15, videos)
    labels = np.repeat(video_labels, frames)
    keys = np.repeat([f"v{i:03d}" for i in range(videos)], frames)
    scores = np.clip(
        0.4 + 0.2 * labels + np.repeat(offsets, frames) + rng.normal(0, 0.1, labels.size), 0, 1
    )
    return labels, np.round(scores, 2), keys  # rounded: ties, which the AUC counts half


def reference_intervals(labels, scores, keys, resamples, seed, threshold=0.5):
    """The textbook procedure: draw videos, *copy* their frames, score with scikit-learn."""
    unique = np.unique(keys)
    video_label = np.array([labels[keys == k][0] for k in unique])
    video_mean = np.array([scores[keys == k].mean() for k in unique])
    rng = np.random.default_rng(seed)
    values = {name: [] for name in INTERVAL_METRICS}
    for _ in range(resamples):
        drawn = np.concatenate(
            [rng.choice(np.flatnonzero(video_label == c), (video_label == c).sum()) for c in (0, 1)]
        )
        frame_rows = np.concatenate([np.flatnonzero(keys == unique[v]) for v in drawn])
        values["frame_auc"].append(roc_auc_score(labels[frame_rows], scores[frame_rows]))
        values["frame_acc"].append(
            accuracy_score(labels[frame_rows], scores[frame_rows] > threshold)
        )
        values["video_auc"].append(roc_auc_score(video_label[drawn], video_mean[drawn]))
        values["video_acc"].append(
            accuracy_score(video_label[drawn], video_mean[drawn] > threshold)
        )
    return {name: tuple(np.percentile(v, [2.5, 97.5])) for name, v in values.items()}


def test_equals_direct_resampling():
    labels, scores, keys = scored_videos(12)
    ours = video_bootstrap(labels, scores, keys, resamples=300, seed=5)
    reference = reference_intervals(labels, scores, keys, resamples=300, seed=5)
    for name in INTERVAL_METRICS:
        assert (ours[name].low, ours[name].high) == pytest.approx(reference[name], abs=1e-12), name


def test_interval_contains_the_estimate_and_narrows_with_more_videos():
    widths = []
    for videos in (8, 32, 128):
        labels, scores, keys = scored_videos(videos, seed=1)
        report = evaluate_detection(labels, scores, keys, resamples=500)
        auc = report.intervals["frame_auc"]
        assert auc.low <= report.frame.auc <= auc.high
        widths.append(auc.high - auc.low)
    assert widths[0] > widths[1] > widths[2] > 0


def test_resamples_whole_videos_not_frames():
    # Frames within a video are near-identical: a frame bootstrap would think 40 frames are 40
    # samples and give a narrow interval; the video bootstrap sees 4 videos.
    labels, scores, keys = scored_videos(4, frames=40, seed=2)
    interval = video_bootstrap(labels, scores, keys, resamples=400)["frame_auc"]
    rng = np.random.default_rng(0)
    frame_level = [
        roc_auc_score(labels[rows], scores[rows])
        for rows in (rng.choice(labels.size, labels.size) for _ in range(400))
    ]
    low, high = np.percentile(frame_level, [2.5, 97.5])
    assert interval.high - interval.low > 2 * (high - low)


def test_deterministic_and_logged_as_metrics():
    labels, scores, keys = scored_videos(10)
    first = evaluate_detection(labels, scores, keys, resamples=100)
    assert first == evaluate_detection(labels, scores, keys, resamples=100)
    flat = first.as_dict("test_c23_")
    assert flat["test_c23_frame_auc_ci_low"] == first.intervals["frame_auc"].low
    assert flat["test_c23_video_acc_ci_high"] == first.intervals["video_acc"].high
    assert evaluate_detection(labels, scores, keys).intervals == {}
    with pytest.raises(ValueError, match="confidence"):
        video_bootstrap(labels, scores, keys, confidence=1.5)
