"""Parsing and validating MURA's CSV layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from mura_trees import TINY_STUDIES, write_mura_tree

from muracli.data.layout import read_layout, resolve_root
from muracli.errors import DataError


def kinds(layout) -> list[str]:
    return [p.kind for p in layout.problems]


@pytest.mark.parametrize("crlf", [False, True], ids=["LF", "CRLF"])
def test_parses_real_format_rows(tmp_path, crlf):
    write_mura_tree(tmp_path, TINY_STUDIES, crlf=crlf)
    raw = (tmp_path / "MURA-v1.1" / "train_labeled_studies.csv").read_bytes()
    assert (b"\r\n" in raw) == crlf and b"positive/,1" in raw
    layout = read_layout(tmp_path)
    assert layout.problems == []
    assert len(layout.images) == sum(s[4] for s in TINY_STUDIES)
    assert len(layout.studies) == len(TINY_STUDIES)
    row = layout.images.iloc[0]
    assert row.to_dict() | {"abs_path": None} == {
        "split": "train",
        "body_part": "XR_WRIST",
        "patient": "patient00001",
        "study": "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/",
        "view": 1,
        "label": 1,
        "path": "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png",
        "abs_path": None,
    }
    assert Path(row.abs_path).is_file() and Path(row.abs_path).is_absolute()
    second = layout.studies[layout.studies.study.str.contains("patient00001/study2")].iloc[0]
    assert (second.label, second.n_images, second.split) == (0, 1, "train")


def test_accepts_the_root_folder_itself_and_mura_data(tmp_path, monkeypatch):
    root = write_mura_tree(tmp_path, TINY_STUDIES)
    assert resolve_root(root) == root.resolve()
    assert resolve_root(tmp_path) == root.resolve()
    monkeypatch.setenv("MURA_DATA", str(tmp_path))
    assert resolve_root() == root.resolve()
    monkeypatch.delenv("MURA_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"\./data"):
        resolve_root()


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_wrong_data_folder_is_a_data_error_with_a_hint(tmp_path, make):
    target = tmp_path / "x"
    if make == "file":
        target.write_text("not a folder")
    elif make == "empty":
        target.mkdir()
    with pytest.raises(DataError) as info:
        read_layout(target)
    assert "mura download" in info.value.hint


def test_missing_csv_is_a_data_error(tiny_mura):
    (tiny_mura / "MURA-v1.1" / "valid_labeled_studies.csv").unlink()
    with pytest.raises(DataError, match="valid_labeled_studies.csv"):
        read_layout(tiny_mura)


def test_rows_whose_files_are_missing(tiny_mura):
    (tiny_mura / "MURA-v1.1/train/XR_ELBOW/patient00002/study1_negative/image2.png").unlink()
    layout = read_layout(tiny_mura)
    missing = [p for p in layout.problems if p.kind == "missing_file"]
    assert len(missing) == 1 and missing[0].severity == "error"
    assert missing[0].path.endswith("patient00002/study1_negative/image2.png")
    assert len(layout.images) == sum(s[4] for s in TINY_STUDIES) - 1


def test_label_must_match_the_folder_suffix(tiny_mura):
    csv = tiny_mura / "MURA-v1.1" / "valid_labeled_studies.csv"
    csv.write_text(csv.read_text().replace("study1_positive/,1", "study1_positive/,0"))
    layout = read_layout(tiny_mura)
    assert kinds(layout) == ["label_mismatch"]
    study = layout.studies.set_index("study").loc["MURA-v1.1/valid/XR_WRIST/patient11185/study1_positive/"]
    assert study.label == 0  # the CSV is the source of truth, the mismatch is reported


def test_patients_shared_across_splits(tmp_path):
    write_mura_tree(tmp_path, [("train", "XR_HAND", "patient00007", 0, 1), ("valid", "XR_HAND", "patient00007", 1, 1)])
    layout = read_layout(tmp_path)
    assert kinds(layout) == ["patient_overlap"]
    assert layout.problems[0].path == "patient00007" and layout.problems[0].severity == "error"


def test_files_on_disk_not_in_the_csvs(tiny_mura):
    study = tiny_mura / "MURA-v1.1/train/XR_HAND/patient00003/study1_positive"
    (study / "image9.png").write_bytes((study / "image1.png").read_bytes())
    (study / "._image1.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (study / ".DS_Store").write_bytes(b"junk")
    layout = read_layout(tiny_mura)
    assert sorted(kinds(layout)) == ["junk_files", "unlisted_file"]
    assert layout.junk_files == 2
    assert all(p.severity == "warning" for p in layout.problems)
    assert not layout.images.path.str.contains("image9").any()


def test_malformed_and_unlabelled_rows(tiny_mura):
    csv = tiny_mura / "MURA-v1.1" / "train_image_paths.csv"
    csv.write_text(csv.read_text() + "MURA-v1.1/train/not/a/valid/row.png\nsomething odd\n\n")
    labels = tiny_mura / "MURA-v1.1" / "train_labeled_studies.csv"
    labels.write_text(
        "\n".join(line for line in labels.read_text().splitlines() if "patient00003" not in line) + "\n"
    )
    layout = read_layout(tiny_mura)
    assert kinds(layout).count("malformed_row") == 2
    unlabelled = [p for p in layout.problems if p.kind == "unlabelled_study"]
    assert len(unlabelled) == 1  # once per study; the label is taken from the suffix
    hand = layout.studies[layout.studies.patient == "patient00003"].iloc[0]
    assert hand.label == 1


def test_labelled_study_without_images(tiny_mura):
    labels = tiny_mura / "MURA-v1.1" / "valid_labeled_studies.csv"
    labels.write_text(labels.read_text() + "MURA-v1.1/valid/XR_HAND/patient11190/study1_negative/,0\n")
    layout = read_layout(tiny_mura)
    assert kinds(layout) == ["empty_study"]


def test_fingerprint_changes_with_labels_and_images(tiny_mura):
    first = read_layout(tiny_mura).fingerprint()
    assert read_layout(tiny_mura).fingerprint() == first
    image = tiny_mura / "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png"
    image.write_bytes(image.read_bytes() + b"\x00")
    assert read_layout(tiny_mura).fingerprint() != first
