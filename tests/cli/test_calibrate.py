"""`mura evaluate --calibrate / --operating-point / --save` and `mura predict` with calibration.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from muracli.metrics.calibration import expected_calibration_error


@pytest.fixture(scope="module")
def select_run(synthetic_cache, tmp_path_factory) -> Path:
    """A cnn trained for one epoch with --select-on train:0.3. Tests calibrate copies of it."""
    from muracli.training.config import TrainConfig
    from muracli.training.trainer import train

    out = tmp_path_factory.mktemp("calibrate") / "cnn"
    config = TrainConfig(
        cache=str(synthetic_cache.path), image_size=synthetic_cache.size, model="cnn", epochs=1,
        batch_size=16, lr=2e-3, device="cpu", out=str(out), seed=1, select_on="train:0.3",
    )
    return train(config).run_dir


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def study_folders(synthetic_data: Path, n: int = 3) -> list[Path]:
    return sorted((synthetic_data / "MURA-v1.1" / "valid").glob("XR_*/patient*/study*"))[:n]


def test_calibrate_and_save_then_predict_uses_them_until_calibration_json_goes(
    cli, select_run, synthetic_cache, synthetic_data, tmp_path
):
    run = copy_run(select_run, tmp_path / "run")
    common = ("--cache", synthetic_cache.path, "--cpu", "--bootstrap", "50")
    plain = cli("evaluate", run, *common, "--json", "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.stderr
    before = json.loads(plain.stdout)
    calibration = before["calibration"]
    assert calibration["bins"] == 15 and "15 equal-width bins" in calibration["binning"]
    studies = pd.read_csv(tmp_path / "plain" / "predictions.csv")
    assert calibration["study"]["ece"] == pytest.approx(expected_calibration_error(studies["label"], studies["probability"]))
    assert calibration["image"]["brier"] is not None and calibration["temperature"] == 1.0
    assert (tmp_path / "plain" / "reliability.png").stat().st_size > 1000

    best = (run / "best.pt").read_bytes()
    tuned = cli("evaluate", run, *common, "--calibrate", "temperature", "--operating-point", "sensitivity=0.9",
                "--save", "--out", tmp_path / "tuned")
    assert tuned.exit_code == 0, tuned.stderr
    assert "Calibration temperature" in tuned.stdout and "Operating point sensitivity=0.9" in tuned.stdout
    assert "Calibration (15 equal-width bins" in tuned.stdout and "chosen on select" in tuned.stdout
    assert f"Wrote {run / 'calibration.json'}" in tuned.stdout and f"to {tmp_path / 'tuned'}" in tuned.stdout
    assert (run / "best.pt").read_bytes() == best  # never rewritten
    saved = json.loads((run / "calibration.json").read_text())
    fit, point = saved["temperature_fit"], saved["operating_point"]
    assert saved["checkpoint"] == "best.pt" and len(saved["checkpoint_sha256"]) == 64
    assert fit["split"] == "select" and fit["n"] > 0 and fit["nll_after"] <= fit["nll_before"]
    assert point["split"] == "select" and point["sensitivity"] >= 0.9 and saved["threshold"] == point["threshold"]
    after = json.loads((tmp_path / "tuned" / "metrics.json").read_text())
    assert after["calibration"]["temperature"] == saved["temperature"] != 1.0
    assert after["image_level"]["auc"] == pytest.approx(before["image_level"]["auc"], abs=1e-12)  # ranking kept
    assert after["threshold"] == saved["threshold"] and after["calibration"]["threshold_source"] == "calibration.json"
    valid = after["operating_point"]["evaluated_on"]
    assert valid["split"] == "valid" and set(valid["ci"]) == {"sensitivity", "specificity"}

    folders = study_folders(synthetic_data)
    images = pd.read_csv(tmp_path / "tuned" / "image_predictions.csv").set_index("path")["probability"]
    predicted = cli("predict", *folders, "--checkpoint", run, "--cpu", "--json")
    assert predicted.exit_code == 0, predicted.stderr
    report = json.loads(predicted.stdout)
    assert report["decision_threshold"] == saved["threshold"] and report["threshold_source"] == "calibration.json"
    assert report["temperature"] == saved["temperature"] and report["calibration"]["operating_point"]["rule"] == "sensitivity=0.9"
    assert "Calibration:" in predicted.stderr
    for study in report["studies"]:
        for image in study["images"]:  # evaluate's calibrated probabilities, image by image
            assert image["probability"] == pytest.approx(images[_cache_path(image["path"], images.index)], abs=1e-6)
        assert study["prediction"] == int(study["probability"] >= saved["threshold"])

    (run / "calibration.json").unlink()
    own = json.loads(cli("predict", *folders, "--checkpoint", run, "--cpu", "--json").stdout)
    plain_images = pd.read_csv(tmp_path / "plain" / "image_predictions.csv").set_index("path")["probability"]
    assert own["threshold_source"] == "checkpoint" and own["temperature"] == 1.0 and own["calibration"] is None
    assert own["decision_threshold"] == before["decision_threshold"]
    first = own["studies"][0]["images"][0]
    assert first["probability"] == pytest.approx(plain_images[_cache_path(first["path"], plain_images.index)], abs=1e-6)


def _cache_path(path: str, paths) -> str:
    """The image_predictions.csv path of a predicted file (the cache records paths relative to the data)."""
    tail = Path(path).parts[-4:]
    return next(p for p in paths if Path(p).parts[-4:] == tail)


def test_a_stale_calibration_is_not_applied(cli, select_run, synthetic_cache, synthetic_data, tmp_path):
    run = copy_run(select_run, tmp_path / "run")
    result = cli("evaluate", run, "--cache", synthetic_cache.path, "--cpu", "--operating-point", "youden", "--save")
    assert result.exit_code == 0, result.stderr
    assert json.loads((run / "calibration.json").read_text())["temperature"] is None  # no --calibrate
    shutil.copy(run / "last.pt", run / "best.pt")  # another checkpoint under the same name
    assert (run / "best.pt").read_bytes() != (select_run / "best.pt").read_bytes()
    predicted = cli("predict", *study_folders(synthetic_data, 1), "--checkpoint", run, "--cpu", "--json")
    assert predicted.exit_code == 0, predicted.stderr
    assert "hash differs" in predicted.stderr and json.loads(predicted.stdout)["threshold_source"] == "checkpoint"


def test_a_run_chosen_on_valid_refuses_to_calibrate_on_valid_unless_told(
    cli, trained_run, synthetic_cache, synthetic_data, tmp_path
):
    refused = cli("evaluate", trained_run, "--cache", synthetic_cache.path, "--cpu", "--calibrate", "temperature")
    assert refused.exit_code == 2
    assert refused.stderr.startswith("Error: ") and "chosen on valid" in refused.stderr
    assert "--calibrate-on valid" in refused.stderr and "Traceback" not in refused.stderr
    assert not (trained_run / "calibration.json").exists()

    run = copy_run(trained_run, tmp_path / "run")
    told = cli("evaluate", run, "--cache", synthetic_cache.path, "--cpu", "--calibrate", "temperature",
               "--calibrate-on", "valid", "--metric", "kappa")
    assert told.exit_code == 0, told.stderr
    assert "fitted on valid: valid's numbers are optimistic" in told.stdout
    assert json.loads((run / "calibration.json").read_text())["temperature_fit"]["split"] == "valid"
    later = cli("predict", *study_folders(synthetic_data, 1), "--checkpoint", run, "--cpu")
    assert later.exit_code == 0, later.stderr
    assert "fitted on valid" in later.stdout and "optimistic" in later.stderr  # later reports say so too


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--save",), "--save records the threshold"),
        (("--operating-point", "sensitivity=2"), "0 < S <= 1"),
        (("--operating-point", "youden", "--threshold", "0.4"), "both set the threshold"),
        (("--calibrate-on", "valid"), "neither is given"),
    ],
)
def test_bad_calibration_options_are_one_line_errors(cli, trained_run, args, message):
    result = cli("evaluate", trained_run, "--cpu", *args)
    assert result.exit_code == 2 and result.stderr.startswith("Error: ")
    assert message in result.stderr and "Traceback" not in result.stderr
