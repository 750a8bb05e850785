from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muracli.errors import ConfigError, DataError
from muracli.metrics import STUDY_COLUMNS, aggregate_studies, decision_threshold, predict_labels
from muracli.metrics.aggregate import body_part_of

from .builders import grid_probabilities, image_tables

thresholds = st.one_of(grid_probabilities, st.floats(0.0, 1.0, allow_nan=False))


def reference(images: pd.DataFrame, method: str, threshold: float) -> pd.DataFrame:
    """The same aggregation written directly with a pandas groupby."""
    groups = images.groupby("study", sort=False)
    if method == "mean":
        probability = groups["probability"].mean()
    elif method == "max":
        probability = groups["probability"].max()
    else:
        probability = groups["probability"].apply(lambda p: (p >= threshold).sum() / len(p))
    votes = groups["probability"].apply(lambda p: int((p >= threshold).sum()))
    n_images = groups.size()
    if method == "vote":
        prediction = (2 * votes >= n_images).astype(int)  # at least half the views: ties are abnormal
    else:
        prediction = (probability >= threshold).astype(int)
    return pd.DataFrame(
        {
            "study": probability.index,
            "body_part": groups["body_part"].first().to_numpy(),
            "label": groups["label"].first().to_numpy(),
            "probability": probability.to_numpy(),
            "prediction": prediction.to_numpy(),
            "n_images": n_images.to_numpy(),
        }
    )


@settings(max_examples=60, deadline=None)
@given(images=image_tables(), method=st.sampled_from(["mean", "max", "vote"]), threshold=thresholds)
def test_aggregation_equals_a_direct_groupby(images, method, threshold):
    result = aggregate_studies(images, method, threshold)
    expected = reference(images, method, threshold)

    assert list(result.columns) == STUDY_COLUMNS
    assert list(result["study"]) == list(pd.unique(images["study"]))  # order of first appearance
    assert list(result["body_part"]) == list(expected["body_part"])
    assert list(result["label"]) == list(expected["label"])
    assert list(result["n_images"]) == list(expected["n_images"])
    np.testing.assert_allclose(result["probability"], expected["probability"], rtol=0, atol=1e-12)
    if method != "mean":  # max and vote fractions are exact
        assert list(result["probability"]) == list(expected["probability"])
    assert list(result["prediction"]) == list(expected["prediction"])
    # the prediction column is what predict_labels says for the study probabilities
    assert list(result["prediction"]) == list(predict_labels(result["probability"], threshold, method))
    assert result["n_images"].sum() == len(images)


def test_vote_tie_is_abnormal_and_its_decision_threshold_is_a_half():
    images = pd.DataFrame(
        {
            "study": ["a", "a", "b", "b", "b", "c"],
            "label": [1, 1, 0, 0, 0, 0],
            "probability": [0.9, 0.1, 0.8, 0.2, 0.3, 0.6],
        }
    )
    result = aggregate_studies(images, "vote", threshold=0.5)
    assert result["probability"].tolist() == [0.5, 1 / 3, 1.0]
    assert result["prediction"].tolist() == [1, 0, 1]
    # a lower image threshold turns more views abnormal; the study rule stays "at least half"
    assert aggregate_studies(images, "vote", threshold=0.15)["prediction"].tolist() == [1, 1, 1]
    assert decision_threshold("vote", 0.15) == 0.5
    assert decision_threshold("mean", 0.15) == 0.15
    assert decision_threshold("max", 0.7) == 0.7
    assert predict_labels([0.5, 0.49], 0.9, "vote").tolist() == [1, 0]
    assert predict_labels([0.5, 0.49], 0.5, "mean").tolist() == [1, 0]  # >= threshold is abnormal


def test_mean_and_max():
    images = pd.DataFrame({"study": ["s", "s", "t"], "label": [1, 1, 0], "probability": [0.2, 0.6, 0.5]})
    mean = aggregate_studies(images)
    assert mean["probability"].tolist() == pytest.approx([0.4, 0.5])
    assert mean["prediction"].tolist() == [0, 1]
    assert aggregate_studies(images, "max")["probability"].tolist() == [0.6, 0.5]


def test_body_part_from_the_path_and_image_columns_dropped():
    images = pd.DataFrame(
        {
            "study": ["MURA-v1.1/valid/XR_WRIST/patient1/study1_positive/", "elsewhere/study7/"],
            "label": [1, 0],
            "probability": [0.7, 0.2],
            "view": [1, 1],
            "path": ["x.png", "y.png"],
        }
    )
    result = aggregate_studies(images)
    assert result["body_part"].tolist() == ["XR_WRIST", "unknown"]
    assert list(result.columns) == STUDY_COLUMNS
    assert body_part_of("MURA-v1.1/train/XR_HUMERUS/patient3/study2_negative/") == "XR_HUMERUS"


def test_unlabelled_images_give_no_label_column():
    images = pd.DataFrame({"study": ["a", "a", "b"], "probability": [0.7, 0.2, 0.9]})
    result = aggregate_studies(images)
    assert list(result.columns) == ["study", "body_part", "probability", "prediction", "n_images"]


def test_labels_may_be_bool_or_float():
    images = pd.DataFrame({"study": ["a", "b"], "label": [True, False], "probability": [0.7, 0.2]})
    assert aggregate_studies(images)["label"].tolist() == [1, 0]
    images["label"] = [1.0, 0.0]
    assert aggregate_studies(images)["label"].dtype == np.int64


@pytest.mark.parametrize(
    "images, message",
    [
        (pd.DataFrame({"study": [], "label": [], "probability": []}), "no images"),
        (pd.DataFrame({"study": ["a", "a"], "label": [0, 1], "probability": [0.1, 0.2]}), "different labels"),
        (
            pd.DataFrame(
                {"study": ["a", "a"], "body_part": ["XR_HAND", "XR_WRIST"], "label": [0, 0], "probability": [0.1, 0.2]}
            ),
            "different body parts",
        ),
        (pd.DataFrame({"study": ["a"], "label": [0]}), "probability"),
        (pd.DataFrame({"study": ["a"], "label": [2], "probability": [0.5]}), r"0 \(normal\) or 1"),
        (pd.DataFrame({"study": ["a"], "label": [1], "probability": [1.5]}), "in \\[0, 1\\]"),
        (pd.DataFrame({"study": ["a"], "label": [1], "probability": [float("nan")]}), "finite"),
        (pd.DataFrame({"study": [None], "label": [1], "probability": [0.5]}), "without a study"),
    ],
)
def test_bad_tables_are_data_errors(images, message):
    with pytest.raises(DataError, match=message):
        aggregate_studies(images)


def test_unknown_method_and_bad_threshold_are_config_errors():
    images = pd.DataFrame({"study": ["a"], "label": [1], "probability": [0.5]})
    with pytest.raises(ConfigError, match="unknown aggregation 'median'") as info:
        aggregate_studies(images, "median")
    assert "mean, max, vote" in info.value.hint
    with pytest.raises(ConfigError):
        aggregate_studies(images, threshold=1.5)
    with pytest.raises(ConfigError):
        predict_labels([0.5], 0.5, "median")
