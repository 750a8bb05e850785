"""Training, saving, evaluating and predicting with a study model (--study-model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from muracli.batches.datasets import StudyTrainDataset, study_loader
from muracli.evaluation.evaluate import evaluate_run
from muracli.runtime.checkpoint import load_model
from muracli.training.config import TrainConfig
from muracli.training.trainer import train


@pytest.fixture(scope="module")
def study_run(synthetic_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "run"
    config = TrainConfig(
        cache=str(synthetic_cache.path), image_size=synthetic_cache.size, model="cnn", epochs=2, batch_size=6,
        device="cpu", out=str(out), seed=4, study_model=True, view_pool="attention", max_views=2,
    )
    return train(config)


def test_views_are_capped_at_random_and_reproducibly(synthetic_cache):
    dataset = StudyTrainDataset(synthetic_cache.split("train"), max_views=2, seed=3)
    many = [j for j, n in enumerate(dataset.studies["n_images"]) if n > 2][:4]
    x, mask, y = dataset.__getitems__(many)
    assert x.shape[:2] == (len(many), 2) and mask.all()
    again, _, _ = dataset.__getitems__(many)
    assert torch.equal(x, again)
    loader, sampler = study_loader(synthetic_cache.split("train"), batch_size=5, shuffle=True, seed=3, max_views=3)
    sampler.set_epoch(1)
    batches = list(loader)
    assert sum(len(b[2]) for b in batches) == len(dataset)
    assert all(b[1].sum(1).max() <= 3 for b in batches)


def test_study_model_trains_saves_and_reloads(study_run):
    assert study_run.epochs == 2
    loaded = load_model(study_run.run_dir)
    assert loaded.study_model == {"view_pool": "attention", "max_views": 2}
    assert type(loaded.model).__name__ == "StudyClassifier"
    assert loaded.aggregate == "study"


def test_evaluate_scores_studies_directly(study_run, synthetic_cache, tmp_path):
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    evaluation = evaluate_run(study_run.run_dir, cache=synthetic_cache.path, out=tmp_path / "eval", device="cpu")
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["aggregate"] == "study" and report["image_level"] is None
    assert report["n_studies"] == len(synthetic_cache.split("valid").index.drop_duplicates("study"))
    studies = evaluation.studies
    assert report["overall"]["kappa"] == pytest.approx(cohen_kappa_score(studies["label"], studies["prediction"]))
    assert report["overall"]["auc"] == pytest.approx(roc_auc_score(studies["label"], studies["probability"]))
    assert not (tmp_path / "eval" / "image_predictions.csv").exists()
    # the model's own validation agrees with evaluate
    best = [row for row in study_run.history if row["epoch"] == study_run.best_epoch][0]
    assert report["overall"]["kappa"] == pytest.approx(best["valid_kappa"])


def test_predict_matches_evaluate(study_run, synthetic_cache, synthetic_data):
    from muracli.predict import discover_studies, predict_studies

    evaluation = evaluate_run(study_run.run_dir, cache=synthetic_cache.path, device="cpu")
    loaded = load_model(study_run.run_dir)
    valid = synthetic_data / "MURA-v1.1" / "valid"
    results = list(predict_studies(loaded, discover_studies([valid]), batch_images=5, tta=False))
    expected = {s.rstrip("/").split("/", 1)[1]: p for s, p in zip(evaluation.studies["study"], evaluation.studies["probability"])}
    got = {r.study.split("MURA-v1.1/", 1)[-1].rstrip("/"): r.probability for r in results}
    assert len(got) == len(expected)
    for study, probability in expected.items():
        assert got[study] == pytest.approx(probability, abs=1e-5), study
    assert all(len(r.images) == r.n_images and r.images[0].probability is not None for r in results)
    assert np.isfinite([r.probability for r in results]).all()
