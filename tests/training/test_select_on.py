"""Choosing the checkpoint on a held-out part of train (``--select-on train:FRACTION``), and runs of some body parts."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from muracli.errors import ConfigError, DataError
from muracli.runtime.checkpoint import load_checkpoint
from muracli.runtime.distributed import World
from muracli.training import trainer
from muracli.training.config import TrainConfig, canonical_select_on
from muracli.training.data import load_train_data
from muracli.training.trainer import resume_config, train

SELECT = "train:0.3"


def small_config(cache, out: Path, **overrides) -> TrainConfig:
    options = dict(
        cache=str(cache.path), image_size=cache.size, model="cnn", epochs=2, batch_size=16, lr=2e-3,
        device="cpu", out=str(out), seed=1, select_on=SELECT,
    )
    options.update(overrides)
    return TrainConfig(**options)


def train_data(cache, out: Path, **overrides):
    return load_train_data(small_config(cache, out, **overrides), World(), torch.device("cpu"))


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def scripted(monkeypatch, kappas: dict[str, list[float]], losses: dict[str, list[float]] | None = None):
    """Make validation report these kappas (and losses), epoch by epoch, per split; the rest is measured."""
    real, calls = trainer.validate, defaultdict(int)

    def validate(model, split, *, prefix="valid", **options):
        result = real(model, split, prefix=prefix, **options)
        epoch = calls[prefix]
        calls[prefix] += 1
        result[f"{prefix}_kappa"] = kappas[prefix][epoch]
        if losses:
            result[f"{prefix}_loss"] = losses[prefix][epoch]
        return result

    monkeypatch.setattr(trainer, "validate", validate)


def test_the_selection_split_is_held_out_of_train_by_patient(synthetic_cache, tmp_path):
    data = train_data(synthetic_cache, tmp_path / "a")
    held, rest, valid = data.select.index, data.train.index, data.valid.index
    assert len(held) and len(rest)
    assert not set(held["patient"]) & set(rest["patient"])
    assert not set(held["patient"]) & set(valid["patient"])
    whole = synthetic_cache.split("train").index
    assert len(held) + len(rest) == len(whole)  # every training image on one side
    assert sorted(data.selection["study"]) == sorted(set(held["study"]))
    assert set(data.selection["label"]) == {0, 1}
    # the selection split's images are the cache's own rows of those studies
    positions = synthetic_cache.split("train").index["study"].isin(data.selection["study"]).to_numpy().nonzero()[0]
    assert (data.select.pixel_rows == positions).all()
    # the seed ensemble of --seed shares one split; another --select-seed draws another
    same = train_data(synthetic_cache, tmp_path / "b", seed=7)
    assert same.selection.equals(data.selection)
    other = train_data(synthetic_cache, tmp_path / "c", select_seed=1)
    assert set(other.selection["study"]) != set(data.selection["study"])


def test_best_pt_early_stopping_and_the_plateau_follow_the_selection_split(synthetic_cache, tmp_path, monkeypatch):
    # valid would choose epoch 3, never stop and never lower the LR; the selection split
    # peaks at epoch 1 in loss and at epoch 2 in kappa
    scripted(monkeypatch, {"valid": [0.1, 0.2, 0.9], "select": [0.3, 0.6, 0.5]},
             {"valid": [0.9, 0.8, 0.7], "select": [0.5, 0.6, 0.7]})
    result = train(small_config(synthetic_cache, tmp_path / "run", epochs=5, early_stop=1, plateau_patience=0))
    rows = metrics(result.run_dir)
    assert [float(r["select_kappa"]) for r in rows] == [0.3, 0.6, 0.5]
    assert result.best_epoch == 2 and load_checkpoint(result.run_dir / "best.pt")["epoch"] == 2
    assert result.best_kappa == 0.6 and result.best_valid_kappa == 0.2 and result.selected_on == SELECT
    assert result.stopped_early and result.epochs == 3  # one epoch without a better selection kappa
    assert [float(r["lr"]) for r in rows] == pytest.approx([2e-3, 2e-4, 2e-5])  # the selection loss rose twice
    log = (result.run_dir / "log.txt").read_text()
    assert "no better select kappa for 1 epochs" in log and "chosen on train:0.3" in log
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["config"]["select_on"] == SELECT and config["data"]["selected_on"] == SELECT
    assert config["data"]["select_studies"] == len((result.run_dir / "selection.csv").read_text().splitlines()) - 1


def test_a_real_run_keeps_the_epoch_of_best_selection_kappa(synthetic_cache, tmp_path):
    result = train(small_config(synthetic_cache, tmp_path / "run", epochs=1))
    with (result.run_dir / "selection.csv").open() as handle:
        held = list(csv.DictReader(handle))
    assert list(held[0]) == ["study", "patient", "body_part", "label"]
    before = (result.run_dir / "selection.csv").read_text()
    resumed = train(resume_config(result.run_dir, epochs=2), resume=result.run_dir)
    assert resumed.epochs == 2 and (result.run_dir / "selection.csv").read_text() == before
    rows = metrics(result.run_dir)
    kappas = [float(r["select_kappa"]) for r in rows]
    assert all(r["select_loss"] and r["valid_kappa"] for r in rows)
    assert load_checkpoint(result.run_dir / "best.pt")["epoch"] == kappas.index(max(kappas)) + 1

    # resume keeps the split the run recorded, even were the draw to change
    lines = before.splitlines()
    (result.run_dir / "selection.csv").write_text("\n".join(lines[:-1]) + "\n")  # one study fewer
    data = load_train_data(resume_config(result.run_dir), World(), torch.device("cpu"))
    assert len(data.selection) == len(lines) - 2
    assert set(data.select.index["study"]) == set(data.selection["study"])


def test_valid_still_chooses_by_default(trained_run):
    rows = metrics(trained_run)
    assert all(r["select_kappa"] == "" and r["select_loss"] == "" for r in rows)
    assert not (trained_run / "selection.csv").exists()


def test_bad_select_options_are_config_errors(synthetic_cache, tmp_path):
    assert canonical_select_on("train:.10") == "train:0.1" and canonical_select_on("valid") == "valid"
    for bad, message in [("test", "valid or train:FRACTION"), ("train:x", "valid or train:FRACTION"),
                         ("train:1", "0 < FRACTION < 1"), ("train:0", "0 < FRACTION < 1")]:
        with pytest.raises(ConfigError, match=message):
            small_config(synthetic_cache, tmp_path, select_on=bad).validate()
    with pytest.raises(DataError, match="kappa needs both classes"):  # 1% of 64 studies: nothing held out
        train_data(synthetic_cache, tmp_path / "tiny", select_on="train:0.01")


def test_a_body_part_run_trains_and_chooses_on_those_parts(synthetic_cache, tmp_path):
    data = train_data(synthetic_cache, tmp_path / "a", body_parts=["XR_SHOULDER", "XR_WRIST"], select_on="train:0.4")
    for split in (data.train, data.valid, data.select):
        assert set(split.index["body_part"]) == {"XR_SHOULDER", "XR_WRIST"}, split.name
    whole = synthetic_cache.split("train").index
    assert len(data.train.index) + len(data.select.index) == int(whole["body_part"].isin(["XR_SHOULDER", "XR_WRIST"]).sum())
    with pytest.raises(ConfigError, match="unknown body part 'XR_KNEE'"):
        small_config(synthetic_cache, tmp_path, body_parts=["XR_KNEE"]).validate()
