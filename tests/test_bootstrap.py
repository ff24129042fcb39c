"""Bootstrap intervals over videos, against a direct resampling reference built on scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from sffb.metrics import (
    INTERVAL_METRICS,
    Interval,
    evaluate_detection,
    paired_bootstrap,
    seed_averaged_bootstrap,
    video_bootstrap,
)


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


def reference_samples(labels, scores, keys, resamples, seed, threshold=0.5):
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
    return {name: np.asarray(v) for name, v in values.items()}


def reference_intervals(labels, scores, keys, resamples, seed):
    samples = reference_samples(labels, scores, keys, resamples, seed)
    return {name: tuple(np.percentile(v, [2.5, 97.5])) for name, v in samples.items()}


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


def test_paired_difference_equals_direct_resampling():
    labels, scores, keys = scored_videos(12)
    better = np.clip(scores + 0.1 * labels - 0.05, 0, 1)
    ours = paired_bootstrap(labels, better, scores, keys, resamples=300, seed=5)
    a = reference_samples(labels, better, keys, resamples=300, seed=5)
    b = reference_samples(labels, scores, keys, resamples=300, seed=5)  # the same draws
    for name in INTERVAL_METRICS:
        expected = np.percentile(a[name] - b[name], [2.5, 97.5])
        assert (ours.intervals[name].low, ours.intervals[name].high) == pytest.approx(
            tuple(expected), abs=1e-12
        ), name
    assert ours.delta["frame_auc"] == pytest.approx(
        roc_auc_score(labels, better) - roc_auc_score(labels, scores), abs=1e-12
    )


def test_paired_difference_separates_what_separate_intervals_cannot():
    # Model A is B plus a small, consistent improvement on every video: B's own interval is
    # wide (which videos are drawn), but the paired difference is narrow and excludes 0.
    labels, scores, keys = scored_videos(16, seed=3)
    better = np.clip(scores + 0.06 * (2 * labels - 1), 0, 1)
    alone_a = video_bootstrap(labels, better, keys, resamples=500)["frame_auc"]
    alone_b = video_bootstrap(labels, scores, keys, resamples=500)["frame_auc"]
    assert alone_a.low < alone_b.high  # the separate intervals overlap
    paired = paired_bootstrap(labels, better, scores, keys, resamples=500)
    assert paired.delta["frame_auc"] > 0 and paired.separates("frame_auc")
    assert not paired_bootstrap(labels, scores, scores, keys, resamples=50).separates("frame_auc")
    reverse = paired_bootstrap(labels, scores, better, keys, resamples=500)
    assert reverse.intervals["frame_auc"].high < 0


def scored_split(order: np.ndarray, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Evaluation's scored columns for the 12 videos of ``scored_videos``, rows in ``order``."""
    labels, scores, keys = scored_videos(12)
    columns = {
        "label": labels,
        "video_key": keys,
        "method": np.where(labels == 1, "Deepfakes", "youtube"),
        "frame_index": np.tile(np.arange(6), 12),
        "score_c40": np.clip(scores + shift * (2 * labels - 1), 0, 1),
    }
    return {name: values[order] for name, values in columns.items()}


def test_evaluation_compares_the_model_with_each_baseline_on_the_same_rows():
    from rayjobs.evaluate import (
        build_comparisons,
        build_table,
        comparison_markdown,
        comparison_metrics,
        format_difference,
    )

    rows = np.arange(72)
    scored = {"model": scored_split(rows, shift=0.05), "teacher": scored_split(rows)}
    scored["alone"] = scored_split(rows, shift=0.1)
    comparisons = build_comparisons(scored, ("c40",), resamples=200)
    assert [(c.baseline, c.method) for c in comparisons] == [
        ("teacher", "Deepfakes"),
        ("teacher", "all"),
        ("alone", "Deepfakes"),
        ("alone", "all"),
    ]
    # The model's resamples are shared across baselines; each difference is the one-pair one.
    alone = paired_bootstrap(scored["model"]["label"], scored["model"]["score_c40"],
                             scored["alone"]["score_c40"], scored["model"]["video_key"],
                             resamples=200)  # fmt: skip
    assert comparisons[-1].difference == alone
    # Printed in points, marked only when the interval excludes 0 (as reproduce.py prints them).
    assert format_difference(0.0312, Interval(0.004, 0.06)) == "+3.12 [+0.4, +6.0]*"
    assert format_difference(-0.01, Interval(-0.05, 0.02)) == "-1.00 [-5.0, +2.0]"
    delta, interval = alone.delta["frame_auc"], alone.intervals["frame_auc"]
    assert format_difference(delta, interval) in comparison_markdown(comparisons)
    tables = {name: build_table(s, ("c40",), name, resamples=0)[-1] for name, s in scored.items()}
    expected = tables["model"].report.frame.auc - tables["teacher"].report.frame.auc
    metrics = comparison_metrics(comparisons)
    assert metrics["baseline_teacher_test_c40_frame_auc_delta"] == pytest.approx(expected)
    assert metrics["baseline_teacher_test_c40_video_acc_delta_ci_high"] >= 0
    # Rows scored in another order (or on other rows) cannot be paired: refused, not mispaired.
    shuffled = {**scored, "teacher": scored_split(np.random.default_rng(0).permutation(72))}
    with pytest.raises(ValueError, match="baseline 'teacher' was scored on other test rows"):
        build_comparisons(shuffled, ("c40",), resamples=10)


