"""`mura predict` on a PACS export: studies by StudyInstanceUID, skips, --with-ids, and no patient tag anywhere."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from image_files import PATIENT, write_flat_export
from PIL import Image

from muracli.predict.output import CSV_COLUMNS, ID_FIELDS, STUDY_FIELDS


@pytest.fixture(scope="module")
def export(synthetic_data, tmp_path_factory) -> tuple[Path, dict]:
    """A flat export of three radiograph studies (pixels from the synthetic valid split), a CT and an SR."""
    pngs = sorted((synthetic_data / "MURA-v1.1" / "valid").glob("XR_*/patient*/study*/image1.png"))[:3]
    pixels = [np.asarray(Image.open(p).convert("L")).astype(np.uint16) * 16 for p in pngs]  # 12-bit radiographs
    folder = tmp_path_factory.mktemp("pacs") / "export"
    return folder, write_flat_export(folder, pixels)


def identifying_values() -> list[str]:
    """Every identifying value of the files and its parts (``Doe``, ``Jane``, ...)."""
    values = [str(v) for v in PATIENT.values()]
    return values + [part for v in values for part in v.replace("^", " ").split() if len(part) > 3]


def assert_no_patient_tag(*texts: str) -> None:
    for text in texts:
        for value in identifying_values():
            assert value.lower() not in text.lower(), f"{value!r} leaked into the output"


def test_a_flat_export_is_three_studies_with_their_body_parts_and_skips(cli, export, trained_run, tmp_path):
    folder, expected = export
    out = tmp_path / "worklist.csv"
    result = cli("predict", folder, "-c", trained_run, "--json", "--with-ids", "--csv", out, "--cam", tmp_path / "cams")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n_studies"] == data["n_predicted"] == 3
    for study, (uid, accession, part, scored, skipped) in zip(data["studies"], expected["studies"]):
        assert tuple(study) == STUDY_FIELDS + ID_FIELDS
        assert study["body_part"] == part and study["study_uid"] == uid and study["accession_number"] == accession
        assert [Path(i["path"]).name for i in study["images"]] == scored
        assert {Path(s["path"]).name: s["reason"] for s in study["skipped"]} == skipped
    ct = data["studies"][0]["skipped"][0]
    assert "is a CT image" in ct["detail"]
    rows = list(csv.DictReader(out.open()))
    assert tuple(rows[0]) == CSV_COLUMNS + ID_FIELDS
    assert [(r["body_part"], r["study_uid"], r["accession_number"]) for r in rows] == [
        (part, uid, accession) for uid, accession, part, _, _ in expected["studies"]]

    # No patient tag in any output: JSON, CSV, stderr, the table, the overlays (pixels' text chunks and bytes).
    cams = sorted((tmp_path / "cams").glob("*.png"))
    assert len(cams) == 4
    table = cli("predict", folder, "-c", trained_run, "--with-ids")
    assert table.exit_code == 0 and "not_a_radiograph" in table.stdout and "not_an_image" in table.stdout
    chunks = [json.dumps(Image.open(p).text) for p in cams]
    raw = [p.read_bytes().decode("latin-1") for p in cams]
    assert_no_patient_tag(result.stdout, result.stderr, out.read_text(), table.stdout, table.stderr, *chunks, *raw)


def test_without_with_ids_no_identifier_is_written(cli, export, trained_run, tmp_path):
    folder, expected = export
    out = tmp_path / "worklist.csv"
    result = cli("predict", folder, "-c", trained_run, "--json", "--csv", out)
    assert result.exit_code == 0, result.stderr
    assert all(tuple(s) == STUDY_FIELDS for s in json.loads(result.stdout)["studies"])
    assert tuple(next(csv.DictReader(out.open()))) == CSV_COLUMNS
    for uid, accession, *_ in expected["studies"]:
        for value in filter(None, (uid, accession)):
            assert value not in result.stdout and value not in out.read_text() and value not in result.stderr


def test_any_modality_scores_the_ct_slice(cli, export, trained_run):
    folder, _ = export
    data = json.loads(cli("predict", folder, "-c", trained_run, "--json", "--any-modality").stdout)
    elbow = data["studies"][0]
    assert [Path(i["path"]).name for i in elbow["images"]] == ["1.2.840.113619.2.55.3.2", "IM000005"]
    assert elbow["skipped"] == []


def test_an_export_of_nothing_readable_is_an_error_without_patient_tags(cli, export, trained_run, tmp_path):
    folder, _ = export
    only = tmp_path / "ct_and_sr"
    only.mkdir()
    for name in ("IM000005", "IM000006"):
        (only / name).write_bytes((folder / name).read_bytes())
    result = cli("predict", only, "-c", trained_run)  # two StudyInstanceUIDs: two studies
    assert result.exit_code == 2 and "Error: none of the 2 studies could be predicted" in result.stderr
    assert "--any-modality" in result.stderr
    assert "not_a_radiograph" in result.stdout and "Traceback" not in result.stderr
    assert_no_patient_tag(result.stdout, result.stderr)
