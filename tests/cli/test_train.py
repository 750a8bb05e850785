"""`mura train` from the command line: options, errors, signals, torchrun."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from muracli.runtime.checkpoint import load_checkpoint


def base_args(cache, out: Path, *extra) -> list:
    return ["train", "--cache", cache.path, "--model", "cnn", "--batch-size", "16", "--cpu", "--out", out, *extra]


def test_train_prints_epochs_and_writes_the_run(cli, synthetic_cache, tmp_path):
    result = cli(*base_args(synthetic_cache, tmp_path / "run", "--epochs", "2"))
    assert result.exit_code == 0, result.stderr
    assert "epoch 1/2" in result.stdout and "epoch 2/2" in result.stdout
    assert "Best valid kappa" in result.stdout and str(tmp_path / "run") in result.stdout
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["image_size"] == synthetic_cache.size  # taken from the cache
    assert config["device"]["type"] == "cpu" and config["data"]["fingerprint"] == synthetic_cache.fingerprint


def test_train_json_output(cli, synthetic_cache, tmp_path):
    result = cli(*base_args(synthetic_cache, tmp_path / "run", "--epochs", "1", "--json"))
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["epochs"] == 1 and data["run_dir"] == str(tmp_path / "run")
    assert len(data["history"]) == 1 and "valid_kappa" in data["history"][0]


def test_rotate_sets_the_augmentation_range(cli, synthetic_cache, tmp_path):
    result = cli(*base_args(synthetic_cache, tmp_path / "run", "--epochs", "1", "--rotate", "30"))
    assert result.exit_code == 0, result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["augment_params"] == {"rotate": 30.0}
    assert cli(*base_args(synthetic_cache, tmp_path / "bad", "--rotate", "-5")).exit_code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_gpu_without_cuda_is_a_clean_error(cli, synthetic_cache, tmp_path):
    result = cli("train", "--cache", synthetic_cache.path, "--gpu", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --gpu was given but no CUDA device is available")
    assert "Traceback" not in result.stderr


def test_bad_options_are_usage_errors(cli, synthetic_cache, tmp_path):
    result = cli(*base_args(synthetic_cache, tmp_path / "r", "--optimizer", "lbfgs"))
    assert result.exit_code == 2 and "Error:" in result.stderr
    result = cli(*base_args(synthetic_cache, tmp_path / "r", "--model", "resnet1800"))
    assert result.exit_code == 2 and "resnet1800" in result.stderr
    result = cli(*base_args(synthetic_cache, tmp_path / "r", "--image-size", "64"))
    assert result.exit_code == 2 and "mura preprocess --size 64" in result.stderr


def test_resume_refuses_changed_options_and_missing_runs(cli, synthetic_cache, tmp_path):
    assert cli(*base_args(synthetic_cache, tmp_path / "run", "--epochs", "1")).exit_code == 0
    result = cli("train", "--resume", tmp_path / "run", "--lr", "0.1")
    assert result.exit_code == 2 and "--lr" in result.stderr
    result = cli("train", "--resume", tmp_path / "nowhere")
    assert result.exit_code == 2 and "last.pt" in result.stderr
    result = cli("train", "--resume", tmp_path / "run", "--epochs", "2")
    assert result.exit_code == 0, result.stderr
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]


def _mura(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "muracli", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_last_pt_and_the_run_resumes(synthetic_cache, tmp_path, signum):
    run = tmp_path / "run"
    proc = _mura(*base_args(synthetic_cache, run, "--epochs", "200"))
    deadline = time.monotonic() + 120
    while not (run / "last.pt").exists():  # after the first epoch
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert f"Error: training interrupted by {signal.Signals(signum).name}" in err
    assert f"mura train --resume {run}" in err
    assert "Traceback" not in err
    done = load_checkpoint(run / "last.pt")["progress"]["epoch"]
    resumed = _mura("train", "--resume", run, "--epochs", done + 1)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    with (run / "metrics.csv").open() as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(1, done + 2))


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(synthetic_cache, tmp_path):
    # A frozen backbone keeps BatchNorm on its running statistics and no dropout or
    # augmentation draws random numbers: two processes with half batches then compute
    # nearly the same averaged gradients as one process (class weights off: a weighted
    # mean per rank is not the weighted mean of the global batch). What remains: float
    # summation order and the image DistributedSampler repeats to even out the ranks,
    # which shifts the last step of each epoch (measured: ~0.005 on the valid loss;
    # per-rank BatchNorm statistics, by contrast, move it by 0.05 to 0.17).
    # Both choose on the same held-out part of train: every rank draws the same selection split.
    common = ["train", "--cache", synthetic_cache.path, "--model", "cnn", "--cpu", "--epochs", "2", "--no-augment",
              "--dropout", "0", "--freeze-backbone", "--no-class-weights", "--lr", "0.01", "--seed", "5", "--json",
              "--select-on", "train:0.2"]
    single = _mura(*common, "--out", tmp_path / "one", "--batch-size", "16")
    out_single, err = single.communicate(timeout=300)
    assert single.returncode == 0, err
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*common, "--out", tmp_path / "two", "--batch-size", "8"]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "muracli", *map(str, args)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.loads(out_single)
    two = json.loads(proc.stdout)  # only rank 0 prints
    assert len(two["history"]) == 2
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["device"]["world_size"] == 2
    for a, b in zip(one["history"], two["history"]):
        # Losses are continuous; kappa and AUC on 16 studies jump with any reordering.
        # The valid loss averages every valid image, so it also shows that validation
        # gathered all ranks' shards.
        for key in ("train_loss", "valid_loss", "select_loss"):
            assert a[key] == pytest.approx(b[key], abs=0.02), key
    assert one["history"][0]["train_loss"] != pytest.approx(one["history"][1]["train_loss"], abs=1e-4)  # it trained
    # validation covered the whole split on both: the same number of studies scored
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert (tmp_path / "two" / "selection.csv").read_bytes() == (tmp_path / "one" / "selection.csv").read_bytes()
