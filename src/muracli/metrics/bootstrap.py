"""Percentile bootstrap confidence intervals over studies.

The unit of resampling is the study (MURA's unit of labelling and of
evaluation), so these functions take study-level arrays: one label, one
probability and optionally one decision per study. Each resample draws as
many studies as there are, with replacement; every metric is recomputed on
it; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
percentiles of the resampled values (plain percentile bootstrap, numpy's
default linear interpolation). Resamples on which a metric is undefined
(AUC or sensitivity with no abnormal study drawn, ...) are left out of that
metric's interval; a metric undefined on every resample has no interval.

Speed: a resample is a vector of counts (how often each study was drawn),
so the confusion counts of all resamples are one matrix product and AUC is
the Mann-Whitney statistic with tied scores counted half, summed per tie
group - the value scikit-learn's ``roc_auc_score`` gives on the same
resample. n=1000 on 1,200 studies takes a fraction of a second.

Reproducible: the same data, ``n`` and ``seed`` give the same intervals
(numpy ``Generator`` seeded with ``seed``).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from muracli.errors import ConfigError, DataError
from muracli.metrics.binary import SCORES, as_labels, as_probabilities, check_threshold

# Resamples are processed in blocks of about this many (resample, study) cells to bound
# memory; the block size depends only on the number of studies, so results do not.
_BLOCK_CELLS = 1 << 20


def check_bootstrap(n: int, level: float | None = None) -> None:
    """ConfigError unless ``n`` is a positive integer and ``level`` in (0, 1)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"the number of bootstrap resamples must be a positive integer, got {n!r}")
    if level is not None and not 0.0 < level < 1.0:
        raise ConfigError(f"the confidence level must be between 0 and 1, got {level!r}", "0.95 for 95% intervals")


def _index_blocks(n_items: int, n: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = max(1, _BLOCK_CELLS // max(n_items, 1))
    for start in range(0, n, rows):
        yield rng.integers(0, n_items, size=(min(rows, n - start), n_items))


def resample_indices(n_items: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """The ``(n, n_items)`` study indices of the resamples that
    ``bootstrap_distribution`` uses for the same ``n`` and ``seed``."""
    check_bootstrap(n)
    return np.concatenate(list(_index_blocks(n_items, n, seed)), axis=0)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _scores(weights: np.ndarray, y: np.ndarray, yhat: np.ndarray, auc_parts: tuple | None) -> dict[str, np.ndarray]:
    """Every score for each row of ``weights`` (how often each study was drawn)."""
    indicators = np.stack(
        [(y == 1) & (yhat == 1), (y == 0) & (yhat == 1), (y == 0) & (yhat == 0), (y == 1) & (yhat == 0)], axis=1
    )
    tp, fp, tn, fn = (weights @ indicators.astype(np.float64)).T
    total = tp + fp + tn + fn
    # Cohen's kappa as scikit-learn computes it with 2 classes: 1 - observed / expected disagreement.
    expected = (tn + fn) * (tp + fn) + (tp + fp) * (tn + fp)
    scores = {
        "kappa": 1.0 - _divide(total * (fp + fn), expected),
        "accuracy": (tp + tn) / total,
        "sensitivity": _divide(tp, tp + fn),
        "specificity": _divide(tn, tn + fp),
        "precision": _divide(tp, tp + fp),
        "f1": _divide(2 * tp, 2 * tp + fp + fn),
    }
    if auc_parts is None:
        scores["auc"] = np.full(len(weights), np.nan)
    else:
        order, y_sorted, starts = auc_parts
        sorted_weights = weights[:, order]
        positive = sorted_weights * y_sorted
        negative = sorted_weights - positive
        pos_groups = np.add.reduceat(positive, starts, axis=1)  # weight of each tie group of scores
        neg_groups = np.add.reduceat(negative, starts, axis=1)
        below = np.cumsum(neg_groups, axis=1) - neg_groups  # negatives scored strictly lower
        u = (pos_groups * (below + 0.5 * neg_groups)).sum(axis=1)  # Mann-Whitney U, ties count half
        scores["auc"] = _divide(u, pos_groups.sum(axis=1) * neg_groups.sum(axis=1))
    return scores


def bootstrap_distribution(
    labels: Any,
    probabilities: Any,
    threshold: float = 0.5,
    *,
    n: int = 1000,
    seed: int = 0,
    predictions: Any = None,
) -> dict[str, np.ndarray]:
    """Each score of ``binary_metrics`` on each of ``n`` study resamples:
    ``{metric: float array (n,)}``, NaN where the metric is undefined on a
    resample. Resample ``i`` is row ``i`` of ``resample_indices(len(labels), n, seed)``.
    ``probabilities`` may be ``None`` when ``predictions`` is given (no AUC)."""
    check_bootstrap(n)
    y = as_labels(labels)
    if len(y) == 0:
        raise DataError("cannot bootstrap zero studies")
    p = None if probabilities is None else as_probabilities(probabilities)
    if predictions is not None:
        yhat = as_labels(predictions, "predictions")
    elif p is not None:
        yhat = (p >= check_threshold(threshold)).astype(np.int64)
    else:
        raise DataError("bootstrap needs probabilities or predictions")
    for name, other in (("probabilities", p), ("predictions", yhat)):
        if other is not None and len(other) != len(y):
            raise DataError(f"{name} has {len(other)} values but labels has {len(y)}")

    auc_parts = None
    if p is not None:
        order = np.argsort(p, kind="stable")
        p_sorted = p[order]
        starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])
        auc_parts = (order, y[order].astype(np.float64), starts)

    n_items = len(y)
    blocks = []
    for indices in _index_blocks(n_items, n, seed):
        rows = len(indices)
        flat = (indices + np.arange(rows)[:, None] * n_items).ravel()
        weights = np.bincount(flat, minlength=rows * n_items).reshape(rows, n_items).astype(np.float64)
        blocks.append(_scores(weights, y, yhat, auc_parts))
    return {name: np.concatenate([block[name] for block in blocks]) for name in SCORES}


def bootstrap_intervals(
    labels: Any,
    probabilities: Any,
    threshold: float = 0.5,
    *,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    predictions: Any = None,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap intervals over studies for every score of
    ``binary_metrics``: ``{metric: (low, high)}``, ``None`` for a metric that
    is undefined on every resample (e.g. AUC when one class is absent).
    Arguments as ``binary_metrics``; ``n`` resamples, ``level`` the coverage."""
    check_bootstrap(n, level)
    distribution = bootstrap_distribution(labels, probabilities, threshold, n=n, seed=seed, predictions=predictions)
    return {name: percentile_interval(values, level) for name, values in distribution.items()}


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` percentile interval of resampled ``values``, the undefined (NaN) ones left
    out; None when every one is undefined."""
    defined = values[~np.isnan(values)]
    if len(defined) == 0:
        return None
    low, high = np.percentile(defined, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)
