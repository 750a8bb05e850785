"""Training on one's own radiographs: a manifest of PNG and DICOM files through every command."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from manifest_trees import manifest_rows, write_manifest, write_manifest_dataset


@pytest.fixture
def mine(tmp_path, monkeypatch) -> Path:
    """``mine/manifest.csv`` under the working folder, plus a listed file that is missing and one that is truncated."""
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest_dataset(tmp_path / "mine")
    rows = manifest_rows(manifest)
    (tmp_path / "mine" / "images" / "wrist-b" / "view1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    rows.append(["images/hand-b/view2.png", "0", "hand-b", "train", "XR_HAND", "P04"])  # never written
    write_manifest(manifest, rows[1:], rows[0])
    return Path("mine/manifest.csv")


@pytest.mark.slow  # preprocess, a one-epoch run, evaluate twice and predict: about 10 s on a CPU
def test_a_manifest_of_png_and_dicom_files_goes_through_every_command(cli, mine, tmp_path, monkeypatch):
    stats = cli("stats", "--manifest", mine, "--json")
    assert stats.exit_code == 0, stats.stderr
    summary = json.loads(stats.stdout)
    assert summary["kind"] == "manifest" and summary["root"] == str(mine.resolve())
    totals = {row["split"]: row for row in summary["breakdown"] if row["body_part"] == "total"}
    assert (totals["train"]["studies"], totals["valid"]["studies"], totals["all"]["images"]) == (5, 3, 14)
    assert [(p["kind"], p["path"]) for p in summary["problems"]] == [("missing_file", "images/hand-b/view2.png")]
    table = cli("stats", "--manifest", mine)
    assert f"Manifest {mine.resolve()}" in table.stdout and "unknown" in table.stdout
    assert "[missing_file] images/hand-b/view2.png" in table.stderr

    pre = cli("preprocess", "--manifest", mine, "--size", "32", "--workers", "0", "--json")
    assert pre.exit_code == 0, pre.stderr
    built = json.loads(pre.stdout)
    assert Path(built["cache"]).parent == (tmp_path / "mine" / "mura-cache").resolve()
    assert built["counts"] == {"train": 8, "valid": 5}
    assert {(s["path"], s["reason"]) for s in built["skipped"]} == {
        ("images/wrist-b/view1.png", "truncated"), ("images/hand-b/view2.png", "missing")}

    run = tmp_path / "runs" / "mine"
    train = cli("train", "--manifest", mine, "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--cpu",
                "--out", run)
    assert train.exit_code == 0, train.stderr
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["manifest"] == str(mine) and record["config"]["data"] is None
    assert record["data"]["root"] == str(mine.resolve()) and record["data"]["cache"] == built["cache"]
    assert (record["data"]["train_images"], record["data"]["valid_images"]) == (8, 5)  # the preprocessed cache

    # From elsewhere, with the cache gone: the run finds its manifest and builds the cache again.
    shutil.rmtree(built["cache"])
    monkeypatch.chdir(tmp_path / "runs")
    evaluated = cli("evaluate", run, "--cpu", "--out", tmp_path / "eval", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert (report["n_studies"], report["n_images"]) == (3, 5)
    assert set(report["by_body_part"]) == {"XR_HAND", "XR_WRIST", "unknown"}
    assert Path(built["cache"]).is_dir()
    with open(tmp_path / "eval" / "predictions.csv", newline="") as f:
        from_cache = {row["study"]: float(row["probability"]) for row in csv.DictReader(f)}

    # One of its study folders, from the files (a PNG and a DICOM file): the probability evaluate computed.
    predicted = cli("predict", tmp_path / "mine" / "images" / "wrist-c", "--checkpoint", run, "--json")
    assert predicted.exit_code == 0, predicted.stderr
    (study,) = json.loads(predicted.stdout)["studies"]
    assert sorted(Path(image["path"]).name for image in study["images"]) == ["IM000002.dcm", "view1.png"]
    assert study["probability"] == pytest.approx(from_cache["wrist-c"], abs=1e-6)

    again = cli("evaluate", run, "--cpu", "--manifest", tmp_path / "mine" / "manifest.csv", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["overall"] == report["overall"]


def test_a_malformed_manifest_is_one_error_line_and_a_hint(cli, mine):
    rows = manifest_rows(mine)
    rows[1][1] = "abnormal"
    write_manifest(mine, rows[1:], rows[0])
    for command in (["stats"], ["preprocess", "--size", "32"], ["train", "--image-size", "32", "--cpu"]):
        result = cli(*command, "--manifest", mine)
        lines = result.stderr.splitlines()
        assert result.exit_code == 2, (command, result.stderr)
        assert lines[0] == f"Error: manifest {mine.resolve()}: line 2: label must be 0 or 1, got 'abnormal'"
        assert lines[1].startswith("Hint: a manifest is a CSV with the header path,label,study,split")
        assert "Traceback" not in result.stderr


def test_data_and_manifest_together_are_refused(cli, mine, tiny_mura):
    for command in (["stats"], ["train", "--cpu"], ["evaluate"]):
        result = cli(*command, "--data", tiny_mura, "--manifest", mine)
        assert result.exit_code == 2, (command, result.stderr)
        assert result.stderr.startswith("Error: --data and --manifest both given")
