"""Paired bootstrap of the difference between two models on the same studies.

Two runs scored on the same split are compared study by study: each
resample draws the *same* studies for both runs (one index matrix, applied
to both runs' study arrays), the metric of each run is recomputed on it, and
the interval is the percentile interval of the difference ``b - a`` over
the resamples. Pairing removes the between-study variation that both runs
share, so the interval is the one for "is b better than a on this data",
not the overlap of two separate intervals.

The resampling is ``metrics.bootstrap``'s: ``bootstrap_distribution`` with
the same ``n`` and ``seed`` draws the same index matrix for any two arrays
of the same length, so the per-resample differences are paired by
construction. Resamples on which either run's metric is undefined are left
out of that metric's interval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from muracli.errors import DataError
from muracli.metrics.binary import as_labels, binary_metrics
from muracli.metrics.bootstrap import bootstrap_distribution, check_bootstrap, percentile_interval

if TYPE_CHECKING:
    import pandas as pd

#: The metrics a paired comparison reports.
PAIRED_METRICS = ("kappa", "auc")


def paired_bootstrap(
    labels: Any,
    probs_a: Any,
    probs_b: Any,
    threshold_a: float = 0.5,
    threshold_b: float = 0.5,
    *,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    predictions_a: Any = None,
    predictions_b: Any = None,
) -> dict[str, tuple[float, float, float] | None]:
    """``{metric: (delta, low, high)}`` of ``b - a`` for kappa and AUC over paired study resamples.

    ``labels`` and both runs' probabilities are study-level arrays in the same study order.
    ``predictions_*`` (0/1) override ``probs >= threshold`` for kappa, as in ``binary_metrics``
    (vote aggregation). ``delta`` is the difference on all studies; ``(low, high)`` the
    ``level`` percentile interval of the resampled differences. ``None`` for a metric
    undefined on all studies for either run (e.g. AUC with one class).
    """
    check_bootstrap(n, level)
    y = as_labels(labels)
    point_a = binary_metrics(y, probs_a, threshold_a, predictions=predictions_a)
    point_b = binary_metrics(y, probs_b, threshold_b, predictions=predictions_b)
    dist_a = bootstrap_distribution(y, probs_a, threshold_a, n=n, seed=seed, predictions=predictions_a)
    dist_b = bootstrap_distribution(y, probs_b, threshold_b, n=n, seed=seed, predictions=predictions_b)
    result: dict[str, tuple[float, float, float] | None] = {}
    for metric in PAIRED_METRICS:
        interval = percentile_interval(dist_b[metric] - dist_a[metric], level)
        if point_a[metric] is None or point_b[metric] is None or interval is None:
            result[metric] = None
            continue
        result[metric] = (point_b[metric] - point_a[metric], *interval)
    return result


def reading(interval: tuple[float, float, float] | None) -> str:
    """How to read a difference's interval: ``excludes 0``, ``includes 0`` or ``-`` (none)."""
    if interval is None:
        return "-"
    _, low, high = interval
    return "includes 0" if low <= 0.0 <= high else "excludes 0"


def paired_studies(baseline: "pd.DataFrame", other: "pd.DataFrame", names: tuple[str, str] = ("a", "b")) -> "pd.DataFrame":
    """Two runs' study tables (``study, label, probability, prediction``) matched by study id:
    one row per study with ``label``, ``probability_a``/``_b`` and ``prediction_a``/``_b``.

    ``DataError`` when the two runs were scored on different studies or disagree on a label.
    """
    a, b = (table.set_index("study") for table in (baseline, other))
    for name, table in zip(names, (a, b)):
        if table.index.has_duplicates:
            raise DataError(f"{name} has a study twice in its predictions")
    if set(a.index) != set(b.index):
        only_a, only_b = len(set(a.index) - set(b.index)), len(set(b.index) - set(a.index))
        raise DataError(
            f"{names[0]} and {names[1]} were scored on different studies "
            f"({only_a} only in {names[0]}, {only_b} only in {names[1]})",
            "compare runs evaluated on the same data and body parts (one --data or --manifest for all)",
        )
    b = b.loc[a.index]
    if (a["label"].to_numpy() != b["label"].to_numpy()).any():
        raise DataError(f"{names[0]} and {names[1]} disagree on the labels of the same studies",
                        "compare runs evaluated on the same data")
    import pandas as pd

    return pd.DataFrame({
        "study": a.index, "label": a["label"].to_numpy(),
        "probability_a": a["probability"].to_numpy(), "probability_b": b["probability"].to_numpy(),
        "prediction_a": a["prediction"].to_numpy(), "prediction_b": b["prediction"].to_numpy(),
    }).sort_values("study", kind="stable").reset_index(drop=True)
