"""Training runs with the regularisation and weight-averaging options: an exact resume of an EMA run
(with mixing, clipping, accumulation and smoothing on), best.pt's weights, kept epochs, `mura average`."""

from __future__ import annotations

import json
import math
import shutil
import signal

import pytest
import torch
from test_trainer import interrupt_at, metrics_rows, small_config

from muracli.errors import TrainingInterrupted
from muracli.runtime.checkpoint import load_checkpoint, load_model, save_checkpoint
from muracli.runtime.rundir import RunDir
from muracli.training.average import average_run
from muracli.training.trainer import resume_config, train

OPTIONS = {
    "epochs": 2, "ema": 0.9, "mixup": 0.4, "cutmix": 1.0, "clip_grad": 1.0, "accumulate": 2, "label_smoothing": 0.1,
    "keep_epochs": 1, "schedule": "cosine",
}


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def straight_run(synthetic_cache, tmp_path_factory):
    return train(small_config(synthetic_cache, tmp_path_factory.mktemp("ema") / "straight", **OPTIONS)).run_dir


def test_an_ema_run_records_both_weights_and_keeps_its_last_epochs(straight_run):
    rows = metrics_rows(straight_run)
    assert all(row["ema_valid_kappa"] != "" and row["ema_valid_loss"] != "" for row in rows)
    best = load_checkpoint(straight_run / "best.pt")
    last = load_checkpoint(straight_run / "last.pt")
    assert best["weights"] in ("raw", "ema")
    record = json.loads((straight_run / "config.json").read_text())
    batches = math.ceil(record["data"]["train_images"] / 16)
    assert int(last["ema"]["n_averaged"]) == 2 * math.ceil(batches / 2)  # updated once per optimiser step
    ema_weights = {k[len("module."):]: v for k, v in last["ema"].items() if k.startswith("module.")}
    if best["epoch"] == 2:  # best.pt holds the weights it says it holds
        source = ema_weights if best["weights"] == "ema" else last["state_dict"]
        assert same_tensors(best["state_dict"], source)
    kept = RunDir(straight_run).epoch_checkpoints()
    assert [p.name for p in kept] == ["epoch-002.pt"]  # --keep-epochs 1: the older one is gone
    assert same_tensors(load_checkpoint(kept[0])["state_dict"], last["state_dict"])
    config = record["config"]
    assert (config["ema"], config["accumulate"], config["mixup"], config["cutmix"]) == (0.9, 2, 0.4, 1.0)


def test_a_resumed_ema_run_ends_with_the_ema_weights_of_an_uninterrupted_one(straight_run, synthetic_cache, tmp_path):
    cut = tmp_path / "cut"
    with pytest.raises(TrainingInterrupted):
        train(small_config(synthetic_cache, cut, **OPTIONS), progress=interrupt_at("train", 2, signal.SIGINT))
    progress = load_checkpoint(cut / "last.pt")["progress"]
    assert (progress["epoch"], progress["step"]) == (0, 2)  # two optimiser steps: four batches
    train(resume_config(cut), resume=cut)
    a, b = load_checkpoint(straight_run / "last.pt"), load_checkpoint(cut / "last.pt")
    assert same_tensors(a["ema"], b["ema"])
    assert same_tensors(a["state_dict"], b["state_dict"])
    assert metrics_rows(straight_run) == metrics_rows(cut)


@pytest.fixture
def identical_epochs(trained_run, tmp_path):
    """A copy of ``trained_run`` whose epochs/ keeps its best.pt three times over."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    checkpoint = load_checkpoint(run / "best.pt")
    for epoch in (1, 2, 3):
        save_checkpoint({**checkpoint, "epoch": epoch}, RunDir(run).epoch_path(epoch))
    return run


def test_averaging_identical_checkpoints_returns_their_weights_and_evaluates(identical_epochs, cli):
    result = average_run(identical_epochs, last=3)
    assert result.path == identical_epochs / "averaged.pt" and result.epochs == [1, 2, 3]
    assert result.bn_batches > 0
    original = load_checkpoint(identical_epochs / "best.pt")
    averaged = load_checkpoint(result.path)
    assert averaged["weights"] == "averaged" and averaged["averaged_epochs"] == [1, 2, 3]
    parameters = {name for name, _ in load_model(identical_epochs / "best.pt").model.named_parameters()}
    for name in parameters:
        assert torch.equal(averaged["state_dict"][name], original["state_dict"][name]), name
    statistics = [k for k in original["state_dict"] if k.endswith("running_mean")]
    assert statistics and any(not torch.equal(averaged["state_dict"][k], original["state_dict"][k]) for k in statistics)
    evaluated = cli("evaluate", str(result.path), "--json", "--cpu")
    assert evaluated.exit_code == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["checkpoint"] == str(result.path.resolve()) and report["n_studies"] > 0


def test_average_without_kept_epochs_says_how_to_keep_them(trained_run, cli):
    result = cli("average", str(trained_run), "--last", "3")
    assert result.exit_code != 0
    assert "keeps 0 epochs" in result.stderr and "--keep-epochs" in result.stderr


def test_mixing_a_study_model_is_refused(cli, synthetic_cache, tmp_path):
    result = cli("train", "--cache", str(synthetic_cache.path), "--study-model", "--mixup", "0.2", "--out", str(tmp_path / "r"))
    assert result.exit_code != 0
    assert "--mixup and --cutmix mix images, not studies" in result.stderr
    assert not (tmp_path / "r").exists()
