"""Finding studies and images for `mura predict` (no model involved)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from muracli.errors import DataError
from muracli.predict.discover import discover_studies, natural_key

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32  # discovery never decodes: a PNG signature is enough
DICOM = b"\x00" * 128 + b"DICM" + b"\x00" * 16


def touch(path: Path, data: bytes = PNG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "incoming"
    touch(root / "XR_WRIST" / "patient1" / "study1" / "image1.png")
    touch(root / "XR_WRIST" / "patient1" / "study1" / "image10.png")
    touch(root / "XR_WRIST" / "patient1" / "study1" / "image2.jpg")
    touch(root / "XR_WRIST" / "patient1" / "study1" / "._image1.png", b"\x00\x05\x16\x07")
    touch(root / "XR_WRIST" / "patient1" / "study1" / ".DS_Store", b"junk")
    touch(root / "XR_WRIST" / "patient1" / "study1" / "notes.txt", b"text")
    touch(root / "XR_WRIST" / "patient1" / "study2" / "deep" / "er" / "image1.PNG")  # study 3 levels down
    touch(root / "mixed" / "image1.png")  # a folder with images AND a subfolder
    touch(root / "mixed" / "sub" / "image1.dcm", DICOM)
    touch(root / "dicom" / "IM0001", DICOM)  # DICOM without a suffix, found by its preamble
    touch(root / "dicom" / "README", b"not an image")  # a suffix-less non-image is ignored
    touch(root / ".hidden" / "study" / "image1.png")
    touch(root / "__MACOSX" / "study" / "._image1.png", b"\x00\x05\x16\x07")
    touch(root / "only_text" / "report.csv", b"a,b\n")
    return root


def names(studies, root: Path) -> list[str]:
    return [str(Path(s.name).relative_to(root)) for s in studies]


def test_nested_tree_is_walked_depth_first_in_sorted_order(tree):
    studies = list(discover_studies([tree]))
    # natural, case-insensitive order of folder names; a folder before its subfolders
    assert names(studies, tree) == [
        "dicom",
        "mixed",
        "mixed/sub",
        "XR_WRIST/patient1/study1",
        "XR_WRIST/patient1/study2/deep/er",
    ]
    first = studies[3]
    assert [p.name for p in first.images] == ["image1.png", "image2.jpg", "image10.png"]  # natural order
    assert [p.name for p in first.junk] == ["._image1.png"]
    assert first.key == "incoming/XR_WRIST/patient1/study1"  # relative to the PATH's parent, for file names
    assert [p.name for p in studies[0].images] == ["IM0001"]
    assert [p.name for p in studies[1].images] == ["image1.png"] and studies[1].folder == tree / "mixed"
    assert [p.name for p in studies[2].images] == ["image1.dcm"]


def test_order_is_deterministic(tree):
    once = [(s.name, s.images, s.junk) for s in discover_studies([tree])]
    again = [(s.name, s.images, s.junk) for s in discover_studies([tree])]
    assert once == again


def test_a_study_folder_and_a_single_image(tree):
    study = tree / "XR_WRIST" / "patient1" / "study1"
    (only,) = discover_studies([study])
    assert only.name == str(study) and only.key == "study1" and len(only.images) == 3
    image = study / "image2.jpg"
    (single,) = discover_studies([image])
    assert single.name == str(image) and single.images == (image,) and single.folder is None


def test_overlapping_paths_give_each_study_once(tree):
    studies = list(discover_studies([tree / "mixed", tree / "mixed" / "sub", tree]))
    assert names(studies, tree) == ["mixed", "mixed/sub", "dicom", "XR_WRIST/patient1/study1", "XR_WRIST/patient1/study2/deep/er"]


def test_missing_path_and_empty_folder_are_errors(tree, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list(discover_studies([tmp_path / "nope"]))
    with pytest.raises(DataError, match="no images found") as info:
        list(discover_studies([tree / "only_text"]))
    assert "study folder" in info.value.hint
    empty = []
    found = list(discover_studies([tree / "only_text", tree / "mixed"], on_empty=empty.append))
    assert len(found) == 2 and empty == [tree / "only_text"]


def test_discovery_is_lazy(tree):
    studies = discover_studies([tree])
    assert next(studies).name.endswith("dicom")  # a generator: the walk goes on only when asked


def test_natural_key():
    assert sorted(["image10.png", "image2.png", "Image1.png"], key=natural_key) == ["Image1.png", "image2.png", "image10.png"]


# --------------------------------------------------------------------------- DICOM exports


def test_a_flat_export_is_split_by_study_instance_uid(tmp_path):
    from image_files import write_flat_export

    pixels = [np.full((16, 16), 100 * (i + 1), np.uint16) for i in range(3)]
    expected = write_flat_export(tmp_path / "export", pixels)
    (tmp_path / "export" / "notes.txt").write_text("not an image")
    studies = list(discover_studies([tmp_path / "export"]))
    assert [s.name for s in studies] == [f"{tmp_path / 'export'} (study {n} of 3)" for n in (1, 2, 3)]
    assert [s.key for s in studies] == ["export/study1", "export/study2", "export/study3"]
    for study, (uid, accession, part, scored, skipped) in zip(studies, expected["studies"]):
        assert (study.study_uid, study.accession_number, study.body_part) == (uid, accession, part)
        assert [p.name for p in study.images] == sorted(scored + list(skipped), key=natural_key)  # all series, SR too
    assert len({s.part for s in studies}) == 3  # overlapping PATHs still give each study once
    assert len(list(discover_studies([tmp_path / "export", tmp_path]))) == 3


def test_one_study_in_a_folder_stays_the_folder(tmp_path):
    from image_files import write_dicom

    study = tmp_path / "incoming" / "scan"
    study.mkdir(parents=True)
    for name in ("IM1", "IM2"):
        write_dicom(study / name, np.zeros((8, 8), np.uint16), StudyInstanceUID="1.2.3", BodyPartExamined="SHOULDER")
    touch(study / "photo.png")  # a file without a StudyInstanceUID does not split the study
    (only,) = discover_studies([tmp_path / "incoming"])
    assert only.name == str(study) and only.part == 0 and len(only.images) == 3
    assert only.body_part == "XR_SHOULDER" and only.study_uid == "1.2.3" and only.accession_number == ""
    (single,) = discover_studies([study / "IM1"])
    assert single.body_part == "XR_SHOULDER" and single.folder is None


def test_a_dicomdir_lists_the_files_and_their_studies():
    """pydicom's DICOMDIR sample: 31 files of 6 studies below it, found through the DICOMDIR alone."""
    import pydicom

    root = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
    studies = list(discover_studies([root]))
    assert [len(s.images) for s in studies] == [3, 4, 7, 2, 4, 11]
    assert all(s.folder == root and s.name == f"{root} (study {s.part} of 6)" for s in studies)
    assert studies[0].body_part == "CSPINE" and studies[1].body_part == "HEAD"  # not one of MURA's: as written
    assert [p.relative_to(root).parts[:2] for p in studies[0].images] == [("77654033", f"CR{n}") for n in (1, 2, 3)]
    # The DICOMDIR itself as PATH gives the same studies.
    assert [s.images for s in discover_studies([root / "DICOMDIR"])] == [s.images for s in studies]


