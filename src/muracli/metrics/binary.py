"""Binary classification metrics at one operating point.

Labels are 0 = normal, 1 = abnormal; a case is predicted abnormal when its
probability is ``>= threshold`` (ties go to abnormal, everywhere in mura).

Cohen's kappa and ROC AUC come from scikit-learn, so the numbers are the ones
a reviewer would compute; the ratios come from the confusion counts.

A metric that is undefined on the data is ``None``, never NaN (NaN is not
valid JSON and would read as a number in a table):

* ``auc`` when only one class is present in ``labels``;
* ``kappa`` when labels and predictions are the same single class
  (chance agreement is 1, so kappa is 0/0);
* ``sensitivity`` with no abnormal cases, ``specificity`` with no normal
  ones, ``precision`` with no predicted abnormal cases, ``f1`` when there
  is no abnormal case and none is predicted.

This is scikit-learn's ``zero_division=np.nan`` (and
``replace_undefined_by=np.nan``) with NaN spelled ``None``. scikit-learn's
default instead reports 0.0 with a warning, which looks like a real score.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from muracli.errors import ConfigError, DataError


#: Every score ``binary_metrics`` returns (the counts come after these).
SCORES = ("kappa", "auc", "accuracy", "sensitivity", "specificity", "precision", "f1")


def as_labels(labels: Any, name: str = "labels") -> np.ndarray:
    """``labels`` as an int64 vector of 0/1; DataError on anything else."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.int64)
    if array.dtype.kind not in "iuf":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{name} must be 0 (normal) or 1 (abnormal), got values of type {array.dtype}") from None
    bad = ~np.isin(array, (0, 1))
    if bad.any():
        raise DataError(f"{name} must be 0 (normal) or 1 (abnormal); found {array[bad][0].item()!r}")
    return array.astype(np.int64)


def as_probabilities(probabilities: Any, name: str = "probabilities") -> np.ndarray:
    """``probabilities`` as a float64 vector of finite values in [0, 1]."""
    try:
        array = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be numbers in [0, 1]") from None
    if array.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {array.shape}")
    bad = ~np.isfinite(array) | (array < 0) | (array > 1)
    if bad.any():
        raise DataError(f"{name} must be finite numbers in [0, 1]; found {array[bad][0].item()!r}")
    return array


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float in [0, 1]; ConfigError otherwise."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number in [0, 1], got {threshold!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {value}", "0.5 is the usual choice")
    return value


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def confusion_counts(labels: np.ndarray, predictions: np.ndarray) -> dict[str, int]:
    """``tp``, ``fp``, ``tn``, ``fn`` (abnormal = positive) as plain ints."""
    tp = int(np.count_nonzero((labels == 1) & (predictions == 1)))
    fp = int(np.count_nonzero((labels == 0) & (predictions == 1)))
    tn = int(np.count_nonzero((labels == 0) & (predictions == 0)))
    fn = int(np.count_nonzero((labels == 1) & (predictions == 0)))
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def binary_metrics(
    labels: Any,
    probabilities: Any,
    threshold: float = 0.5,
    predictions: Any = None,
) -> dict[str, Any]:
    """Kappa, AUC, accuracy, sensitivity, specificity, precision and F1, plus
    ``n``, ``n_positive`` and the confusion counts ``tp``/``fp``/``tn``/``fn``.

    ``predictions`` (0/1) overrides ``probabilities >= threshold`` for the
    metrics that need a decision (everything but AUC); study-level vote
    aggregation passes its own. ``probabilities`` may be ``None`` when
    ``predictions`` is given; AUC is then ``None``. Values are plain Python
    floats and ints; undefined ones are ``None`` (see the module docstring).
    """
    y = as_labels(labels)
    if probabilities is None and predictions is None:
        raise DataError("binary_metrics needs probabilities or predictions")
    p = None if probabilities is None else as_probabilities(probabilities)
    if predictions is None:
        yhat = (p >= check_threshold(threshold)).astype(np.int64)
    else:
        yhat = as_labels(predictions, "predictions")
    for name, other in (("probabilities", p), ("predictions", yhat)):
        if other is not None and len(other) != len(y):
            raise DataError(f"{name} has {len(other)} values but labels has {len(y)}")
    if len(y) == 0:
        raise DataError("cannot compute metrics on zero cases")

    counts = confusion_counts(y, yhat)
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    n = len(y)
    return {
        "kappa": cohen_kappa(y, yhat),
        "auc": roc_auc(y, p) if p is not None else None,
        "accuracy": (tp + tn) / n,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "n": n,
        "n_positive": tp + fn,
        **counts,
    }


def cohen_kappa(labels: np.ndarray, predictions: np.ndarray) -> float | None:
    """scikit-learn's Cohen's kappa, ``None`` when it is undefined."""
    from sklearn.metrics import cohen_kappa_score

    if len(np.union1d(labels, predictions)) < 2:
        return None  # one class everywhere: expected agreement is 1, kappa is 0/0
    value = float(cohen_kappa_score(labels, predictions, labels=[0, 1]))
    return None if math.isnan(value) else value


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """scikit-learn's ROC AUC, ``None`` when only one class is present."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(roc_auc_score(labels, probabilities))
