"""Detection metrics against scikit-learn, and video grouping that keeps methods apart."""

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    roc_auc_score,
    roc_curve,
)

from sffb.metrics import detection_metrics, evaluate_detection


def sklearn_eer(labels, scores):
    fpr, tpr, _ = roc_curve(labels, scores)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frame_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.25), 0, 1)
    ours = detection_metrics(labels, scores)
    assert ours.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert ours.ap == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert ours.acc == pytest.approx(accuracy_score(labels, scores > 0.5))
    assert ours.balanced_acc == pytest.approx(balanced_accuracy_score(labels, scores > 0.5))
    assert ours.eer == pytest.approx(sklearn_eer(labels, scores), abs=1e-9)
    assert ours.count == 400


def test_tied_scores_equal_sklearn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1), 1)  # many ties
    ours = detection_metrics(labels, scores)
    assert ours.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert ours.ap == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_perfect_and_inverted_scores():
    labels = np.array([0, 0, 1, 1])
    perfect = detection_metrics(labels, [0.1, 0.2, 0.8, 0.9])
    assert (perfect.acc, perfect.auc, perfect.eer, perfect.ap) == (1.0, 1.0, 0.0, 1.0)
    inverted = detection_metrics(labels, [0.9, 0.8, 0.2, 0.1])
    assert (inverted.acc, inverted.auc, inverted.eer) == (0.0, 0.0, 1.0)


def test_balanced_accuracy_is_not_fooled_by_the_majority_class():
    labels = np.array([0] * 20 + [1] * 80)  # 1 real : 4 fakes, as FF++ with four methods
    always_fake = detection_metrics(labels, np.linspace(0.6, 0.9, 100))
    assert always_fake.acc == pytest.approx(0.8)
    assert always_fake.balanced_acc == pytest.approx(0.5)
    scores = np.r_[np.full(10, 0.2), np.full(10, 0.7), np.full(80, 0.9)]  # half the reals right
    assert detection_metrics(labels, scores).balanced_acc == pytest.approx(
        balanced_accuracy_score(labels, scores > 0.5)
    )


def test_video_scores_are_frame_means_grouped_by_method_aware_key():
    # The same FF++ id under two methods is two videos; one real video alongside.
    keys = ["Deepfakes/000_003"] * 3 + ["Face2Face/000_003"] * 2 + ["original/000"] * 4
    labels = [1, 1, 1, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.1, 0.2, 0.3, 0.4, 0.6, 0.2, 0.4]
    report = evaluate_detection(labels, scores, keys)
    assert report.video.count == 3
    means = {"Deepfakes/000_003": 0.6, "Face2Face/000_003": 0.25, "original/000": 0.4}
    video_labels = [1, 1, 0]
    video_scores = [means[k] for k in ("Deepfakes/000_003", "Face2Face/000_003", "original/000")]
    assert report.video.auc == pytest.approx(roc_auc_score(video_labels, video_scores))
    assert report.video.acc == pytest.approx(
        accuracy_score(video_labels, np.array(video_scores) > 0.5)
    )
    assert report.frame.count == 9
    assert report.as_dict("val_")["val_video_count"] == 3.0


def test_degenerate_input_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        detection_metrics([], [])
    with pytest.raises(ValueError, match="both classes; all 3 samples are real"):
        detection_metrics([0, 0, 0], [0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="NaN"):
        detection_metrics([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="labelled both real and fake"):
        evaluate_detection([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], ["a", "a", "b", "b"])
