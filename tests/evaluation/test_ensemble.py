"""Ensembles on a split (evaluation.ensemble): the mean of the members' image probabilities."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from muracli.evaluation.ensemble import evaluate_ensemble
from muracli.evaluation.evaluate import evaluate_run


@pytest.fixture(scope="module")
def members(trained_run, small_run, tmp_path_factory):
    """Each member's own `mura evaluate --out` folder: a 32 px and a 16 px cnn."""
    folders = {}
    for name, run in (("cnn32", trained_run), ("cnn16", small_run)):
        folders[name] = tmp_path_factory.mktemp(name)
        evaluate_run(run, bootstrap=50, seed=1, device="cpu", out=folders[name])
    return folders


@pytest.fixture(scope="module")
def ensemble(trained_run, small_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble")
    return evaluate_ensemble([trained_run, small_run], bootstrap=50, seed=1, device="cpu", out=out), out


def test_a_run_with_itself_equals_the_run(trained_run, synthetic_cache, tmp_path):
    single = evaluate_run(trained_run, cache=synthetic_cache.path, bootstrap=50, seed=1, device="cpu")
    twice = evaluate_ensemble([trained_run, trained_run], cache=synthetic_cache.path, bootstrap=50, seed=1,
                              device="cpu", out=tmp_path)
    assert twice.images["probability"].tolist() == single.images["probability"].tolist()
    assert twice.images["path"].tolist() == single.images["path"].tolist()
    pd.testing.assert_frame_equal(twice.studies, single.studies)
    for key in ("overall", "by_body_part", "image_level", "bootstrap", "n_studies", "n_images", "aggregate"):
        assert twice.report[key] == single.report[key], key
    assert [m["checkpoint"] for m in twice.report["members"]] == [single.report["checkpoint"]] * 2
    assert twice.report["image_size"] == 32 and twice.report["checkpoint"] is None


def test_the_image_probabilities_are_the_mean_of_the_members_own_outputs(ensemble, members):
    evaluation, out = ensemble
    written = pd.read_csv(out / "image_predictions.csv")
    own = [pd.read_csv(folder / "image_predictions.csv").set_index("path") for folder in members.values()]
    assert set(own[0].index) == set(own[1].index) == set(written["path"])
    expected = (own[0].loc[written["path"], "probability"].to_numpy() + own[1].loc[written["path"], "probability"].to_numpy()) / 2
    assert written["probability"].to_numpy() == pytest.approx(expected, abs=1e-12)
    studies = pd.read_csv(out / "predictions.csv").set_index("study")
    per_study = written.groupby("study")["probability"].mean()
    assert studies.loc[per_study.index, "probability"].to_numpy() == pytest.approx(per_study.to_numpy(), abs=1e-12)
    assert (studies["prediction"] == (studies["probability"] >= 0.5)).all()


def test_members_of_two_image_sizes_are_listed_with_their_own_metrics(ensemble, members):
    evaluation, out = ensemble
    report = json.loads((out / "metrics.json").read_text())
    assert report == evaluation.report
    assert report["model"] == "ensemble" and report["image_size"] is None and report["checkpoint"] is None
    assert report["ensemble"]["n_members"] == 2 and report["ensemble"]["picked"] is None
    listed = report["members"]
    assert [m["image_size"] for m in listed] == [32, 16]
    for member, folder in zip(listed, members.values()):
        own = json.loads((folder / "metrics.json").read_text())
        assert member["checkpoint"] == own["checkpoint"] and member["overall"] == own["overall"]
        assert member["cache"] == own["cache"]
    assert listed[0]["cache"] != listed[1]["cache"]  # each read its own cache
    low, high = report["overall"]["ci"]["auc"]
    assert low <= report["overall"]["auc"] <= high
    assert {"metrics.json", "predictions.csv", "roc.png"} <= {p.name for p in out.iterdir()}
