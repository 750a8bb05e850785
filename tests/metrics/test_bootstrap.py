from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, recall_score, roc_auc_score

from muracli.errors import ConfigError, DataError
from muracli.metrics import SCORES, binary_metrics, bootstrap_distribution, bootstrap_intervals, resample_indices


def study_data(n: int = 300, seed: int = 0, grid: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    return y, (np.round(p, 1) if grid else p)  # rounding makes many tied scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intervals_contain_the_point_estimate(seed):
    y, p = study_data(seed=seed)
    point = binary_metrics(y, p)
    intervals = bootstrap_intervals(y, p, n=500, seed=seed)
    assert set(intervals) == set(SCORES)
    for name, (low, high) in intervals.items():
        assert low <= point[name] <= high, name
        assert 0 < high - low < 0.3, name


def test_reproducible_per_seed_and_different_across_seeds():
    y, p = study_data()
    first = bootstrap_intervals(y, p, n=200, seed=7)
    assert bootstrap_intervals(y, p, n=200, seed=7) == first
    assert bootstrap_intervals(y, p, n=200, seed=8) != first
    np.testing.assert_array_equal(resample_indices(len(y), 200, 7), resample_indices(len(y), 200, 7))


def test_higher_level_gives_wider_intervals():
    y, p = study_data()
    narrow = bootstrap_intervals(y, p, n=300, level=0.8)
    wide = bootstrap_intervals(y, p, n=300, level=0.99)
    for name in SCORES:
        assert wide[name][0] <= narrow[name][0] and narrow[name][1] <= wide[name][1]


def test_each_resample_matches_sklearn_on_the_same_studies():
    # 1,200 studies and 1,000 resamples span more than one internal block; check resamples in both
    y, p = study_data(1200, seed=3, grid=True)
    n = 1000
    threshold = 0.5
    distribution = bootstrap_distribution(y, p, threshold, n=n, seed=11)
    indices = resample_indices(len(y), n, 11)
    assert indices.shape == (n, len(y))
    for i in [0, 1, 500, 873, 999]:
        ys, ps = y[indices[i]], p[indices[i]]
        yhat = (ps >= threshold).astype(int)
        assert distribution["auc"][i] == pytest.approx(roc_auc_score(ys, ps), rel=1e-12)
        assert distribution["kappa"][i] == pytest.approx(cohen_kappa_score(ys, yhat), rel=1e-12)
        assert distribution["sensitivity"][i] == pytest.approx(recall_score(ys, yhat), rel=1e-12)
        assert distribution["specificity"][i] == pytest.approx(recall_score(ys, yhat, pos_label=0), rel=1e-12)
        assert distribution["f1"][i] == pytest.approx(f1_score(ys, yhat), rel=1e-12)
        assert distribution["accuracy"][i] == pytest.approx(np.mean(ys == yhat), rel=1e-12)


def test_one_class_resamples_are_skipped_for_auc():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.2, 0.7, 0.4, 0.5, 0.9])
    distribution = bootstrap_distribution(y, p, n=400, seed=0)
    undefined = np.isnan(distribution["auc"])
    assert 0 < undefined.sum() < 400
    indices = resample_indices(len(y), 400, 0)
    single_class = np.array([len(set(y[row])) == 1 for row in indices])
    np.testing.assert_array_equal(undefined, single_class)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in np.flatnonzero(~undefined)[:20]:
            assert distribution["auc"][i] == pytest.approx(roc_auc_score(y[indices[i]], p[indices[i]]), rel=1e-12)
    low, high = bootstrap_intervals(y, p, n=400, seed=0)["auc"]
    assert 0 <= low <= high <= 1


def test_metrics_undefined_everywhere_have_no_interval():
    intervals = bootstrap_intervals([1, 1, 1, 1], [0.2, 0.6, 0.7, 0.9], n=100)
    assert intervals["auc"] is None and intervals["specificity"] is None
    assert intervals["sensitivity"] is not None


def test_given_predictions_are_used():
    y, p = study_data(200)
    flipped = 1 - (p >= 0.5).astype(int)
    with_flipped = bootstrap_intervals(y, p, n=200, predictions=flipped)
    assert with_flipped["accuracy"][1] < 0.5 < bootstrap_intervals(y, p, n=200)["accuracy"][0]
    assert with_flipped["auc"] == bootstrap_intervals(y, p, n=200)["auc"]


def test_intervals_are_the_percentiles_of_the_resampled_metrics():
    # The intervals come from the vectorised distribution (one matrix product for all
    # resamples, which is what makes 1,000 resamples of 1,200 studies take a fraction of a
    # second); here they are recomputed resample by resample with scikit-learn.
    y, p = study_data(400, seed=5)
    n, level = 300, 0.9
    intervals = bootstrap_intervals(y, p, n=n, seed=4, level=level)
    indices = resample_indices(len(y), n, 4)
    kappas = [cohen_kappa_score(y[i], (p[i] >= 0.5).astype(int)) for i in indices]
    aucs = [roc_auc_score(y[i], p[i]) for i in indices]
    for name, values in (("kappa", kappas), ("auc", aucs)):
        low, high = np.percentile(values, [5, 95])
        assert intervals[name] == pytest.approx((low, high), rel=1e-9), name


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": -5}, {"n": 2.5}, {"level": 1.0}, {"level": 0.0}])
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        bootstrap_intervals([0, 1], [0.2, 0.8], **kwargs)


def test_bad_data_is_a_data_error():
    with pytest.raises(DataError):
        bootstrap_intervals([], [])
    with pytest.raises(DataError):
        bootstrap_intervals([0, 1], [0.2])
