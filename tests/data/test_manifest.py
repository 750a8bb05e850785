"""A CSV manifest of one's own radiographs read into the same layout as MURA (muracli.data.manifest)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from manifest_trees import HEADER, STUDIES, manifest_rows, write_manifest, write_manifest_dataset
from PIL import Image

from muracli.data.cache_build import build_cache
from muracli.data.dataset import read_dataset
from muracli.data.decode import read_greyscale
from muracli.data.fit import fit_square
from muracli.data.layout import read_layout
from muracli.data.manifest import read_manifest
from muracli.data.montage import GAP, HEADER as MONTAGE_HEADER, LABEL_WIDTH, TILE, CAPTION, draw_montage
from muracli.errors import ConfigError, DataError


@pytest.fixture
def mine(tmp_path) -> Path:
    """A manifest of PNG and DICOM files; returns the manifest's path."""
    return write_manifest_dataset(tmp_path / "mine")


def kinds(layout) -> list[str]:
    return [p.kind for p in layout.problems]


def test_a_manifest_gives_the_layout_mura_gives(mine, tiny_mura):
    layout = read_dataset(manifest=mine)
    mura = read_layout(tiny_mura)
    assert (layout.kind, mura.kind) == ("manifest", "mura")
    assert list(layout.images.columns) == list(mura.images.columns)
    assert list(layout.studies.columns) == list(mura.studies.columns)
    assert dict(layout.images.dtypes) == dict(mura.images.dtypes)
    assert layout.problems == [] and layout.root == mine.resolve() and layout.base == mine.parent.resolve()
    assert len(layout.studies) == len(STUDIES) and len(layout.images) == sum(s[5] for s in STUDIES)

    wrist = layout.images[layout.images.study == "wrist-a"]
    assert wrist["view"].tolist() == [1, 2] and wrist["path"].tolist() == [
        "images/wrist-a/view1.png", "images/wrist-a/IM000002.dcm"]
    assert wrist["abs_path"].tolist() == [str(mine.parent.resolve() / p) for p in wrist["path"]]
    studies = layout.studies.set_index("study")
    assert studies.loc["knee-a", "body_part"] == "unknown"  # an empty body_part
    assert studies.loc["hand-c", "abs_path"] == str(mine.parent.resolve() / "images" / "hand-c")  # absolute paths
    assert tuple(studies.loc["wrist-c", ["split", "label", "patient", "n_images"]]) == ("valid", 1, "P06", 2)


def test_the_fingerprint_follows_the_manifest_and_its_images(mine):
    first = read_manifest(mine).fingerprint()
    assert read_manifest(mine).fingerprint() == first
    rows = manifest_rows(mine)
    rows[1][1] = "0" if rows[1][1] == "1" else "1"
    rows[2][1] = rows[1][1]  # the study's other view, so the manifest stays consistent
    write_manifest(mine, rows[1:], rows[0])
    relabelled = read_manifest(mine).fingerprint()
    assert relabelled != first
    image = mine.parent / "images" / "wrist-b" / "view1.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    assert read_manifest(mine).fingerprint() != relabelled


def test_files_not_on_disk_are_listed_and_left_out(mine):
    (mine.parent / "images" / "wrist-a" / "view1.png").unlink()
    for name in ("view1.png",):
        (mine.parent / "images" / "knee-b" / name).unlink()  # knee-b's only image
    layout = read_manifest(mine)
    problems = {(p.kind, p.path): p.severity for p in layout.problems}
    assert problems == {("missing_file", "images/wrist-a/view1.png"): "error",
                        ("missing_file", "images/knee-b/view1.png"): "error", ("empty_study", "knee-b"): "error"}
    assert "images/wrist-a/view1.png" not in set(layout.images["path"])
    assert "knee-b" not in set(layout.studies["study"])


def test_a_patient_in_both_splits_is_reported_as_for_mura(mine):
    rows = manifest_rows(mine)
    rows = [row[:5] + (["P01"] if row[2] == "wrist-c" else row[5:]) for row in rows]
    write_manifest(mine, rows[1:], rows[0])
    problems = [(p.kind, p.path, p.severity) for p in read_manifest(mine).problems]
    assert problems == [("patient_overlap", "P01", "error")]


def test_without_a_patient_column_each_study_is_its_own_patient(mine):
    rows = [row[:5] for row in manifest_rows(mine)]
    write_manifest(mine, rows[1:], rows[0])
    layout = read_manifest(mine)
    assert kinds(layout) == ["no_patient"] and layout.problems[0].severity == "warning"
    assert "no patient column" in layout.problems[0].detail
    assert (layout.studies["patient"] == layout.studies["study"]).all()


def test_an_unknown_xr_part_is_a_warning(mine):
    rows = manifest_rows(mine)
    rows[1][4] = rows[2][4] = "xr_knee"
    write_manifest(mine, rows[1:], rows[0])
    layout = read_manifest(mine)
    assert set(kinds(layout)) == {"unknown_body_part"}
    assert layout.studies.set_index("study").loc["wrist-a", "body_part"] == "XR_KNEE"


