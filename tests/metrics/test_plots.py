from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from muracli.errors import DataError
from muracli.metrics import confusion_png, curves_png, reliability_png, roc_curve_png
from muracli.metrics.plots import CONFUSION_SIZE, CURVES_SIZE, RELIABILITY_SIZE, ROC_SIZE


def png_size(path) -> tuple[int, int]:
    assert path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    return y, p


def test_roc_png(scores, tmp_path):
    y, p = scores
    path = roc_curve_png(y, p, tmp_path / "out" / "roc.png", threshold=0.4, title="valid")
    assert path == tmp_path / "out" / "roc.png"
    assert png_size(path) == ROC_SIZE == (600, 600)


def test_roc_png_with_one_class_says_so_instead_of_failing(tmp_path):
    assert png_size(roc_curve_png([1, 1, 1], [0.2, 0.5, 0.9], tmp_path / "roc.png")) == ROC_SIZE


def test_confusion_png(scores, tmp_path):
    y, p = scores
    assert png_size(confusion_png(y, (p >= 0.5).astype(int), tmp_path / "confusion.png")) == CONFUSION_SIZE
    # a class with no cases has no row percentage
    assert png_size(confusion_png([0, 0], [0, 1], tmp_path / "c2.png", title="t")) == CONFUSION_SIZE


def test_reliability_png(scores, tmp_path):
    y, p = scores
    assert png_size(reliability_png(y, p, tmp_path / "reliability.png", title="valid")) == RELIABILITY_SIZE
    assert png_size(reliability_png([1], [1.0], tmp_path / "one.png")) == RELIABILITY_SIZE  # one full bin


def test_curves_png(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "valid_loss": 0.5 + 0.01 * (e - 4) ** 2, "valid_kappa": 0.4 + 0.02 * e,
         "valid_auc": 0.7 + 0.01 * e, "lr": 0.01}
        for e in range(1, 8)
    ]
    assert png_size(curves_png(history, tmp_path / "curves.png")) == CURVES_SIZE
    # one epoch, values missing or empty (as read back from metrics.csv)
    sparse = [{"epoch": 1, "train_loss": 0.7, "valid_loss": "", "valid_kappa": None}]
    assert png_size(curves_png(sparse, tmp_path / "sparse.png", title="run")) == CURVES_SIZE
    with pytest.raises(DataError):
        curves_png([], tmp_path / "empty.png")


def test_curves_png_of_a_run_chosen_on_a_part_of_train(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "valid_loss": 0.6, "valid_kappa": 0.1 * e, "valid_auc": 0.8,
         "select_loss": 0.5 + 0.01 * e, "select_kappa": [-0.2, 0.5, "", 0.3][e - 1], "select_auc": 0.7}
        for e in range(1, 5)
    ]
    assert png_size(curves_png(history, tmp_path / "curves.png")) == CURVES_SIZE


def test_figures_do_not_accumulate(scores, tmp_path):
    import matplotlib.pyplot as plt

    y, p = scores
    before = plt.get_fignums()
    for i in range(3):
        roc_curve_png(y, p, tmp_path / f"r{i}.png")
        confusion_png(y, (p >= 0.5).astype(int), tmp_path / f"c{i}.png")
    assert plt.get_fignums() == before


def test_mismatched_inputs_are_data_errors(tmp_path):
    with pytest.raises(DataError):
        roc_curve_png([0, 1], [0.5], tmp_path / "x.png")
    with pytest.raises(DataError):
        confusion_png([0, 1], [1], tmp_path / "x.png")
