"""Safe extraction of MURA zips (muracli.data.archive)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest

from muracli.data.archive import extract_mura_archive
from muracli.errors import ArchiveError, DataError

STUDY = "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/"
VALID_STUDY = "MURA-v1.1/valid/XR_HAND/patient11185/study1_negative/"
FILES = {
    "train_image_paths.csv": f"{STUDY}image1.png\n{STUDY}image2.png\n",
    "train_labeled_studies.csv": f"{STUDY},1\n",
    "valid_image_paths.csv": f"{VALID_STUDY}image1.png\n",
    "valid_labeled_studies.csv": f"{VALID_STUDY},0\n",
    "train/XR_WRIST/patient00001/study1_positive/image1.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
    "train/XR_WRIST/patient00001/study1_positive/image2.png": b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)),
    "valid/XR_HAND/patient11185/study1_negative/image1.png": b"\x89PNG\r\n\x1a\nvalid",
}


def make_zip(path: Path, prefix: str = "", extra: dict | None = None, with_dirs: bool = True) -> Path:
    """A MURA-shaped zip whose MURA-v1.1/ sits under ``prefix``; ``extra`` adds raw members."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if with_dirs:
            zf.writestr(f"{prefix}MURA-v1.1/", "")
            zf.writestr(f"{prefix}MURA-v1.1/train/", "")
        for name, content in FILES.items():
            zf.writestr(f"{prefix}MURA-v1.1/{name}", content)
        for name, content in (extra or {}).items():  # name: str or ZipInfo
            zf.writestr(name, content)
    return path


def tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def assert_extracted(root: Path) -> None:
    assert root.is_dir()
    for name, content in FILES.items():
        expected = content.encode() if isinstance(content, str) else content
        assert (root / name).read_bytes() == expected, name


def test_extracts_zip_with_mura_at_the_root(tmp_path):
    archive = make_zip(tmp_path / "MURA-v1.1.zip")
    calls = []
    root = extract_mura_archive(archive, tmp_path / "data", progress=lambda t, d, n, **kw: calls.append((t, d, n)))
    assert root == tmp_path / "data" / "MURA-v1.1"
    assert_extracted(root)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["MURA-v1.1"]  # no staging left
    assert calls[0] == ("extract", 0, len(FILES)) and calls[-1] == ("extract", len(FILES), len(FILES))


def test_extracts_zip_with_mura_one_level_down(tmp_path):
    archive = make_zip(tmp_path / "a.zip", prefix="download-2024/", extra={"download-2024/README.txt": "hi"})
    root = extract_mura_archive(archive, tmp_path / "data")
    assert root == tmp_path / "data" / "MURA-v1.1"
    assert_extracted(root)
    assert not (tmp_path / "data" / "download-2024").exists()
    assert not (tmp_path / "data" / "README.txt").exists()


def test_zip_without_directory_entries(tmp_path):
    archive = make_zip(tmp_path / "a.zip", with_dirs=False)
    assert_extracted(extract_mura_archive(archive, tmp_path / "data"))


def test_macos_junk_is_skipped(tmp_path):
    junk = {
        "__MACOSX/MURA-v1.1/train/._image1.png": b"\x00\x05\x16\x07junk",
        f"{STUDY}._image1.png": b"\x00\x05\x16\x07junk",
        "MURA-v1.1/.DS_Store": b"junk",
    }
    root = extract_mura_archive(make_zip(tmp_path / "a.zip", extra=junk), tmp_path / "data")
    assert_extracted(root)
    names = {p.name for p in (tmp_path / "data").rglob("*")}
    assert "__MACOSX" not in names and "._image1.png" not in names and ".DS_Store" not in names


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16  # S_IFLNK | rwxrwxrwx, as Info-ZIP stores links
    info.create_system = 3
    return info


@pytest.mark.parametrize(
    "member",
    [
        "../evil.txt",
        "MURA-v1.1/../../evil.txt",
        "MURA-v1.1/train/../../../evil.txt",
        "/abs/path/evil.txt",
        "C:/evil.txt",
        "MURA-v1.1\\..\\..\\evil.txt",
        _symlink("MURA-v1.1/train/link"),
        _symlink("__MACOSX/link"),  # unsafe even where it would be skipped as junk
    ],
    ids=["dotdot", "dotdot-inside", "dotdot-deep", "absolute", "drive", "backslash", "symlink", "junk-symlink"],
)
def test_malicious_member_rejects_the_archive_and_writes_nothing(tmp_path, member):
    archive = make_zip(tmp_path / "evil.zip", extra={member: "/etc/passwd"})
    before = tree(tmp_path)
    with pytest.raises(ArchiveError) as caught:
        extract_mura_archive(archive, tmp_path / "out" / "data")
    assert "unsafe" in caught.value.message
    assert tree(tmp_path) == before  # not even the destination folder was created
    assert not (tmp_path.parent / "evil.txt").exists()


