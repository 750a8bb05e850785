"""`mura evaluate` from the command line: output, files, defaults and errors."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch

from muracli.runtime.rundir import record_latest


def test_human_output_and_files(cli, trained_run, synthetic_cache, tmp_path):
    out = tmp_path / "eval"
    result = cli("evaluate", trained_run, "--cache", synthetic_cache.path, "--bootstrap", "50", "--out", out)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert f"Checkpoint  {trained_run / 'best.pt'}" in text
    assert "Split       valid:" in text and "Aggregate   mean of views, threshold 0.5" in text
    assert "kappa " in text and "(95% CI " in text
    for header in ("body part", "studies", "kappa", "AUC", "accuracy", "sensitivity", "specificity", "F1", "overall"):
        assert header in text
    assert "Elbow" in text and "Image level (" in text
    assert f"to {out}" in text
    for name in ("metrics.json", "predictions.csv", "image_predictions.csv", "roc.png", "confusion.png",
                 "reliability.png"):
        assert (out / name).is_file(), name
    assert "Traceback" not in result.stderr


def test_json_is_metrics_json_and_the_bootstrap_repeats(cli, trained_run, synthetic_cache, tmp_path):
    args = ("evaluate", trained_run, "--cache", synthetic_cache.path, "--bootstrap", "200", "--seed", "1", "--json")
    first = cli(*args, "--out", tmp_path / "eval")
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    assert report == json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {"split", "aggregate", "threshold", "n_studies", "overall", "by_body_part", "image_level"} <= set(report)
    overall = report["overall"]
    for metric in ("kappa", "auc"):
        low, high = overall["ci"][metric]
        assert low - 1e-9 <= overall[metric] <= high + 1e-9
    second = cli(*args)
    assert second.exit_code == 0 and json.loads(second.stdout) == report
    other_seed = cli(*args[:-3], "--seed", "2", "--json")
    assert json.loads(other_seed.stdout)["bootstrap"]["seed"] == 2


def test_metric_kappa_uses_the_latest_run(cli, trained_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./runs here: only the record can point at the run
    record_latest(trained_run)
    result = cli("evaluate", "--metric", "kappa")  # no --cache: the run's own cache is found
    assert result.exit_code == 0, result.stderr
    assert str(trained_run / "best.pt") in result.stdout
    headline = [line for line in result.stdout.splitlines() if line.startswith("kappa ")]
    assert headline and "over " in headline[0]
    assert "AUC" not in result.stdout.split("Image level")[0]  # one metric, not the full table


def test_no_run_at_all_is_an_error(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("evaluate", "--metric", "kappa")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: no run given and no earlier run found")
    assert "mura train" in result.stderr and "Traceback" not in result.stderr


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_is_refused_without_running_it(cli, tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"format": "mura-checkpoint", "state_dict": _Payload(marker)}, checkpoint)
    result = cli("evaluate", checkpoint, "--cpu")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: refusing to load")
    assert not marker.exists()


def test_aggregate_max_and_vote_change_the_study_probabilities(cli, trained_run, synthetic_cache, tmp_path):
    tables = {}
    for method in ("max", "vote"):
        out = tmp_path / method
        result = cli("evaluate", trained_run, "--cache", synthetic_cache.path, "--aggregate", method, "--threshold", "0.45", "--out", out, "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["aggregate"] == method
        tables[method] = (pd.read_csv(out / "predictions.csv").set_index("study"), pd.read_csv(out / "image_predictions.csv"))
    studies, images = tables["max"]
    expected = images.groupby("study")["probability"].max()
    assert studies.loc[expected.index, "probability"].to_numpy() == pytest.approx(expected.to_numpy())
    assert (studies["prediction"] == (studies["probability"] >= 0.45)).all()
    studies, images = tables["vote"]
    votes = (images["probability"] >= 0.45).groupby(images["study"]).mean()
    assert studies.loc[votes.index, "probability"].to_numpy() == pytest.approx(votes.to_numpy())
    assert (studies["prediction"] == (studies["probability"] >= 0.5)).all()
    assert not studies["probability"].equals(tables["max"][0]["probability"])


def test_usage_errors(cli, trained_run, synthetic_cache):
    result = cli("evaluate", trained_run, "--split", "test")
    assert result.exit_code == 2 and result.stderr.startswith("Error:")
    result = cli("evaluate", trained_run, "--threshold", "2")
    assert result.exit_code == 2 and result.stderr.startswith("Error:")
    result = cli("evaluate", trained_run / "nothing.pt")
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_gpu_without_cuda_is_an_error(cli, trained_run):
    result = cli("evaluate", trained_run, "--gpu")
    assert result.exit_code == 2 and "no CUDA device" in result.stderr


def test_help_shows_examples(cli):
    result = cli("evaluate", "--help")
    assert result.exit_code == 0
    assert "mura evaluate --metric kappa" in result.stdout and "--bootstrap" in result.stdout
