"""The evaluation run (evaluation.evaluate): checkpoint -> cache -> report and files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from muracli.errors import CheckpointError, ConfigError, DataError
from muracli.evaluation.evaluate import OUTPUT_FILES, evaluate_run
from muracli.runtime.caches import locate_cache

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluated(trained_run, synthetic_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    evaluation = evaluate_run(trained_run, cache=synthetic_cache.path, bootstrap=200, seed=1, device="cpu", out=out)
    return evaluation, out


def test_report_has_the_metrics_json_shape(evaluated, trained_run, synthetic_cache):
    evaluation, out = evaluated
    report = json.loads((out / "metrics.json").read_text())
    assert report == evaluation.report
    valid = synthetic_cache.split("valid").index
    assert report["split"] == "valid" and report["aggregate"] == "mean" and report["threshold"] == 0.5
    assert report["n_studies"] == valid["study"].nunique() and report["n_images"] == len(valid)
    for block in (report["overall"], *report["by_body_part"].values()):
        for key in ("kappa", "auc", "accuracy", "sensitivity", "specificity", "f1", "n", "ci"):
            assert key in block
    assert set(report["by_body_part"]) == set(valid["body_part"])
    assert sum(b["n"] for b in report["by_body_part"].values()) == report["n_studies"]
    assert report["image_level"]["n"] == len(valid) and "ci" not in report["image_level"]
    assert report["checkpoint"] == str(Path(trained_run) / "best.pt")
    assert report["cache"] == str(synthetic_cache.path) and report["model"] == "cnn" and report["image_size"] == 32
    assert set(evaluation.files) == set(OUTPUT_FILES)


def test_kappa_and_auc_equal_scikit_learn_on_the_written_predictions(evaluated):
    evaluation, out = evaluated
    overall = evaluation.report["overall"]
    studies = pd.read_csv(out / "predictions.csv")
    assert list(studies.columns) == ["study", "body_part", "label", "probability", "prediction", "n_images"]
    assert overall["kappa"] == pytest.approx(cohen_kappa_score(studies["label"], studies["prediction"]), abs=1e-12)
    assert overall["auc"] == pytest.approx(roc_auc_score(studies["label"], studies["probability"]), abs=1e-12)

    images = pd.read_csv(out / "image_predictions.csv")
    assert {"path", "study", "probability"} <= set(images.columns)
    mean = images.groupby("study")["probability"].mean()
    labels = images.groupby("study")["label"].first()
    assert overall["auc"] == pytest.approx(roc_auc_score(labels, mean), abs=1e-12)
    assert overall["kappa"] == pytest.approx(cohen_kappa_score(labels, (mean >= 0.5).astype(int)), abs=1e-12)
    image_level = evaluation.report["image_level"]
    assert image_level["auc"] == pytest.approx(roc_auc_score(images["label"], images["probability"]), abs=1e-12)


def test_predictions_cover_every_valid_study_once(evaluated, synthetic_cache):
    _, out = evaluated
    studies = pd.read_csv(out / "predictions.csv")
    valid = synthetic_cache.split("valid").index
    assert studies["study"].is_unique
    assert set(studies["study"]) == set(valid["study"])
    assert studies["n_images"].sum() == len(valid)
    images = pd.read_csv(out / "image_predictions.csv")
    assert sorted(images["path"]) == sorted(valid["path"])


def test_figures_are_pngs(evaluated):
    _, out = evaluated
    for name in ("roc.png", "confusion.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC


def test_bootstrap_intervals_contain_the_estimate_and_repeat_with_the_seed(evaluated, trained_run, synthetic_cache):
    evaluation, _ = evaluated
    report = evaluation.report
    assert report["bootstrap"]["n"] == 200 and report["bootstrap"]["seed"] == 1
    for block in (report["overall"], *report["by_body_part"].values()):
        for metric in ("kappa", "auc", "accuracy"):
            ci, value = block["ci"][metric], block[metric]
            if ci is not None and value is not None:
                assert ci[0] - 1e-9 <= value <= ci[1] + 1e-9, (metric, value, ci)
    again = evaluate_run(trained_run, cache=synthetic_cache.path, bootstrap=200, seed=1, device="cpu")
    assert again.report == report


def test_defaults_to_the_data_the_run_was_trained_on(trained_run, synthetic_cache):
    evaluation = evaluate_run(trained_run, device="cpu", aggregate="max", threshold=0.4)
    assert evaluation.report["cache"] == str(synthetic_cache.path)
    assert evaluation.report["aggregate"] == "max" and evaluation.report["threshold"] == 0.4
    assert not evaluation.notes


def _fake_loaded(tmp_path: Path, **fields):
    values = dict(path=tmp_path / "best.pt", image_size=32, fit="pad", checkpoint={}, study_model=None)
    values.update(fields)
    return SimpleNamespace(**values)


def test_a_cache_of_another_size_is_refused(tmp_path, synthetic_cache):
    with pytest.raises(ConfigError, match="holds 32 px images") as info:
        locate_cache(_fake_loaded(tmp_path, image_size=48), cache=synthetic_cache.path)
    assert "--size 48" in info.value.hint


def test_gone_training_data_falls_back_to_mura_data(tmp_path, synthetic_data, synthetic_cache, monkeypatch):
    monkeypatch.setenv("MURA_DATA", str(synthetic_data))
    gone = str(tmp_path / "gone")
    loaded = _fake_loaded(tmp_path, checkpoint={"config": {"cache": gone, "data": gone}})
    notes: list[str] = []
    opened = locate_cache(loaded, notes=notes)
    assert opened.path == synthetic_cache.path
    assert notes and "gone" in notes[0]


def test_a_split_missing_from_the_cache_is_a_data_error(trained_run, synthetic_cache, tmp_path):
    copy = tmp_path / "cache"
    shutil.copytree(synthetic_cache.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["counts"]["train"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="no split 'train'"):
        evaluate_run(trained_run, cache=copy, split="train", device="cpu")


def test_bad_arguments_fail_before_any_work(trained_run):
    with pytest.raises(ConfigError, match="unknown split"):
        evaluate_run(trained_run, split="test")
    with pytest.raises(ConfigError):
        evaluate_run(trained_run, aggregate="median")
    with pytest.raises(ConfigError):
        evaluate_run(trained_run, threshold=1.5)
    with pytest.raises(ConfigError):
        evaluate_run(trained_run, batch_images=0)


def test_no_run_anywhere_is_a_checkpoint_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="no run given"):
        evaluate_run(None, device="cpu")


def test_vote_probabilities_are_fractions_of_views(trained_run, synthetic_cache):
    threshold = 0.45
    evaluation = evaluate_run(trained_run, cache=synthetic_cache.path, aggregate="vote", threshold=threshold, device="cpu")
    images = evaluation.images
    fractions = (images["probability"] >= threshold).groupby(images["study"]).mean()
    studies = evaluation.studies.set_index("study")
    assert np.allclose(studies.loc[fractions.index, "probability"], fractions.to_numpy())
    assert (studies["prediction"] == (studies["probability"] >= 0.5).astype(int)).all()
    assert evaluation.report["decision_threshold"] == 0.5