def seed_runs(seeds: int, spread: float, seed: int = 7, shift: float = 0.0):
    """Frames of 12 videos and ``seeds`` trainings of one recipe: a model whose fakes score
    ``shift`` higher, trained again with each seed, which moves how well the run separates
    the classes by ~``spread`` and each video's score a little."""
    labels, scores, keys = scored_videos(12)
    rng = np.random.default_rng(seed)
    video = np.unique(keys, return_inverse=True)[1]
    sign = 2 * labels - 1
    runs = [
        np.clip(
            scores + (shift + rng.normal(0, spread)) * sign + rng.normal(0, 0.02, 12)[video], 0, 1
        )
        for _ in range(seeds)
    ]
    return labels, keys, runs


def test_seed_average_equals_direct_two_level_resampling():
    labels, keys, runs_a = seed_runs(3, 0.08)
    _, _, runs_b = seed_runs(2, 0.08, seed=8)
    ours = seed_averaged_bootstrap(labels, runs_a, runs_b, keys, resamples=200, seed=5)
    # The reference: every run's textbook samples on the same video draws, then each
    # resample's runs drawn with replacement in the order the function documents.
    a = [reference_samples(labels, run, keys, resamples=200, seed=5) for run in runs_a]
    b = [reference_samples(labels, run, keys, resamples=200, seed=5) for run in runs_b]
    rng = np.random.default_rng([5, 1])
    drawn_a, drawn_b = rng.integers(0, 3, (200, 3)), rng.integers(0, 2, (200, 2))
    for name in INTERVAL_METRICS:
        differences = [
            np.mean([a[r][name][i] for r in drawn_a[i]])
            - np.mean([b[r][name][i] for r in drawn_b[i]])
            for i in range(200)
        ]
        expected = np.percentile(differences, [2.5, 97.5])
        low, high = ours.intervals[name].low, ours.intervals[name].high
        assert (low, high) == pytest.approx(tuple(expected), abs=1e-12), name
    point = np.mean([roc_auc_score(labels, r) for r in runs_a]) - np.mean(
        [roc_auc_score(labels, r) for r in runs_b]
    )
    assert ours.delta["frame_auc"] == pytest.approx(point, abs=1e-12)


def test_one_run_each_is_the_paired_bootstrap():
    labels, keys, (a,) = seed_runs(1, 0.05)
    _, _, (b,) = seed_runs(1, 0.05, seed=9)
    averaged = seed_averaged_bootstrap(labels, [a], [b], keys, resamples=300, seed=2)
    assert averaged == paired_bootstrap(labels, a, b, keys, resamples=300, seed=2)


def test_disagreeing_seeds_widen_the_interval():
    # Runs that agree leave only the test set's randomness; runs that disagree add the
    # training's, which only the run level of the bootstrap sees.
    for spread, widens in ((0.0, False), (0.1, True)):
        labels, keys, runs_a = seed_runs(4, spread, shift=0.05)
        _, _, runs_b = seed_runs(4, spread, seed=11)
        both = seed_averaged_bootstrap(labels, runs_a, runs_b, keys, resamples=400)
        videos_only = seed_averaged_bootstrap(
            labels, runs_a, runs_b, keys, resamples=400, resample_runs=False
        )
        width = both.intervals["frame_auc"].high - both.intervals["frame_auc"].low
        narrower = videos_only.intervals["frame_auc"].high - videos_only.intervals["frame_auc"].low
        assert (width > 1.2 * narrower) is widens, spread
        assert both.delta == videos_only.delta


def test_seed_average_needs_runs_of_the_right_length():
    labels, keys, runs = seed_runs(2, 0.05)
    with pytest.raises(ValueError, match="each recipe needs a run"):
        seed_averaged_bootstrap(labels, runs, [], keys)
    with pytest.raises(ValueError):
        seed_averaged_bootstrap(labels, runs, [runs[0][:-1]], keys)
