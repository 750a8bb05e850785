"""`mura compare` from the command line, on real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def second_run(synthetic_cache, tmp_path_factory) -> Path:
    """A second tiny run with other options: SGD, no augmentation, less dropout, weight decay, one epoch."""
    from muracli.training.config import TrainConfig
    from muracli.training.trainer import train

    out = tmp_path_factory.mktemp("runs") / "cnn-sgd"
    config = TrainConfig(
        cache=str(synthetic_cache.path), image_size=synthetic_cache.size, model="cnn", epochs=1, batch_size=64,
        lr=0.01, optimizer="sgd", dropout=0.2, weight_decay=1e-4, augment=False, device="cpu", out=str(out), seed=2,
    )
    return train(config).run_dir


def test_two_runs_side_by_side(cli, trained_run, second_run):
    result = cli("compare", trained_run, second_run)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0]
    for column in ("run", "model", "pretrained", "size", "augment", "dropout", "weight decay", "optimizer", "lr",
                   "epochs", "best epoch", "kappa", "AUC", "time"):
        assert column in header
    rows = {line.split()[0]: line for line in lines[2:] if line.strip()}
    assert set(rows) == {trained_run.name, second_run.name}
    assert "sgd" in rows[second_run.name] and "0.0001" in rows[second_run.name]
    assert "adam" in rows[trained_run.name]


def test_json_rows_and_sort_order(cli, trained_run, second_run):
    result = cli("compare", trained_run, second_run, "--json")
    assert result.exit_code == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    by_name = {r["run"]: r for r in runs}
    assert by_name[second_run.name]["optimizer"] == "sgd" and by_name[second_run.name]["augment"] is False
    assert by_name[second_run.name]["dropout"] == 0.2 and by_name[second_run.name]["epochs_run"] == 1
    assert by_name[trained_run.name]["epochs_run"] == 2 and by_name[trained_run.name]["image_size"] == 32
    kappas = [r["best_kappa"] for r in runs]
    assert kappas == sorted(kappas, reverse=True)
    by_time = json.loads(cli("compare", trained_run, second_run, "--json", "--sort", "time").stdout)["runs"]
    times = [r["train_seconds"] for r in by_time]
    assert times == sorted(times)
    by_name_sorted = json.loads(cli("compare", second_run, trained_run, "--json", "--sort", "name").stdout)["runs"]
    assert [r["run"] for r in by_name_sorted] == sorted([trained_run.name, second_run.name])


def test_a_parent_folder_of_runs(cli, second_run):
    result = cli("compare", second_run.parent, "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["run"] for r in json.loads(result.stdout)["runs"]] == [second_run.name]


def test_a_broken_run_is_skipped_with_a_warning(cli, trained_run, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    result = cli("compare", trained_run, broken)
    assert result.exit_code == 0
    assert f"Warning: skipping {broken}" in result.stderr
    assert trained_run.name in result.stdout and "broken" not in result.stdout


def test_exit_codes(cli, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    result = cli("compare", broken)
    assert result.exit_code == 1 and result.stderr.startswith("Warning: skipping")
    assert "Error: no readable run" in result.stderr
    (tmp_path / "file").write_text("x")
    result = cli("compare", tmp_path / "file")
    assert result.exit_code == 2 and result.stderr.startswith("Error:") and "not a directory" in result.stderr
    result = cli("compare")
    assert result.exit_code == 2
