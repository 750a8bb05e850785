"""Whether probabilities mean what they say, and operating points: pure functions on arrays.

Calibration
    ``brier_score`` is the mean squared difference between probability and
    label. ``reliability_bins`` puts the probabilities into ``ECE_BINS`` (15)
    equal-width bins of [0, 1] (bin ``i`` holds ``i/15 <= p < (i+1)/15``, the
    last one also ``p = 1``) and gives each bin's count, mean probability and
    observed frequency of abnormal; ``expected_calibration_error`` is the
    count-weighted mean of ``|mean probability - observed frequency|`` over
    the bins (Guo et al. 2017; MONAI's ``CalibrationErrorMetric`` with
    ``reduction="mean"`` and equal-width bins).

Temperature scaling
    A two-class softmax is ``p = sigmoid(z1 - z0)``; dividing both logits by
    one temperature ``T`` gives ``p = sigmoid((z1 - z0) / T)``, so the
    ranking of the cases never changes and only how sure the model sounds
    does. ``fit_temperature`` finds the ``T`` that minimises the binary
    negative log-likelihood of ``(log_odds, labels)`` by golden-section
    search on ``log T`` within ``TEMPERATURE_BOUNDS``. The NLL is convex in
    ``1/T`` (a logistic regression with one slope), so it is unimodal in
    ``log T`` and the search finds the minimum to ``1e-6`` in ``log T``
    without gradients, a line search or torch: a scalar fit, done in numpy
    where the other metrics live.

Operating points
    ``operating_threshold`` chooses the threshold (abnormal when
    ``p >= threshold``) among the probabilities themselves: ``youden``
    maximises sensitivity + specificity - 1 (the highest threshold of the
    best when several tie), ``sensitivity=S`` is the highest threshold whose
    sensitivity is at least ``S`` (the most specific one that keeps ``S``),
    ``specificity=S`` the lowest whose specificity is at least ``S`` (the
    most sensitive one that keeps ``S``). Cases tied at the threshold are
    all abnormal, so a tie can take sensitivity above ``S``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from muracli.choices import OPERATING_POINTS, check_choice
from muracli.errors import ConfigError, DataError
from muracli.metrics.binary import as_labels, as_probabilities

#: The number of equal-width bins of the expected calibration error and the reliability diagram.
ECE_BINS = 15
#: What the bins are, in words, for reports.
BINNING = f"{ECE_BINS} equal-width bins of the predicted probability on [0, 1]"
#: The range ``fit_temperature`` searches.
TEMPERATURE_BOUNDS = (0.05, 20.0)
#: How ``fit_temperature`` works, for calibration.json.
TEMPERATURE_METHOD = "golden-section search on log T minimising the binary NLL of sigmoid(log-odds / T)"


def _pair(labels: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    y, p = as_labels(labels), as_probabilities(probabilities)
    if len(y) != len(p):
        raise DataError(f"probabilities has {len(p)} values but labels has {len(y)}")
    if len(y) == 0:
        raise DataError("cannot measure calibration on zero cases")
    return y, p


def brier_score(labels: Any, probabilities: Any) -> float:
    """The mean of ``(probability - label)**2``: 0 is perfect, 0.25 is always saying 0.5."""
    y, p = _pair(labels, probabilities)
    return float(np.mean((p - y) ** 2))


def reliability_bins(labels: Any, probabilities: Any, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """One dict per equal-width bin: ``low``, ``high``, ``n``, ``mean_probability`` and
    ``observed_frequency`` (of label 1; both ``None`` in an empty bin)."""
    y, p = _pair(labels, probabilities)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], p, side="right")  # p == edge goes to the bin above; 1.0 to the last
    counts = np.bincount(which, minlength=bins)
    sums = np.bincount(which, weights=p, minlength=bins)
    hits = np.bincount(which, weights=y.astype(np.float64), minlength=bins)
    rows = []
    for i in range(bins):
        n = int(counts[i])
        rows.append({
            "low": float(edges[i]), "high": float(edges[i + 1]), "n": n,
            "mean_probability": float(sums[i] / n) if n else None,
            "observed_frequency": float(hits[i] / n) if n else None,
        })
    return rows


def expected_calibration_error(labels: Any, probabilities: Any, bins: int = ECE_BINS) -> float:
    """``sum over bins of n_bin / n * |mean probability - observed frequency|`` (see ``reliability_bins``)."""
    rows = reliability_bins(labels, probabilities, bins)
    total = sum(row["n"] for row in rows)
    return float(sum(row["n"] / total * abs(row["mean_probability"] - row["observed_frequency"])
                     for row in rows if row["n"]))


def calibration_block(labels: Any, probabilities: Any, *, with_bins: bool = False) -> dict[str, Any]:
    """``n``, ``brier`` and ``ece`` (``ECE_BINS`` bins), with the bins themselves when ``with_bins``."""
    y, p = _pair(labels, probabilities)
    block: dict[str, Any] = {"n": len(y), "brier": brier_score(y, p), "ece": expected_calibration_error(y, p)}
    if with_bins:
        block["bins"] = reliability_bins(y, p)
    return block


# -- temperature scaling ---------------------------------------------------------------------


def scaled_probabilities(log_odds: Any, temperature: float = 1.0) -> np.ndarray:
    """``sigmoid(log_odds / temperature)`` in float64, without overflow at either end."""
    x = np.asarray(log_odds, dtype=np.float64) / float(temperature)
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    e = np.exp(x[~positive])
    out[~positive] = e / (1.0 + e)
    return out


def log_odds_nll(log_odds: Any, labels: Any, temperature: float = 1.0) -> float:
    """The mean binary negative log-likelihood of ``sigmoid(log_odds / temperature)`` against ``labels``."""
    z = np.asarray(log_odds, dtype=np.float64)
    sign = 2.0 * as_labels(labels) - 1.0
    return float(np.mean(np.logaddexp(0.0, -sign * z / float(temperature))))


def fit_temperature(log_odds: Any, labels: Any, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> dict[str, Any]:
    """The temperature of least NLL on ``(log_odds, labels)``: ``temperature``, ``n``,
    ``nll_before`` (T = 1), ``nll_after`` and ``at_bound`` (the minimum lies at an end of ``bounds``,
    e.g. on a split the model separates perfectly). Both classes must be present."""
    z = np.asarray(log_odds, dtype=np.float64)
    y = as_labels(labels)
    if len(z) != len(y) or len(y) == 0:
        raise DataError(f"temperature scaling needs one log-odds per label, got {len(z)} and {len(y)}")
    if not np.isfinite(z).all():
        raise DataError("temperature scaling needs finite log-odds")
    if len(np.unique(y)) < 2:
        raise DataError("temperature scaling needs both normal and abnormal cases on the split it is fitted on")

    def nll(u: float) -> float:
        return log_odds_nll(z, y, math.exp(u))

    low, high = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = low + (1 - ratio) * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    while high - low > 1e-6:
        if fa <= fb:
            high, b, fb = b, a, fa
            a = low + (1 - ratio) * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    u = (low + high) / 2.0
    temperature = math.exp(u)
    before, after = log_odds_nll(z, y, 1.0), nll(u)
    if before < after:  # T = 1 lies outside the bounds' optimum only by rounding: never make it worse
        temperature, after = 1.0, before
    at_bound = min(abs(u - math.log(bounds[0])), abs(u - math.log(bounds[1]))) < 1e-4
    return {"temperature": temperature, "n": len(y), "nll_before": before, "nll_after": after, "at_bound": at_bound}


# -- operating points --------------------------------------------------------------------------


def parse_operating_point(text: str) -> tuple[str, float | None]:
    """``youden`` -> ("youden", None); ``sensitivity=0.95`` -> ("sensitivity", 0.95); ConfigError otherwise."""
    hint = "youden, sensitivity=S or specificity=S with 0 < S <= 1, e.g. sensitivity=0.95"
    name, sep, value = str(text).strip().partition("=")
    check_choice(name, OPERATING_POINTS, "operating point")
    if name == "youden":
        if sep:
            raise ConfigError(f"--operating-point youden takes no value, got {text!r}", hint)
        return name, None
    try:
        target = float(value)
    except ValueError:
        raise ConfigError(f"--operating-point {name}=S needs a number S, got {text!r}", hint) from None
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"--operating-point {name}=S needs 0 < S <= 1, got {value}", hint)
    return name, target


def operating_point_name(name: str, target: float | None) -> str:
    """``youden`` or ``sensitivity=0.95``: a rule as reports write it."""
    return name if target is None else f"{name}={target:g}"


def operating_threshold(labels: Any, probabilities: Any, rule: str) -> dict[str, Any]:
    """The threshold ``rule`` (see ``parse_operating_point``) chooses on ``(labels, probabilities)``:
    ``rule``, ``threshold``, and the ``sensitivity`` and ``specificity`` it gives there. A DataError
    when the cases are all of one class (sensitivity or specificity is undefined)."""
    name, target = parse_operating_point(rule)
    canonical = operating_point_name(name, target)
    y, p = _pair(labels, probabilities)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if not positives or not negatives:
        only = "abnormal" if positives else "normal"
        raise DataError(
            f"cannot choose an operating point on {len(y)} studies that are all {only}: "
            "sensitivity and specificity need both classes",
            "choose it on a split with normal and abnormal studies (a larger --select-on fraction)",
        )
    candidates = np.unique(p)  # ascending; abnormal when p >= candidate
    order = np.sort(p[y == 1])
    tp = positives - np.searchsorted(order, candidates, side="left")  # positives with p >= t
    tn = np.searchsorted(np.sort(p[y == 0]), candidates, side="left")  # negatives with p < t
    sensitivity, specificity = tp / positives, tn / negatives
    if name == "youden":
        youden = sensitivity + specificity
        pick = int(np.flatnonzero(youden >= youden.max() - 1e-12)[-1])
    elif name == "sensitivity":
        pick = int(np.flatnonzero(tp >= target * positives - 1e-9)[-1])  # t = min(p) always qualifies
    else:
        ok = np.flatnonzero(tn >= target * negatives - 1e-9)
        if len(ok) == 0:  # only a threshold above every study reaches it
            above = float(np.nextafter(p.max(), 2.0))
            if above > 1.0:
                raise DataError(f"no threshold in [0, 1] reaches specificity {target:g}: normal studies score 1.0")
            return {"rule": canonical, "threshold": above, "sensitivity": 0.0, "specificity": 1.0}
        pick = int(ok[0])
    return {"rule": canonical, "threshold": float(candidates[pick]), "sensitivity": float(sensitivity[pick]),
            "specificity": float(specificity[pick])}
