"""The training loop: learning, reproducibility, exact resume, the run directory."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest
import torch

from muracli.errors import TrainingInterrupted
from muracli.runtime.checkpoint import load_checkpoint
from muracli.training.config import TrainConfig
from muracli.training.trainer import resume_config, train

TIMING = {"seconds", "images_per_s"}


def small_config(cache, out: Path, **overrides) -> TrainConfig:
    options = dict(
        cache=str(cache.path), image_size=cache.size, model="cnn", epochs=2, batch_size=16, lr=2e-3,
        device="cpu", out=str(out), seed=1,
    )
    options.update(overrides)
    return TrainConfig(**options)


def metrics_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt")["state_dict"]


def test_loss_decreases_and_the_run_directory_is_complete(synthetic_cache, tmp_path):
    result = train(small_config(synthetic_cache, tmp_path / "run", epochs=3, augment=False))
    run = result.run_dir
    for name in ("config.json", "metrics.csv", "best.pt", "last.pt", "log.txt", "curves.png"):
        assert (run / name).is_file(), name
    rows = metrics_rows(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert result.best_epoch in (1, 2, 3) and result.best_kappa is not None
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == result.best_epoch
    assert best["image_size"] == 32 and best["class_names"] == ["normal", "abnormal"]
    assert "optimizer" not in best  # best.pt is for inference; last.pt is for resuming
    last = load_checkpoint(run / "last.pt")
    assert {"optimizer", "scheduler", "scaler", "rng", "progress"} <= set(last)
    assert "epoch 3" in (run / "log.txt").read_text()


def test_same_seed_gives_identical_metrics(synthetic_cache, tmp_path):
    first = train(small_config(synthetic_cache, tmp_path / "a"))
    second = train(small_config(synthetic_cache, tmp_path / "b"))
    assert metrics_rows(first.run_dir) == metrics_rows(second.run_dir)
    other = train(small_config(synthetic_cache, tmp_path / "c", seed=2))
    assert metrics_rows(other.run_dir) != metrics_rows(first.run_dir)


def interrupt_at(task: str, step: int, signum: int):
    """A progress callback that sends this process ``signum`` when ``task`` reaches ``step``."""
    fired = []

    def progress(name, completed, total=None, **fields):
        if name == task and completed == step and not fired:
            fired.append(True)
            os.kill(os.getpid(), signum)

    return progress


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_mid_epoch_resumes_exactly(synthetic_cache, tmp_path, signum):
    options = dict(epochs=2, schedule="cosine", warmup_epochs=0.5)
    straight = train(small_config(synthetic_cache, tmp_path / "straight", **options))
    with pytest.raises(TrainingInterrupted) as info:
        train(small_config(synthetic_cache, tmp_path / "cut", **options), progress=interrupt_at("train", 3, signum))
    assert info.value.exit_code == 128 + signum
    assert f"mura train --resume {tmp_path / 'cut'}" in info.value.hint
    saved = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (saved["progress"]["epoch"], saved["progress"]["step"]) == (0, 3)
    assert signal.getsignal(signum) is not None  # handlers restored
    resumed = train(resume_config(tmp_path / "cut"), resume=tmp_path / "cut")
    a, b = final_weights(straight.run_dir), final_weights(resumed.run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert metrics_rows(straight.run_dir) == metrics_rows(resumed.run_dir)


def test_resume_with_plateau_schedule_matches_straight_run(synthetic_cache, tmp_path):
    straight = train(small_config(synthetic_cache, tmp_path / "straight", epochs=3))
    train(small_config(synthetic_cache, tmp_path / "split", epochs=2))
    resumed = train(resume_config(tmp_path / "split", epochs=3), resume=tmp_path / "split")
    a, b = final_weights(straight.run_dir), final_weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics_rows(straight.run_dir) == metrics_rows(resumed.run_dir)


def test_metrics_csv_holds_the_epoch_before_last_pt_does(synthetic_cache, tmp_path, monkeypatch):
    # A crash between the two writes must never leave a last.pt of epoch N without N's row:
    # sweeps and --resume take last.pt's epoch as done. The row comes first.
    from muracli.training.checkpointer import Checkpointer

    seen = []
    save_last = Checkpointer.save_last

    def spy(self, state):
        seen.append((state.epoch, [int(r["epoch"]) for r in metrics_rows(self.run.path)]))
        return save_last(self, state)

    monkeypatch.setattr(Checkpointer, "save_last", spy)
    train(small_config(synthetic_cache, tmp_path / "run", epochs=2, augment=False))
    assert seen == [(1, [1]), (2, [1, 2])]


def test_early_stopping_on_kappa(synthetic_cache, tmp_path):
    result = train(small_config(synthetic_cache, tmp_path / "run", epochs=30, early_stop=1, lr=1e-7))
    assert result.stopped_early
    assert result.epochs < 30
    assert "early stop" in (result.run_dir / "log.txt").read_text()


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adamw"])
def test_every_optimizer_trains(synthetic_cache, tmp_path, optimizer):
    result = train(small_config(synthetic_cache, tmp_path / optimizer, epochs=1, optimizer=optimizer, class_weights=True, balanced_sampling=True))
    assert result.epochs == 1 and (result.run_dir / "best.pt").is_file()
    # the optimiser that ran is the one asked for: last.pt holds its state and hyper-parameters
    saved = load_checkpoint(result.run_dir / "last.pt")["optimizer"]
    group = saved["param_groups"][0]
    expected = {"sgd": {"nesterov": True, "momentum": 0.9}, "rmsprop": {"alpha": 0.99, "momentum": 0.9},
                "adamw": {"betas": (0.9, 0.999), "weight_decay": 0.0}}[optimizer]
    for key, value in expected.items():
        assert group[key] == (list(value) if isinstance(value, tuple) and isinstance(group[key], list) else value), key
    state = next(iter(saved["state"].values()))
    assert ("momentum_buffer" in state) == (optimizer in ("sgd", "rmsprop"))  # both with momentum 0.9
    assert ("square_avg" in state) == (optimizer == "rmsprop")
    assert ("exp_avg" in state) == (optimizer == "adamw")


def test_an_unknown_optimizer_is_refused(synthetic_cache, tmp_path):
    from muracli.errors import ConfigError
    from muracli.models import ModelSpec, build_model
    from muracli.training.optim import build_optimizer

    model = build_model(ModelSpec(name="cnn", in_channels=1, num_classes=2))
    with pytest.raises(ConfigError, match="unknown optimizer 'lamb'"):
        build_optimizer(model.parameters(), small_config(synthetic_cache, tmp_path, optimizer="lamb"))
    with pytest.raises(ConfigError, match="unknown optimizer 'lamb'"):
        small_config(synthetic_cache, tmp_path, optimizer="lamb").validate()


def test_an_existing_run_directory_is_not_overwritten(synthetic_cache, tmp_path):
    from muracli.errors import ConfigError

    train(small_config(synthetic_cache, tmp_path / "run", epochs=1))
    before = (tmp_path / "run" / "metrics.csv").read_text()
    with pytest.raises(ConfigError, match="already holds a training run") as info:
        train(small_config(synthetic_cache, tmp_path / "run", epochs=1))
    assert "--resume" in info.value.hint
    assert (tmp_path / "run" / "metrics.csv").read_text() == before
