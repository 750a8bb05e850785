"""`mura preprocess` through the CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from muracli.cli.app import main


def make_tree(base: Path, *, bad: bool = False) -> Path:
    """A tiny MURA-v1.1 tree: 3 train studies, 2 valid studies (plus broken images if ``bad``)."""
    rng = np.random.default_rng(0)
    rows = {"train": [], "valid": []}
    studies = {"train": [], "valid": []}
    patient = 0
    for split, n in (("train", 3), ("valid", 2)):
        for s in range(n):
            patient += 1
            label = s % 2
            study = f"MURA-v1.1/{split}/XR_ELBOW/patient{patient:05d}/study1_{'positive' if label else 'negative'}/"
            (base / study).mkdir(parents=True)
            for view in (1, 2):
                Image.fromarray(rng.integers(0, 256, (30 + view, 20), dtype=np.uint8)).save(base / study / f"image{view}.png")
                rows[split].append(f"{study}image{view}.png")
            studies[split].append(f"{study},{label}")
    if bad:
        study = rows["train"][0].rsplit("/", 1)[0] + "/"
        (base / study / "image3.png").write_bytes(b"")
        (base / study / "image4.png").write_text("not an image")
        rows["train"] += [study + "image3.png", study + "image4.png"]
    root = base / "MURA-v1.1"
    for split in ("train", "valid"):
        (root / f"{split}_image_paths.csv").write_text("\n".join(rows[split]) + "\n")
        (root / f"{split}_labeled_studies.csv").write_text("\n".join(studies[split]) + "\n")
    return base


@pytest.fixture
def data(tmp_path) -> Path:
    return make_tree(tmp_path / "data")


def test_preprocess_builds_then_reuses(data, capsys):
    assert main(["preprocess", "--data", str(data), "--size", "16", "--workers", "0"]) == 0
    out, err = capsys.readouterr()
    assert "Cache:" in out and "mura-cache" in out
    assert "train" in out and "valid" in out and "16x16 px, fit pad" in out
    assert "Error" not in err
    caches = list((data / "mura-cache").iterdir())
    assert len(caches) == 1 and (caches[0] / "manifest.json").is_file()

    assert main(["preprocess", "--data", str(data), "--size", "16", "--workers", "0"]) == 0
    out, err = capsys.readouterr()
    assert "already complete" in err
    assert str(caches[0].name) in out.replace("\n", "")


def test_preprocess_json(data, capsys, tmp_path):
    out_dir = tmp_path / "cache"
    args = ["preprocess", "--data", str(data / "MURA-v1.1"), "--size", "16", "--fit", "crop", "--out", str(out_dir),
            "--workers", "1", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cache"] == str(out_dir.absolute()) and summary["reused"] is False
    assert summary["counts"] == {"train": 6, "valid": 4} and summary["study_counts"] == {"train": 3, "valid": 2}
    assert summary["size"] == 16 and summary["fit"] == "crop" and summary["skipped"] == []
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is True


def test_skipped_images_are_reported_and_exit_0(tmp_path, capsys):
    data = make_tree(tmp_path / "data", bad=True)
    assert main(["preprocess", "--data", str(data), "--size", "16", "--workers", "0"]) == 0
    out, err = capsys.readouterr()
    assert "Warning:" in err and "2 images were skipped" in err
    assert "empty" in out and "not_an_image" in out and "image3.png" in out


def test_missing_data_is_an_error_line(tmp_path, capsys):
    assert main(["preprocess", "--data", str(tmp_path / "missing")]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("Error:") and "does not exist" in err
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("args", [["--fit", "squash"], ["--size", "4"], ["--workers", "-1"]])
def test_bad_options_exit_2(data, capsys, args):
    assert main(["preprocess", "--data", str(data), *args]) == 2
    assert capsys.readouterr().err.startswith("Error:")


def test_help_has_examples(capsys):
    assert main(["preprocess", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples" in out and "mura preprocess --data" in out and "--fit" in out


def test_module_import_stays_light():
    code = ("import sys, muracli.cli.preprocess; "
            "heavy = [m for m in ('numpy', 'pandas', 'torch', 'pydicom', 'PIL') if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
