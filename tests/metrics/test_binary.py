from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from muracli.errors import ConfigError, DataError
from muracli.metrics import METRICS, SCORES, binary_metrics

from .builders import any_probabilities, grid_probabilities


def sklearn_metrics(y, p, yhat) -> dict:
    """The reference: scikit-learn with undefined values as NaN (zero_division=np.nan)."""
    nan = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "kappa": cohen_kappa_score(y, yhat, labels=[0, 1], replace_undefined_by=nan),
            "auc": roc_auc_score(y, p) if len(set(y)) == 2 else nan,
            "accuracy": accuracy_score(y, yhat),
            "sensitivity": recall_score(y, yhat, labels=[0, 1], zero_division=nan),
            "specificity": recall_score(y, yhat, labels=[0, 1], pos_label=0, zero_division=nan),
            "precision": precision_score(y, yhat, labels=[0, 1], zero_division=nan),
            "f1": f1_score(y, yhat, labels=[0, 1], zero_division=nan),
        }


def assert_matches_sklearn(result, y, p, yhat):
    expected = sklearn_metrics(y, p, yhat)
    for name in SCORES:
        if math.isnan(expected[name]):
            assert result[name] is None, name
        else:
            assert result[name] == pytest.approx(expected[name], rel=1e-12, abs=1e-15), name
    # kappa and AUC are scikit-learn's own numbers, bit for bit
    assert result["kappa"] is None or result["kappa"] == expected["kappa"]
    assert result["auc"] is None or result["auc"] == expected["auc"]
    tn, fp, fn, tp = confusion_matrix(y, yhat, labels=[0, 1]).ravel()
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (tp, fp, tn, fn)
    assert result["n"] == len(y) and result["n_positive"] == sum(y)


cases = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(any_probabilities, min_size=n, max_size=n),
    )
)


@settings(max_examples=150, deadline=None)
@given(case=cases, threshold=st.one_of(grid_probabilities, st.floats(0.0, 1.0)))
def test_every_metric_equals_sklearn(case, threshold):
    y, p = case
    result = binary_metrics(y, p, threshold)
    yhat = [int(v >= threshold) for v in p]
    assert_matches_sklearn(result, y, p, yhat)
    json.dumps(result, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(case=cases, data=st.data())
def test_given_predictions_override_the_threshold(case, data):
    y, p = case
    yhat = data.draw(st.lists(st.integers(0, 1), min_size=len(y), max_size=len(y)))
    result = binary_metrics(y, p, 0.5, predictions=yhat)
    assert_matches_sklearn(result, y, p, yhat)


@pytest.mark.parametrize(
    "y, p",
    [
        ([1, 1, 1], [0.2, 0.6, 0.9]),  # one class only: no AUC, no specificity
        ([0, 0, 0], [0.2, 0.6, 0.9]),  # no abnormal: no sensitivity
        ([0, 0, 0], [0.1, 0.2, 0.3]),  # all normal, all predicted normal: kappa, precision, f1 undefined
        ([1, 1], [0.9, 0.8]),  # all abnormal, all predicted abnormal: kappa undefined
        ([0, 1, 1], [0.1, 0.2, 0.3]),  # nothing predicted abnormal: no precision, f1 = 0
        ([0, 1, 0], [0.9, 0.8, 0.7]),  # everything predicted abnormal
        ([1], [0.5]),
        ([0, 1], [0.5, 0.5]),  # tied scores
    ],
)
def test_edge_cases_match_sklearn_with_undefined_as_none(y, p):
    result = binary_metrics(y, p)
    assert_matches_sklearn(result, y, p, [int(v >= 0.5) for v in p])
    json.dumps(result, allow_nan=False)


def test_specific_undefined_values():
    assert binary_metrics([1, 1, 1], [0.2, 0.6, 0.9])["auc"] is None
    all_normal = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert all_normal["kappa"] is None and all_normal["specificity"] == 1.0 and all_normal["f1"] is None
    missed = binary_metrics([0, 1, 1], [0.1, 0.2, 0.3])
    assert missed["precision"] is None and missed["f1"] == 0.0 and missed["kappa"] == 0.0
    # constant but disagreeing: chance agreement is 0, so kappa is defined and 0
    assert binary_metrics([1, 1], [0.1, 0.2])["kappa"] == 0.0


def test_values_are_plain_python_numbers():
    result = binary_metrics(np.array([0, 1, 1, 0]), np.array([0.2, 0.8, 0.4, 0.6], dtype=np.float32))
    for name, value in result.items():
        assert type(value) in (int, float, type(None)), name
    assert set(METRICS) <= set(result)
    assert METRICS == ("kappa", "auc", "accuracy", "f1", "sensitivity", "specificity")


def test_probabilities_may_be_absent_when_predictions_are_given():
    result = binary_metrics([0, 1, 1], None, predictions=[0, 1, 0])
    assert result["auc"] is None and result["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "y, p",
    [
        ([], []),
        ([0, 1], [0.5]),
        ([0, 2], [0.1, 0.2]),
        ([0, 1], [0.1, 1.2]),
        ([0, 1], [0.1, float("nan")]),
        (["a"], [0.1]),
    ],
)
def test_bad_inputs_are_data_errors(y, p):
    with pytest.raises(DataError):
        binary_metrics(y, p)


def test_bad_threshold_is_a_config_error():
    with pytest.raises(ConfigError):
        binary_metrics([0, 1], [0.1, 0.9], threshold=-0.1)
