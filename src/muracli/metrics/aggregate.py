"""From image probabilities to one probability and one decision per study.

MURA labels studies, not images, and a finding can be visible in some views
of a study and not in others, so evaluation happens at study level. Three
ways to combine the views of a study:

``mean``
    the arithmetic mean of the image probabilities (the MURA paper).
    Abnormal when the mean is ``>= threshold``.
``max``
    the largest image probability: one convincing view is enough.
    Abnormal when the max is ``>= threshold``.
``vote``
    every view votes abnormal when its probability is ``>= threshold``; the
    study probability is the *fraction* of abnormal votes. The study is
    abnormal when that fraction is ``>= 0.5`` - a tie (1 of 2 views) counts
    as abnormal, because missing a finding costs more than a second look.
    Here ``threshold`` is the *image* threshold; the study decision
    threshold on the fraction is always 0.5.

``decision_threshold(method, threshold)`` says which number the study
probability is compared with, and ``predict_labels`` applies it, so the ROC
operating point, the metrics and predictions.csv agree. ``aggregate_studies``
also returns the ``prediction`` column so callers never re-derive it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from muracli.choices import AGGREGATES as METHODS
from muracli.choices import check_choice
from muracli.data.layout import UNKNOWN_BODY_PART
from muracli.errors import DataError
from muracli.metrics.binary import as_labels, as_probabilities, check_threshold

if TYPE_CHECKING:
    import pandas as pd


#: The study decision threshold of ``vote``: abnormal when at least half the views vote abnormal.
VOTE_FRACTION = 0.5

#: Columns of ``aggregate_studies`` (and of predictions.csv).
STUDY_COLUMNS = ["study", "body_part", "label", "probability", "prediction", "n_images"]

_BODY_PART_RE = re.compile(r"XR_[A-Z]+")


def check_method(method: str) -> str:
    return check_choice(method, METHODS, "aggregation")


def decision_threshold(method: str, threshold: float = 0.5) -> float:
    """The number a study probability of ``method`` is compared with:
    ``threshold`` for mean and max, 0.5 (a fraction of views) for vote."""
    threshold = check_threshold(threshold)
    return VOTE_FRACTION if check_method(method) == "vote" else threshold


def predict_labels(probabilities: Any, threshold: float = 0.5, method: str = "mean") -> np.ndarray:
    """0/1 study decisions from study probabilities made by ``method``:
    abnormal (1) when the probability is ``>= decision_threshold(method, threshold)``."""
    p = as_probabilities(probabilities)
    return (p >= decision_threshold(method, threshold)).astype(np.int64)


def study_probability(probabilities: Any, method: str = "mean", threshold: float = 0.5) -> float:
    """One study's probability from its views' probabilities (the module docstring's rule),
    as ``aggregate_studies`` computes it for every study of a table."""
    p = as_probabilities(probabilities)
    if p.size == 0:
        raise DataError("a study needs at least one image probability")
    values, reduce = _view_values(p, method, threshold)
    return float(getattr(values, reduce)())


def _view_values(probabilities: np.ndarray, method: str, threshold: float) -> tuple[np.ndarray, str]:
    """The rule of each method: what is taken of each view, and how it is reduced over a study
    (``"mean"`` or ``"max"``, which numpy arrays and pandas groups both understand)."""
    if check_method(method) == "vote":
        return (probabilities >= threshold).astype(np.float64), "mean"
    return probabilities, method


def body_part_of(study: str) -> str:
    """The ``XR_*`` part of a MURA study path, else ``"unknown"``."""
    match = _BODY_PART_RE.search(str(study))
    return match.group(0) if match else UNKNOWN_BODY_PART


def aggregate_studies(images: "pd.DataFrame", method: str = "mean", threshold: float = 0.5) -> "pd.DataFrame":
    """One row per study from one row per image.

    ``images`` needs ``study`` and ``probability`` (of abnormal); ``label``
    (0/1, one per study) and ``body_part`` are used when present - without
    ``body_part`` it is read from the study path (``XR_WRIST``, else
    ``unknown``), without ``label`` the result has no label column (new,
    unlabelled studies). Other columns (view, path, ...) are image-level and
    dropped.

    Returns ``study, body_part, label, probability, prediction, n_images``,
    studies in order of first appearance. See the module docstring for the
    meaning of ``probability`` and ``prediction`` under each method.
    """
    import pandas as pd

    check_method(method)
    threshold = check_threshold(threshold)
    missing = [c for c in ("study", "probability") if c not in images.columns]
    if missing:
        raise DataError(f"image table lacks column(s): {', '.join(missing)}")
    if len(images) == 0:
        raise DataError("no images to aggregate", "is the split empty, or were all its images skipped?")
    if images["study"].isna().any():
        raise DataError("image table has rows without a study")

    studies = images["study"].to_numpy()
    frame = pd.DataFrame({"study": studies, "probability": as_probabilities(images["probability"])})
    frame["body_part"] = (
        images["body_part"].fillna(UNKNOWN_BODY_PART).to_numpy()
        if "body_part" in images.columns
        else [body_part_of(s) for s in studies]
    )
    has_label = "label" in images.columns
    if has_label:
        frame["label"] = as_labels(images["label"], "label")

    groups = frame.groupby("study", sort=False)
    for column, what in (("label", "labels"), ("body_part", "body parts")):
        if column not in frame.columns:
            continue
        distinct = groups[column].nunique(dropna=False)
        if (distinct > 1).any():
            bad = distinct[distinct > 1]
            raise DataError(
                f"{len(bad)} stud{'y has' if len(bad) == 1 else 'ies have'} images with different {what}, "
                f"e.g. {bad.index[0]}",
                "a study has one label and one body part; check the image table",
            )

    values, reduce = _view_values(frame["probability"].to_numpy(), method, threshold)
    probability = pd.Series(values, index=frame.index).groupby(frame["study"], sort=False).agg(reduce)

    result = pd.DataFrame(
        {
            "study": probability.index.to_numpy(),
            "body_part": groups["body_part"].first().to_numpy(),
            "probability": probability.to_numpy(dtype=np.float64),
            "n_images": groups.size().to_numpy(dtype=np.int64),
        }
    )
    if has_label:
        result["label"] = groups["label"].first().to_numpy(dtype=np.int64)
    result["prediction"] = predict_labels(result["probability"].to_numpy(), threshold, method)
    return result[[c for c in STUDY_COLUMNS if c in result.columns]]
