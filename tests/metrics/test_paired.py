"""Paired bootstrap of the difference between two runs on the same studies (metrics.paired)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from muracli.errors import DataError
from muracli.metrics.binary import binary_metrics
from muracli.metrics.paired import paired_bootstrap, paired_studies, reading


def two_runs(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1)
    b = np.clip(rng.normal(0.35 + 0.35 * y, 0.2), 0, 1)
    return y, a, b


def test_a_run_against_itself_is_exactly_zero():
    y, a, _ = two_runs()
    result = paired_bootstrap(y, a, a, 0.5, 0.5, n=300, seed=3)
    assert result == {"kappa": (0.0, 0.0, 0.0), "auc": (0.0, 0.0, 0.0)}
    assert reading(result["kappa"]) == "includes 0"


def test_same_resamples_for_both_runs_as_an_independent_loop():
    """Each resample draws the same studies for both runs: recomputed with sklearn, same interval."""
    y, a, b = two_runs(n=120, seed=1)
    n, seed = 100, 5
    result = paired_bootstrap(y, a, b, 0.5, 0.45, n=n, seed=seed)
    indices = np.random.default_rng(seed).integers(0, len(y), size=(n, len(y)))
    kappas, aucs = [], []
    for rows in indices:
        yy = y[rows]
        kappas.append(cohen_kappa_score(yy, (b[rows] >= 0.45).astype(int), labels=[0, 1])
                      - cohen_kappa_score(yy, (a[rows] >= 0.5).astype(int), labels=[0, 1]))
        aucs.append(roc_auc_score(yy, b[rows]) - roc_auc_score(yy, a[rows]))
    for metric, values in (("kappa", kappas), ("auc", aucs)):
        delta, low, high = result[metric]
        point = binary_metrics(y, b, 0.45)[metric] - binary_metrics(y, a, 0.5)[metric]
        assert delta == pytest.approx(point)
        assert low <= delta <= high
        assert (low, high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])), abs=1e-12)


def test_pairing_narrows_the_interval_of_correlated_runs():
    y, a, _ = two_runs(n=300, seed=2)
    b = np.clip(a + np.random.default_rng(9).normal(0, 0.02, len(a)), 0, 1)  # nearly the same model
    _, low, high = paired_bootstrap(y, a, b, n=300, seed=0)["auc"]
    assert high - low < 0.02  # unpaired intervals of AUC on 300 studies are ~0.1 wide


def test_readings_and_undefined_metrics():
    assert reading((0.1, 0.02, 0.2)) == "excludes 0" and reading((-0.1, -0.2, -0.01)) == "excludes 0"
    assert reading((0.1, -0.02, 0.2)) == "includes 0" and reading(None) == "-"
    y = np.zeros(10, dtype=int)
    assert paired_bootstrap(y, np.linspace(0, 1, 10), np.linspace(1, 0, 10), n=20)["auc"] is None


def table(studies, labels, probabilities):
    return pd.DataFrame({"study": studies, "label": labels, "probability": probabilities,
                         "prediction": [int(p >= 0.5) for p in probabilities]})


def test_studies_are_matched_by_id_and_must_be_the_same():
    a = table(["s1", "s2", "s3"], [0, 1, 1], [0.2, 0.7, 0.4])
    b = table(["s3", "s1", "s2"], [1, 0, 1], [0.9, 0.1, 0.6])
    pairs = paired_studies(a, b)
    assert list(pairs["study"]) == ["s1", "s2", "s3"]
    assert list(pairs["probability_a"]) == [0.2, 0.7, 0.4] and list(pairs["probability_b"]) == [0.1, 0.6, 0.9]
    with pytest.raises(DataError, match="different studies"):
        paired_studies(a, table(["s1", "s2", "s4"], [0, 1, 1], [0.1, 0.2, 0.3]))
    with pytest.raises(DataError, match="disagree on the labels"):
        paired_studies(a, table(["s1", "s2", "s3"], [1, 1, 1], [0.1, 0.2, 0.3]))