def test_files_are_dicom_by_content_whatever_their_name(tmp_path):
    from image_files import write_dicom

    folder = tmp_path / "pacs"
    folder.mkdir()
    write_dicom(folder / "IM000001", np.zeros((8, 8), np.uint16))
    write_dicom(folder / "1.2.840.10008.5.1.4.1.1.1.1", np.zeros((8, 8), np.uint16))  # suffix ".1"
    write_dicom(folder / "bare", np.zeros((8, 8), np.uint16), preamble=False)
    touch(folder / "random.bin", b"\x08\x00\x05\x00" + b"\xff" * 200)  # starts like a bare dataset, is not one
    (study,) = discover_studies([folder])
    assert [p.name for p in study.images] == ["1.2.840.10008.5.1.4.1.1.1.1", "bare", "IM000001"]


@pytest.mark.parametrize(("text", "part"), [
    ("HAND", "XR_HAND"), ("WRIST", "XR_WRIST"), ("ELBOW", "XR_ELBOW"), ("SHOULDER", "XR_SHOULDER"),
    ("FINGER", "XR_FINGER"), ("THUMB", "XR_FINGER"), ("FOREARM", "XR_FOREARM"), ("LOWER ARM", "XR_FOREARM"),
    ("HUMERUS", "XR_HUMERUS"), ("ARM", "XR_HUMERUS"), ("UPPER ARM", "XR_HUMERUS"), ("UPPER_ARM", "XR_HUMERUS"),
    ("xr left hand 3 views", "XR_HAND"), ("XR_WRIST", "XR_WRIST"), ("R RADIUS ULNA", "XR_FOREARM"),
    ("CHEST", None), ("", None),
])
def test_body_part_spellings(text, part):
    from muracli.data.dicom import mura_body_part

    assert mura_body_part(text) == part


def test_study_body_part_prefers_body_part_examined_and_reports_others_as_written():
    from muracli.data.dicom import DicomHeader, study_body_part

    assert study_body_part([DicomHeader(body_part_examined="KNEE", study_description="XR FOREARM")]) == "XR_FOREARM"
    assert study_body_part([DicomHeader(body_part_examined="ELBOW", study_description="XR HAND")]) == "XR_ELBOW"
    assert study_body_part([DicomHeader(body_part_examined="c-spine!")]) == "CSPINE"
    assert study_body_part([DicomHeader(study_description="Dr Who's knee")]) is None  # free text is never echoed