def _edit(mine: Path, line: int, column: str, value: str) -> None:
    rows = manifest_rows(mine)
    rows[line - 1][rows[0].index(column)] = value
    write_manifest(mine, rows[1:], rows[0])


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda m: _edit(m, 2, "label", "yes"), "line 2: label must be 0 or 1, got 'yes'"),
        (lambda m: _edit(m, 4, "split", "test"), "line 4: split must be train or valid, got 'test'"),
        (lambda m: _edit(m, 3, "path", "images/wrist-a/view1.png"),
         "line 3: images/wrist-a/view1.png is listed twice (first on line 2)"),
        (lambda m: _edit(m, 3, "path", str(m.parent / "images" / "wrist-a" / "view1.png")),
         "is listed twice (first on line 2)"),
        (lambda m: _edit(m, 3, "label", "0"), "study 'wrist-a' has 2 labels: 1 (line 2), 0 (line 3)"),
        (lambda m: _edit(m, 3, "split", "valid"), "study 'wrist-a' has 2 splits: train (line 2), valid (line 3)"),
        (lambda m: _edit(m, 3, "body_part", "XR_HAND"), "study 'wrist-a' has 2 body parts: XR_WRIST (line 2), XR_HAND (line 3)"),
        (lambda m: _edit(m, 3, "patient", "P99"), "study 'wrist-a' has 2 patients: P01 (line 2), P99 (line 3)"),
        (lambda m: _edit(m, 2, "body_part", "hand"), "line 2: body_part must be XR_<PART> (e.g. XR_WRIST) or empty, got 'hand'"),
        (lambda m: _edit(m, 2, "study", ""), "line 2: empty study"),
        (lambda m: write_manifest(m, [r[:3] for r in manifest_rows(m)[1:]], HEADER[:3]),
         "has no split column (its header: path,label,study)"),
        (lambda m: write_manifest(m, [], ["file", "class"]), "has no path, label, study, split columns"),
        (lambda m: write_manifest(m, [], HEADER), "lists no images"),
        (lambda m: m.write_text(""), "is empty"),
        (lambda m: m.write_bytes(b"path,label\xff\xfe\n"), "cannot read manifest"),
        (lambda m: write_manifest(m, [], HEADER + ["label"]), "has the column label twice"),
    ],
    ids=["label", "split", "duplicate", "duplicate-absolute", "two-labels", "two-splits", "two-parts",
         "two-patients", "body-part", "empty-study", "no-split-column", "no-columns", "no-rows", "empty",
         "not-utf8", "column-twice"],
)
def test_a_malformed_manifest_is_a_data_error_with_a_hint(mine, edit, expected):
    edit(mine)
    with pytest.raises(DataError) as caught:
        read_dataset(manifest=mine)
    assert expected in caught.value.message and str(mine.resolve()) in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.hint


def test_many_bad_rows_are_counted_after_the_first_five(mine):
    rows = manifest_rows(mine)
    rows = [rows[0]] + [row[:1] + ["2"] + row[2:] for row in rows[1:]]
    write_manifest(mine, rows[1:], rows[0])
    with pytest.raises(DataError) as caught:
        read_manifest(mine)
    assert caught.value.message.count("label must be 0 or 1") == 5
    assert f"and {len(rows) - 1 - 5} more" in caught.value.message


def test_a_folder_or_nothing_is_not_a_manifest(mine, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(tmp_path / "nothing.csv")
    with pytest.raises(DataError, match="is not a file") as caught:
        read_manifest(mine.parent)
    assert "--data" in caught.value.hint


def test_data_and_manifest_together_is_a_config_error(mine, tiny_mura):
    with pytest.raises(ConfigError, match="--data and --manifest"):
        read_dataset(tiny_mura, manifest=mine)


def test_data_pointing_at_a_csv_hints_at_manifest(mine):
    with pytest.raises(DataError) as caught:
        read_dataset(mine)
    assert f"--manifest {mine}" in caught.value.hint


def test_the_cache_of_a_manifest_sits_beside_it_and_holds_its_decoded_images(mine):
    (mine.parent / "images" / "hand-b" / "view1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # truncated
    (mine.parent / "images" / "wrist-b" / "IM000002.dcm").unlink()
    cache = build_cache(manifest=mine, size=24, workers=0)
    layout = read_manifest(mine)
    assert cache.path.parent == mine.parent.resolve() / "mura-cache"
    assert cache.manifest.fingerprint == layout.fingerprint() and cache.manifest.source == str(mine.resolve())
    skipped = {entry["path"]: entry["reason"] for entry in cache.manifest.skipped}
    assert skipped.keys() == {"images/hand-b/view1.png", "images/wrist-b/IM000002.dcm"}
    assert skipped["images/wrist-b/IM000002.dcm"] == "missing"
    assert cache.manifest.dropped_studies == ["hand-b"]
    train = cache.split("train")
    for i, (path, study) in enumerate(zip(train.index["path"], train.index["study"])):
        direct = fit_square(read_greyscale(mine.parent / path), 24, "pad")
        assert np.array_equal(train.pixels[i], direct), path  # PNG and DICOM alike
        assert study in {s[0] for s in STUDIES}
    assert any(p.endswith(".dcm") for p in train.index["path"])


def test_the_montage_of_a_manifest_shows_dicom_files_and_other_body_parts(mine, tmp_path):
    rows = manifest_rows(mine)
    write_manifest(mine, [row for row in rows[1:] if row[0].endswith(".dcm")], rows[0])
    out = draw_montage(read_manifest(mine), tmp_path / "montage.png", seed=0)
    with Image.open(out) as img:
        sheet = np.asarray(img.convert("L"), dtype=float)
    row_height = TILE + CAPTION + GAP
    assert sheet.shape[0] == MONTAGE_HEADER + 8 * row_height + GAP  # MURA's seven, then unknown
    # XR_WRIST (the seventh row): its first normal tile is a decoded DICOM radiograph, not "unreadable".
    top, left = MONTAGE_HEADER + 6 * row_height, LABEL_WIDTH + GAP
    assert sheet[top : top + TILE, left : left + TILE].mean() > 40
