"""Study-level evaluation: aggregation of image probabilities, metrics,
bootstrap intervals, the metrics.json report and its figures.

Pure functions on tables and arrays; no model code. Importing this package
loads numpy only - pandas, scikit-learn and matplotlib are imported by the
functions that need them.
"""

from muracli.metrics.aggregate import (
    METHODS,
    STUDY_COLUMNS,
    aggregate_studies,
    body_part_of,
    decision_threshold,
    predict_labels,
)
from muracli.choices import METRICS
from muracli.metrics.binary import SCORES, binary_metrics
from muracli.metrics.bootstrap import bootstrap_distribution, bootstrap_intervals, resample_indices
from muracli.metrics.calibration import brier_score, expected_calibration_error, fit_temperature, operating_threshold
from muracli.metrics.plots import confusion_png, curves_png, reliability_png, roc_curve_png
from muracli.metrics.report import evaluation_report, jsonable, study_predictions

__all__ = [
    "METHODS",
    "METRICS",
    "SCORES",
    "STUDY_COLUMNS",
    "aggregate_studies",
    "binary_metrics",
    "body_part_of",
    "bootstrap_distribution",
    "bootstrap_intervals",
    "brier_score",
    "confusion_png",
    "curves_png",
    "decision_threshold",
    "evaluation_report",
    "expected_calibration_error",
    "fit_temperature",
    "jsonable",
    "operating_threshold",
    "predict_labels",
    "reliability_png",
    "resample_indices",
    "roc_curve_png",
    "study_predictions",
]