def test_stored_name_is_not_normalised_by_zipfile(tmp_path):
    # Guard for the test above: the absolute name really is in the archive as written.
    archive = make_zip(tmp_path / "evil.zip", extra={"/abs/path/evil.txt": "x"})
    assert "/abs/path/evil.txt" in zipfile.ZipFile(archive).namelist()


def test_not_a_zip(tmp_path):
    fake = tmp_path / "MURA-v1.1.zip"
    fake.write_bytes(b"\x00\x01 definitely not a zip" * 100)
    with pytest.raises(ArchiveError, match="not a zip") as caught:
        extract_mura_archive(fake, tmp_path / "data")
    assert caught.value.hint
    assert not (tmp_path / "data").exists()


def test_web_page_saved_as_zip(tmp_path):
    page = tmp_path / "MURA-v1.1.zip"
    page.write_text("<!DOCTYPE html><html><body>Access denied</body></html>")
    with pytest.raises(ArchiveError, match="web page"):
        extract_mura_archive(page, tmp_path / "data")


def test_truncated_zip(tmp_path):
    archive = make_zip(tmp_path / "a.zip")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="not a zip file or is truncated"):
        extract_mura_archive(archive, tmp_path / "data")


def test_corrupt_member_leaves_nothing_behind(tmp_path):
    archive = make_zip(tmp_path / "a.zip")
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("MURA-v1.1/valid/XR_HAND/patient11185/study1_negative/image1.png")
    # Flip a byte of the member's data (after its local header) so its CRC no longer matches.
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    data_start = info.header_offset + 30 + name_len + extra_len
    raw[data_start + 2] ^= 0xFF
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="damaged"):
        extract_mura_archive(archive, tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []  # neither MURA-v1.1/ nor the staging folder


def test_zip_without_mura_folder(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("photos/cat.png", b"meow")
        zf.writestr("MURA-v1.1/readme.txt", b"no csv here")
    with pytest.raises(ArchiveError, match="not a MURA archive"):
        extract_mura_archive(archive, tmp_path / "data")


def test_mura_folder_too_deep_is_not_found(tmp_path):
    archive = make_zip(tmp_path / "a.zip", prefix="a/b/")
    with pytest.raises(ArchiveError, match="not a MURA archive"):
        extract_mura_archive(archive, tmp_path / "data")


def test_zip_bomb_member_is_refused_before_writing(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", extra={"MURA-v1.1/train/zeros.png": bytes(40 << 20)})
    with pytest.raises(ArchiveError, match="zip bomb"):
        extract_mura_archive(archive, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_member_lying_about_its_size_is_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip")
    target = "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png"
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(target)
    # Declare 10 bytes in both the local header and the central directory entry.
    raw[info.header_offset + 22 : info.header_offset + 26] = struct.pack("<I", 10)
    central = raw.index(b"PK\x01\x02")
    while raw[central + 46 : central + 46 + len(target)] != target.encode():
        central = raw.index(b"PK\x01\x02", central + 4)
    raw[central + 24 : central + 28] = struct.pack("<I", 10)
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError):
        extract_mura_archive(archive, tmp_path / "data")
    assert not (tmp_path / "data" / "MURA-v1.1").exists()


def test_existing_dataset_is_not_overwritten_without_permission(tmp_path):
    archive = make_zip(tmp_path / "a.zip")
    (tmp_path / "data" / "MURA-v1.1").mkdir(parents=True)
    (tmp_path / "data" / "MURA-v1.1" / "old.txt").write_text("old")
    with pytest.raises(DataError, match="already exists") as caught:
        extract_mura_archive(archive, tmp_path / "data")
    assert "--force" in caught.value.hint
    root = extract_mura_archive(archive, tmp_path / "data", overwrite=True)
    assert_extracted(root)
    assert not (root / "old.txt").exists()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["MURA-v1.1"]


def test_missing_archive_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        extract_mura_archive(tmp_path / "nope.zip", tmp_path / "data")
