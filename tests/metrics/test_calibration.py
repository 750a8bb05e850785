"""Calibration metrics, temperature scaling and operating points on small hand-made tables."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from muracli.errors import ConfigError, DataError
from muracli.metrics.calibration import (
    ECE_BINS,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    log_odds_nll,
    operating_threshold,
    parse_operating_point,
    reliability_bins,
    scaled_probabilities,
)

LABELS = np.array([0, 0, 1, 1, 1, 0, 1, 0])
PROBS = np.array([0.05, 0.10, 0.12, 0.50, 0.95, 0.90, 1.00, 0.14])


def test_brier_and_ece_equal_a_direct_computation():
    assert brier_score(LABELS, PROBS) == pytest.approx(np.mean((PROBS - LABELS) ** 2))
    # by hand, 15 bins of width 1/15: 0.05 in bin 0, 0.10 and 0.12 in bin 1 ([.067, .133)), 0.14 in
    # bin 2, 0.50 in bin 7, 0.90 in bin 13 ([.867, .933)), 0.95 and 1.00 (the last edge) in bin 14
    bins = {0: [0], 1: [1, 2], 2: [7], 7: [3], 13: [5], 14: [4, 6]}
    expected = sum(len(rows) / len(LABELS) * abs(PROBS[rows].mean() - LABELS[rows].mean()) for rows in bins.values())
    assert expected_calibration_error(LABELS, PROBS) == pytest.approx(expected)
    table = reliability_bins(LABELS, PROBS)
    assert len(table) == ECE_BINS == 15
    assert [i for i, row in enumerate(table) if row["n"]] == sorted(bins)
    assert table[14]["n"] == 2 and table[14]["observed_frequency"] == 1.0
    assert table[14]["mean_probability"] == pytest.approx(0.975)
    assert table[3]["mean_probability"] is None and table[3]["observed_frequency"] is None
    assert table[0]["low"] == 0.0 and table[-1]["high"] == 1.0
    # a perfectly calibrated, perfectly sure model
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0 and brier_score([0, 1], [0.0, 1.0]) == 0.0


def test_temperature_scaling_lowers_the_nll_and_keeps_the_ranking():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    truth = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 1.5, 400)  # well calibrated at T = 1 ...
    overconfident = 4.0 * truth  # ... and four times too sure
    fit = fit_temperature(overconfident, labels)
    assert fit["nll_after"] < fit["nll_before"]
    assert fit["nll_before"] == pytest.approx(log_odds_nll(overconfident, labels))
    assert fit["nll_after"] == pytest.approx(log_odds_nll(overconfident, labels, fit["temperature"]))
    assert 2.5 < fit["temperature"] < 6.0 and not fit["at_bound"]
    for t in (fit["temperature"] * 0.9, fit["temperature"] * 1.1):  # a minimum
        assert log_odds_nll(overconfident, labels, t) > fit["nll_after"]
    before, after = scaled_probabilities(overconfident), scaled_probabilities(overconfident, fit["temperature"])
    assert roc_auc_score(labels, after) == roc_auc_score(labels, before)
    assert expected_calibration_error(labels, after) < expected_calibration_error(labels, before)
    assert scaled_probabilities([-800.0, 0.0, 800.0]).tolist() == [0.0, 0.5, 1.0]  # no overflow
    with pytest.raises(DataError, match="both normal and abnormal"):
        fit_temperature([1.0, 2.0], [1, 1])


def test_the_sensitivity_threshold_is_the_highest_that_keeps_it_with_ties():
    # 10 abnormal studies; two tie at 0.4
    positives = [0.9, 0.85, 0.8, 0.7, 0.65, 0.6, 0.5, 0.4, 0.4, 0.2]
    negatives = [0.1, 0.3, 0.45, 0.55, 0.05]
    labels = np.r_[np.ones(10, int), np.zeros(5, int)]
    probs = np.r_[positives, negatives]
    point = operating_threshold(labels, probs, "sensitivity=0.8")
    assert point["threshold"] == 0.4  # 0.5 keeps 7/10; 0.4 keeps 9/10 (the tie counts whole)
    assert point["sensitivity"] == 0.9 and point["specificity"] == 3 / 5
    for t in np.unique(probs):  # no higher threshold reaches 0.8
        if t > point["threshold"]:
            assert np.mean(probs[labels == 1] >= t) < 0.8
    assert operating_threshold(labels, probs, "sensitivity=0.7")["threshold"] == 0.5  # exactly 7/10
    assert operating_threshold(labels, probs, "sensitivity=1")["threshold"] == 0.2
    spec = operating_threshold(labels, probs, "specificity=0.8")  # the lowest with 4/5 normals below
    assert spec["threshold"] == 0.5 and spec["specificity"] == 0.8 and spec["sensitivity"] == 0.7
    assert operating_threshold(labels, probs, "specificity=1")["threshold"] == 0.6
    youden = operating_threshold(labels, probs, "youden")
    j = youden["sensitivity"] + youden["specificity"]
    for t in np.unique(probs):
        assert np.mean(probs[labels == 1] >= t) + np.mean(probs[labels == 0] < t) <= j + 1e-12
    with pytest.raises(DataError, match="all abnormal"):
        operating_threshold(np.ones(4, int), [0.1, 0.2, 0.3, 0.4], "sensitivity=0.95")
    with pytest.raises(DataError, match="all normal"):
        operating_threshold(np.zeros(3, int), [0.1, 0.2, 0.3], "youden")


@pytest.mark.parametrize("text", ["sensitivity", "sensitivity=0", "specificity=1.5", "youden=1", "auc=0.9", "sensitivity=x"])
def test_bad_operating_points_are_config_errors(text):
    with pytest.raises(ConfigError):
        parse_operating_point(text)
