from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from muracli.errors import ConfigError, DataError
from muracli.metrics import (
    SCORES,
    STUDY_COLUMNS,
    aggregate_studies,
    binary_metrics,
    evaluation_report,
    jsonable,
    study_predictions,
)

from .builders import make_images

COUNTS = ("n", "n_positive", "tp", "fp", "tn", "fn")


def plain(value) -> bool:
    """Only JSON's own types, all the way down."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_report_structure_without_bootstrap(images):
    report = evaluation_report(images, split="valid")
    assert list(report) == [
        "split", "aggregate", "threshold", "decision_threshold", "n_studies", "n_images",
        "bootstrap", "overall", "by_body_part", "image_level", "calibration",
    ]
    assert report["split"] == "valid" and report["aggregate"] == "mean" and report["threshold"] == 0.5
    assert report["n_studies"] == images["study"].nunique() == report["overall"]["n"]
    assert report["n_images"] == len(images) == report["overall"]["n_images"]
    assert report["bootstrap"] is None
    assert list(report["by_body_part"]) == sorted(images["body_part"].unique())
    for block in [report["overall"], *report["by_body_part"].values()]:
        assert set(SCORES) | set(COUNTS) | {"n_images"} == set(block)
    assert sum(b["n"] for b in report["by_body_part"].values()) == report["n_studies"]
    assert sum(b["n_images"] for b in report["by_body_part"].values()) == report["n_images"]
    assert report["image_level"]["n"] == len(images)
    assert plain(report)
    json.dumps(report, allow_nan=False)


def test_report_numbers_are_the_metrics_of_the_study_predictions(images):
    report = evaluation_report(images, split="valid", aggregate="max", threshold=0.6)
    studies = study_predictions(images, "max", 0.6)
    overall = binary_metrics(studies["label"], studies["probability"], 0.6)
    assert {k: report["overall"][k] for k in overall} == overall
    wrist = studies[studies["body_part"] == "XR_WRIST"]
    wrist_kappa = binary_metrics(wrist["label"], wrist["probability"], 0.6)["kappa"]
    assert report["by_body_part"]["XR_WRIST"]["kappa"] == wrist_kappa
    assert report["image_level"] == binary_metrics(images["label"], images["probability"], 0.6)


def test_vote_reports_its_decision_threshold_and_uses_the_prediction_column(images):
    report = evaluation_report(images, split="valid", aggregate="vote", threshold=0.3)
    assert report["threshold"] == 0.3 and report["decision_threshold"] == 0.5
    studies = aggregate_studies(images, "vote", 0.3)
    assert report["overall"]["tp"] == int(((studies["label"] == 1) & (studies["prediction"] == 1)).sum())


def test_bootstrap_adds_intervals_overall_and_per_body_part(images):
    report = evaluation_report(images, split="valid", bootstrap=200, seed=3)
    assert report["bootstrap"]["n"] == 200 and report["bootstrap"]["seed"] == 3
    assert report["bootstrap"]["level"] == 0.95 and "percentile" in report["bootstrap"]["method"]
    for block in [report["overall"], *report["by_body_part"].values()]:
        assert set(block["ci"]) == set(SCORES)
        for name, interval in block["ci"].items():
            low, high = interval
            assert low <= high
            assert low <= block[name] <= high, name
    assert "ci" not in report["image_level"]
    assert evaluation_report(images, split="valid", bootstrap=200, seed=3) == report
    json.dumps(report, allow_nan=False)


def test_a_body_part_with_one_class_is_still_valid_json():
    images = make_images(90)
    images.loc[images["body_part"] == "XR_FINGER", "label"] = 0
    report = evaluation_report(images, split="valid", bootstrap=100)
    finger = report["by_body_part"]["XR_FINGER"]
    assert finger["auc"] is None and finger["sensitivity"] is None
    assert finger["ci"]["auc"] is None and finger["ci"]["sensitivity"] is None
    assert finger["n_positive"] == 0
    json.dumps(report, allow_nan=False)


def test_study_predictions_are_the_predictions_csv_rows(images, tmp_path):
    studies = study_predictions(images, "mean", 0.5)
    assert list(studies.columns) == STUDY_COLUMNS
    assert len(studies) == images["study"].nunique()
    studies.to_csv(tmp_path / "predictions.csv", index=False)
    back = pd.read_csv(tmp_path / "predictions.csv")
    assert list(back.columns) == STUDY_COLUMNS and back["prediction"].isin([0, 1]).all()


def test_report_errors(images):
    with pytest.raises(DataError, match="label"):
        evaluation_report(images.drop(columns="label"), split="valid")
    with pytest.raises(ConfigError):
        evaluation_report(images, split="valid", aggregate="median")
    with pytest.raises(ConfigError):
        evaluation_report(images, split="valid", bootstrap=-1)
    with pytest.raises(DataError):
        evaluation_report(images.iloc[:0], split="valid")


def test_jsonable_turns_numpy_and_nan_into_json():
    value = {
        "a": np.float32(0.5),
        "b": np.int64(3),
        "c": (1.0, float("nan")),
        "d": np.array([1, 2]),
        "e": np.bool_(True),
    }
    assert jsonable(value) == {"a": 0.5, "b": 3, "c": [1.0, None], "d": [1, 2], "e": True}
    assert plain(jsonable(value))
