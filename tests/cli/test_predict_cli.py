"""`mura predict` from the command line: outputs, exit codes, CAM files, defaults."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from muracli.predict.output import CSV_COLUMNS, DISCLAIMER, REPORT_FIELDS, STUDY_FIELDS


@pytest.fixture(scope="module")
def studies(synthetic_data, tmp_path_factory) -> Path:
    """A folder holding copies of three valid studies (at depth 3, as in MURA)."""
    valid = synthetic_data / "MURA-v1.1" / "valid"
    dest = tmp_path_factory.mktemp("predict") / "incoming"
    for folder in sorted(valid.glob("XR_*/patient*/study*"))[:3]:
        shutil.copytree(folder, dest / folder.relative_to(valid))
    return dest


@pytest.fixture(scope="module")
def resnet_checkpoint(trained_run, tmp_path_factory) -> Path:
    """A freshly built resnet18 saved as a mura checkpoint with the trained run's metadata."""
    from muracli.models import ModelSpec, build_model
    from muracli.runtime.checkpoint import load_checkpoint, save_checkpoint

    meta = load_checkpoint(Path(trained_run) / "best.pt")
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version", "state_dict")}
    torch.manual_seed(0)
    spec = ModelSpec("resnet18")
    model = build_model(spec)
    return save_checkpoint({**meta, "model": spec.to_dict(), "state_dict": model.state_dict()},
                           tmp_path_factory.mktemp("resnet") / "resnet18.pt")


