"""Finding studies and images for `mura predict` (no model involved)."""

from __future__ import annotations

from pathlib import Path

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
