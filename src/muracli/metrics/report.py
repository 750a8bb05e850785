"""The study-level evaluation of a split: metrics.json and predictions.csv (see the README's file formats).

``evaluation_report`` turns one row per image (study, body_part, label,
probability) into plain, JSON-ready data: the metrics over all studies, per
body part and at image level, with percentile bootstrap intervals over
studies when asked. Undefined values are ``None``; nothing is NaN or a numpy
scalar, so ``json.dumps(report, allow_nan=False)`` works.

``calibration`` holds the Brier score and the expected calibration error
(``metrics.calibration``: 15 equal-width bins) of the study and the image
probabilities, and the study bins of the reliability diagram.

Image-level metrics get no intervals: the views of one study are not
independent, so resampling images would give intervals that are too narrow.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from muracli.errors import DataError
from muracli.metrics.aggregate import aggregate_studies, check_method, decision_threshold
from muracli.metrics.binary import binary_metrics, check_threshold
from muracli.metrics.bootstrap import bootstrap_intervals, check_bootstrap

if TYPE_CHECKING:
    import pandas as pd

BOOTSTRAP_METHOD = "percentile bootstrap, studies resampled with replacement"


def study_predictions(images: "pd.DataFrame", aggregate: str = "mean", threshold: float = 0.5) -> "pd.DataFrame":
    """The rows of predictions.csv: ``study, body_part, label, probability,
    prediction, n_images``, one per study in order of first appearance
    (``label`` only when the images have labels). See ``aggregate_studies``."""
    return aggregate_studies(images, aggregate, threshold)


def evaluation_report(
    images: "pd.DataFrame | None",
    *,
    split: str,
    aggregate: str = "mean",
    threshold: float = 0.5,
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
    studies: "pd.DataFrame | None" = None,
) -> dict[str, Any]:
    """The content of metrics.json for one split.

    ``threshold`` is the image threshold (and the study threshold for mean
    and max; vote decides on the fraction of views at 0.5, reported as
    ``decision_threshold``). ``bootstrap`` > 0 adds ``"ci": {metric: [low,
    high]}`` to the overall and per-body-part blocks (``None`` for a metric
    with no defined resample). ``studies`` may pass the result of
    ``study_predictions`` for the same arguments to skip recomputing it.

    A study model scores studies directly: pass ``images=None`` and its
    ``studies`` (with a ``prediction`` column); ``aggregate`` is then only
    recorded, the decision threshold is ``threshold`` and ``image_level`` is
    ``None``.
    """
    threshold = check_threshold(threshold)
    if images is None:
        if studies is None:
            raise DataError("evaluation needs image or study probabilities")
        study_threshold = threshold
    else:
        check_method(aggregate)
        if "label" not in images.columns:
            raise DataError("evaluation needs labelled images (a label column)")
        if studies is None:
            studies = aggregate_studies(images, aggregate, threshold)
        study_threshold = decision_threshold(aggregate, threshold)
    if bootstrap:
        check_bootstrap(bootstrap, level)

    def block(rows: "pd.DataFrame", n_images: int) -> dict[str, Any]:
        labels = rows["label"].to_numpy()
        probabilities = rows["probability"].to_numpy()
        predictions = rows["prediction"].to_numpy()
        metrics = binary_metrics(labels, probabilities, study_threshold, predictions=predictions)
        metrics["n_images"] = int(n_images)
        if bootstrap:
            intervals = bootstrap_intervals(
                labels, probabilities, study_threshold, n=bootstrap, seed=seed, level=level, predictions=predictions
            )
            metrics["ci"] = {name: None if ci is None else [ci[0], ci[1]] for name, ci in intervals.items()}
        return metrics

    by_body_part = {
        str(part): block(rows, rows["n_images"].sum())
        for part, rows in sorted(studies.groupby("body_part"), key=lambda item: str(item[0]))
    }
    image_level = (
        None if images is None
        else binary_metrics(images["label"].to_numpy(), images["probability"].to_numpy(), threshold)
    )

    report = {
        "split": str(split),
        "aggregate": aggregate,
        "threshold": threshold,
        "decision_threshold": study_threshold,
        "n_studies": len(studies),
        "n_images": int(studies["n_images"].sum()) if images is None else len(images),
        "bootstrap": (
            {"n": int(bootstrap), "seed": int(seed), "level": float(level), "method": BOOTSTRAP_METHOD}
            if bootstrap
            else None
        ),
        "overall": block(studies, studies["n_images"].sum()),
        "by_body_part": by_body_part,
        "image_level": image_level,
        "calibration": calibration_report(studies, images),
    }
    return jsonable(report)


def calibration_report(studies: "pd.DataFrame", images: "pd.DataFrame | None") -> dict[str, Any]:
    """metrics.json's ``calibration``: Brier and ECE of the study probabilities (with the
    reliability bins) and of the image probabilities (``None`` for a study model)."""
    from muracli.metrics.calibration import BINNING, ECE_BINS, calibration_block

    return {
        "bins": ECE_BINS,
        "binning": BINNING,
        "study": calibration_block(studies["label"], studies["probability"], with_bins=True),
        "image": None if images is None else calibration_block(images["label"], images["probability"]),
    }


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists,
    tuples as lists and NaN/inf as ``None``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value
