"""Calibration: ECE against a hand computation, temperature scaling on an over-confident model."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import log_loss, roc_auc_score

from rayjobs.lib.calibration import (
    LevelCalibration,
    best_threshold,
    calibrate,
    load_calibration,
    save_calibration,
)
from sffb.calibration import (
    expected_calibration_error,
    fake_logit,
    fit_temperature,
    negative_log_likelihood,
    reliability,
    scaled_scores,
)


def test_ece_by_hand():
    # Bins of width 0.5: [0.1, 0.2, 0.4] -> mean 0.2333, 1 fake of 3; [0.6, 0.9] -> 0.75, 2 of 2.
    labels = [0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.4, 0.6, 0.9]
    by_hand = (3 / 5) * abs(1 / 3 - 0.7 / 3) + (2 / 5) * abs(1.0 - 0.75)
    assert expected_calibration_error(labels, scores, bins=2) == pytest.approx(by_hand)
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0  # 1.0 lands in the last bin


def test_reliability_matches_sklearn_calibration_curve():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 2000)
    labels = (rng.uniform(0, 1, 2000) < scores**2).astype(int)
    ours = reliability(labels, scores, bins=10)
    fake_rate, mean_score = calibration_curve(labels, scores, n_bins=10, strategy="uniform")
    filled = ours.counts > 0
    assert ours.fake_rate[filled] == pytest.approx(fake_rate)
    assert ours.mean_score[filled] == pytest.approx(mean_score)


def test_temperature_scaling_fixes_an_over_confident_model():
    rng = np.random.default_rng(1)
    true_logit = rng.normal(0, 2, 4000)
    labels = (rng.uniform(size=4000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    over_confident = 4.0 * true_logit  # the ranking is right, the confidence four times too high
    temperature = fit_temperature(labels, over_confident)
    assert temperature == pytest.approx(4.0, rel=0.1)
    before = negative_log_likelihood(labels, over_confident)
    after = negative_log_likelihood(labels, over_confident, temperature)
    assert after < before - 0.1
    calibrated = scaled_scores(over_confident, temperature)
    assert after == pytest.approx(log_loss(labels, calibrated))  # sklearn agrees on the NLL
    raw_scores = scaled_scores(over_confident, 1.0)
    assert expected_calibration_error(labels, calibrated) < expected_calibration_error(
        labels, raw_scores
    )
    assert roc_auc_score(labels, calibrated) == pytest.approx(roc_auc_score(labels, raw_scores))


def test_logits_from_probabilities_stay_finite():
    logits = fake_logit([0.0, 0.5, 1.0])
    assert np.isfinite(logits).all() and logits[1] == 0.0 and logits[0] < -20 < 20 < logits[2]
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature([1, 1], [0.3, 2.0])


def test_validation_threshold_is_the_most_accurate_cut():
    assert (
        best_threshold(np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.7, 0.6, 0.8, 0.9]))
        == 0.4
    )
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 400)
    scores = np.clip(rng.normal(0.3 + 0.3 * labels, 0.15), 0, 1)
    threshold = best_threshold(labels, scores)
    brute_force = max(np.mean((scores > t) == labels) for t in np.linspace(0, 1, 4001))
    assert np.mean((scores > threshold) == labels) == pytest.approx(brute_force)


def test_calibration_is_stored_beside_the_checkpoint(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0.001, 0.999)
    assert load_calibration(str(tmp_path)) == {}
    fitted = calibrate(labels, scores)
    save_calibration(str(tmp_path), {"c40": fitted})
    save_calibration(str(tmp_path), {"c23": LevelCalibration(2.0, 0.5, 10)})  # merged, not lost
    assert load_calibration(str(tmp_path)) == {"c40": fitted, "c23": LevelCalibration(2.0, 0.5, 10)}
    assert fitted.val_frames == 300 and 0 < fitted.threshold < 1
    assert fitted.apply(np.array([0.5]))[0] == pytest.approx(0.5)  # T keeps 0.5 where it is