def bad_study(folder: Path, good: Path | None = None) -> Path:
    folder.mkdir(parents=True)
    if good is not None:
        shutil.copy(good, folder / "image1.png")
    (folder / "image2.png").write_bytes(b"")
    (folder / "image3.png").write_text("not an image")
    (folder / "._image2.png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 40)
    return folder


def test_table_is_the_default_and_ends_with_the_disclaimer(cli, studies, trained_run):
    result = cli("predict", studies, "--checkpoint", trained_run)
    assert result.exit_code == 0, result.stderr
    assert "p(abnormal)" in result.stdout and "3 studies:" in result.stdout
    assert "normal" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == DISCLAIMER
    assert "Error" not in result.stderr


def test_json_schema_sorting_and_disclaimer(cli, studies, trained_run):
    result = cli("predict", studies, "--checkpoint", trained_run, "--json", "--sort")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert tuple(data) == REPORT_FIELDS
    assert data["disclaimer"] == DISCLAIMER
    assert data["model"] == "cnn" and data["image_size"] == 32 and data["aggregate"] == "mean"
    assert data["checkpoint"] == str(Path(trained_run) / "best.pt") and data["tta"] is False
    assert data["n_studies"] == data["n_predicted"] == 3 and data["n_failed"] == 0
    probabilities = [s["probability"] for s in data["studies"]]
    assert probabilities == sorted(probabilities, reverse=True)
    for study in data["studies"]:
        assert tuple(study) == STUDY_FIELDS and study["error"] is None and study["skipped"] == []
        assert study["body_part"].startswith("XR_") and study["label"] == ["normal", "abnormal"][study["prediction"]]
        assert study["prediction"] == int(study["probability"] >= data["decision_threshold"])
        assert study["n_images"] == len(study["images"]) == len(list(Path(study["study"]).glob("*.png")))
        for image in study["images"]:
            assert set(image) == {"path", "probability", "cam"} and image["cam"] is None
            assert Path(image["path"]).is_file() and 0.0 <= image["probability"] <= 1.0
        mean = sum(i["probability"] for i in study["images"]) / study["n_images"]
        assert study["probability"] == pytest.approx(mean, abs=1e-12)

    unsorted = json.loads(cli("predict", studies, "-c", trained_run, "--json").stdout)
    assert [s["study"] for s in unsorted["studies"]] == sorted((s["study"] for s in unsorted["studies"]), key=str.lower)
    tta = json.loads(cli("predict", studies, "-c", trained_run, "--json", "--tta").stdout)
    assert tta["tta"] is True and [s["probability"] for s in tta["studies"]] != [s["probability"] for s in unsorted["studies"]]


def test_csv_file_is_pure_data_and_the_note_goes_to_stderr(cli, studies, trained_run, tmp_path):
    out = tmp_path / "worklist.csv"
    result = cli("predict", studies, "-c", trained_run, "--csv", out, "--sort")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and DISCLAIMER in result.stderr
    rows = list(csv.DictReader(out.open()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 3
    assert [float(r["probability"]) for r in rows] == sorted((float(r["probability"]) for r in rows), reverse=True)
    assert all(r["label"] in ("normal", "abnormal") and r["skipped"] == "0" and r["error"] == "" for r in rows)

    to_stdout = cli("predict", studies, "-c", trained_run, "--csv", "-")
    assert to_stdout.exit_code == 0 and DISCLAIMER not in to_stdout.stdout and DISCLAIMER in to_stdout.stderr
    assert list(csv.DictReader(io.StringIO(to_stdout.stdout))) == list(csv.DictReader(io.StringIO(
        cli("predict", studies, "-c", trained_run, "--csv", "-").stdout)))
    clash = cli("predict", studies, "-c", trained_run, "--csv", "-", "--json")
    assert clash.exit_code == 2 and clash.stderr.startswith("Error:")


def test_bad_files_are_named_and_a_study_without_images_is_an_error(cli, studies, trained_run, tmp_path):
    good = next(studies.glob("*/*/*/image1.png"))
    mixed = bad_study(tmp_path / "in" / "mixed", good)
    broken = bad_study(tmp_path / "in" / "broken")
    result = cli("predict", tmp_path / "in", "-c", trained_run, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    first, second = data["studies"]
    assert first["study"] == str(broken) and first["error"].startswith("no readable image") and first["probability"] is None
    assert second["study"] == str(mixed) and second["n_images"] == 1 and second["error"] is None
    assert {(Path(s["path"]).name, s["reason"]) for s in second["skipped"]} == {
        ("image2.png", "empty"), ("image3.png", "not_an_image"), ("._image2.png", "junk")}
    assert data["n_failed"] == 1 and "6 file(s) skipped" in result.stderr

    table = cli("predict", tmp_path / "in", "-c", trained_run)
    assert table.exit_code == 0 and "no readable image" in table.stdout and "empty" in table.stdout

    none = cli("predict", broken, "-c", trained_run)
    assert none.exit_code == 2 and "no readable image" in none.stdout
    assert "Error: the study could not be predicted" in none.stderr and "Traceback" not in none.stderr


def test_missing_path_and_folder_without_images(cli, trained_run, tmp_path):
    missing = cli("predict", tmp_path / "nope", "-c", trained_run)
    assert missing.exit_code == 2 and missing.stderr.startswith("Error:") and "does not exist" in missing.stderr
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    empty = cli("predict", tmp_path / "empty", "-c", trained_run)
    assert empty.exit_code == 2 and "Error: no images found" in empty.stderr and "Hint:" in empty.stderr


def test_single_image_is_its_own_study(cli, studies, trained_run):
    image = next(studies.glob("*/*/*/image1.png"))
    data = json.loads(cli("predict", image, "-c", trained_run, "--json").stdout)
    (study,) = data["studies"]
    assert study["study"] == str(image) and study["n_images"] == 1 and study["images"][0]["path"] == str(image)


def test_latest_run_is_the_default_and_its_absence_explained(cli, studies, trained_run, tmp_path, monkeypatch):
    from muracli.runtime.rundir import record_latest

    monkeypatch.chdir(tmp_path)  # no ./runs here either
    result = cli("predict", studies)
    assert result.exit_code == 2 and "Error: no run given and no earlier run found" in result.stderr
    assert "mura train" in result.stderr
    record_latest(Path(trained_run))
    data = json.loads(cli("predict", studies, "--json").stdout)
    assert data["checkpoint"] == str((Path(trained_run) / "best.pt").resolve())


@pytest.mark.parametrize("which", ["cnn", "resnet18"])
def test_cam_writes_one_overlay_per_image_at_original_size(cli, studies, trained_run, resnet_checkpoint, tmp_path, which):
    checkpoint = trained_run if which == "cnn" else resnet_checkpoint
    result = cli("predict", studies, "-c", checkpoint, "--cam", tmp_path / "cams", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == which
    images = [image for study in data["studies"] for image in study["images"]]
    written = sorted((tmp_path / "cams").iterdir())
    assert len(written) == len(images) == len({i["cam"] for i in images})
    for image in images:
        assert Path(image["cam"]).parent == tmp_path / "cams" and Path(image["cam"]).name.endswith("_cam.png")
        assert Path(image["cam"]).name.startswith("incoming__XR_")
        with Image.open(image["path"]) as original, Image.open(image["cam"]) as overlay:
            assert overlay.size == original.size and overlay.mode == "RGB"


def test_two_checkpoints_are_an_ensemble_listing_both(cli, studies, trained_run, small_run, tmp_path):
    singles = [json.loads(cli("predict", studies, "-c", run, "--json").stdout) for run in (trained_run, small_run)]
    result = cli("predict", studies, "-c", trained_run, "-c", small_run, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert tuple(data) == REPORT_FIELDS and data["model"] == "ensemble"
    assert data["checkpoint"] is None and data["image_size"] is None
    assert [(m["checkpoint"], m["image_size"]) for m in data["members"]] == [
        (str(Path(trained_run) / "best.pt"), 32), (str(Path(small_run) / "best.pt"), 16)]
    assert singles[0]["members"] == data["members"][:1]
    for study, *own in zip(data["studies"], *(s["studies"] for s in singles)):
        expected = [(a["probability"] + b["probability"]) / 2 for a, b in zip(own[0]["images"], own[1]["images"])]
        assert [i["probability"] for i in study["images"]] == pytest.approx(expected, abs=1e-12)
        assert study["probability"] == pytest.approx(sum(expected) / len(expected), abs=1e-12)
    table = cli("predict", studies, "-c", trained_run, "-c", small_run)
    assert "Ensemble of 2 (cnn (32 px, pad)" in table.stdout and "cnn (16 px, pad)" in table.stdout
    refused = cli("predict", studies, "-c", trained_run, "-c", small_run, "--cam", tmp_path / "cams")
    assert refused.exit_code == 2 and refused.stderr.startswith("Error: --cam explains one model")
    assert not (tmp_path / "cams").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_gpu_without_cuda_is_a_clean_error(cli, studies, trained_run):
    result = cli("predict", studies, "-c", trained_run, "--gpu")
    assert result.exit_code == 2 and result.stderr.startswith("Error: --gpu was given but no CUDA device is available")


def test_help_has_examples(cli):
    result = cli("predict", "--help")
    assert result.exit_code == 0 and "Examples:" in result.stdout and "--cam" in result.stdout
