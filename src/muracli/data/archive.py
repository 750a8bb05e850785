"""Safe extraction of the MURA zip (`mura download --archive`).

A zip is untrusted input: a member may name ``../../.bashrc``, an absolute
path, or a symbolic link through which a later member escapes. So the whole
member list is checked before a single byte is written, and anything unsafe
rejects the archive as a whole (no partial extraction of a hostile file).

Extraction writes into a hidden staging folder inside ``dest`` and renames
the finished ``MURA-v1.1/`` into place at the end, so an interrupted run
never leaves a half-written ``MURA-v1.1/`` that looks like a dataset. (A run
killed with SIGKILL can leave a ``.mura-extract-*`` folder behind; it is
never mistaken for data and can be deleted.)
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from muracli.data.layout import ROOT_NAME
from muracli.errors import ArchiveError, DataError
from muracli.progress import ProgressFn, silent

CHUNK_SIZE = 1 << 20
# Zip-bomb guard. MURA's PNGs are already compressed (ratio ~1) and its CSVs
# compress ~10x; a member above MAX_RATIO that is also big enough to matter is
# not something a real archive contains.
MAX_RATIO = 200
RATIO_FLOOR = 16 << 20  # members below this size cannot do harm, whatever their ratio
STAGING_PREFIX = ".mura-extract-"
ARCHIVE_HINT = (
    "download MURA-v1.1.zip again from Stanford (it may be incomplete or damaged), "
    "or run `mura download --synthetic` for a synthetic dataset"
)

_DRIVE_RE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]  # path below MURA-v1.1/


def extract_mura_archive(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> Path:
    """Extract the ``MURA-v1.1/`` folder of a MURA zip to ``dest/MURA-v1.1`` and return that path.

    ``MURA-v1.1/`` may sit at the root of the zip or one folder down
    (``something/MURA-v1.1/...``); members outside it and macOS junk
    (``__MACOSX/``, ``._*``, ``.DS_Store``) are skipped. Raises
    :class:`ArchiveError` for an unsafe member (absolute path, drive letter,
    ``..``, link or device), a possible zip bomb, a corrupt or non-zip file, or
    a zip without ``MURA-v1.1/train_image_paths.csv``; nothing is written in
    those cases (a corrupt member found mid-way leaves nothing behind either).
    Raises :class:`DataError` if ``dest/MURA-v1.1`` exists and ``overwrite`` is
    false, or the disk lacks the space. Progress: ``progress("extract", files_done, files_total)``.
    """
    archive, dest = Path(archive), Path(dest)
    report = progress or silent
    final = dest / ROOT_NAME
    if not archive.is_file():
        raise DataError(f"archive {archive} not found", "give the path of the MURA-v1.1.zip you downloaded")
    if (final.exists() or final.is_symlink()) and not overwrite:
        raise DataError(f"{final} already exists", "remove it, or pass --force to replace it")

    with _open_zip(archive) as zf:
        members = _plan(zf, archive)
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create {dest}: {exc.strerror or exc}") from None
        _check_space(members, dest)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))
        try:
            _extract(zf, archive, members, staging / ROOT_NAME, report)
            _move_into_place(staging / ROOT_NAME, final, staging, overwrite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _open_zip(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        with open(archive, "rb") as f:
            head = f.read(512).lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
            # The classic failure: an expired or unauthorised link saved as "MURA-v1.1.zip".
            raise ArchiveError(
                f"{archive} is a web page, not a zip",
                "the download link probably expired or needs a login: get a new link from "
                "Stanford or download MURA-v1.1.zip in a browser",
            ) from None
        raise ArchiveError(f"{archive} is not a zip file or is truncated", ARCHIVE_HINT) from None
    except OSError as exc:
        raise DataError(f"cannot read {archive}: {exc.strerror or exc}") from None


def _plan(zf: zipfile.ZipFile, archive: Path) -> list[_Member]:
    """Check every member and return those under the MURA root, before anything is written."""
    entries = []
    for info in zf.infolist():
        parts = _safe_parts(info, archive)
        if parts and not _is_junk(parts):
            entries.append((info, parts))
    prefix = _mura_prefix(entries, archive)
    depth = len(prefix)
    members = [
        _Member(info, parts[depth:])
        for info, parts in entries
        if parts[:depth] == prefix and len(parts) > depth
    ]
    for member in members:
        info = member.info
        if not info.is_dir() and info.file_size > max(RATIO_FLOOR, MAX_RATIO * info.compress_size):
            raise ArchiveError(
                f"{archive.name}: member {info.filename} expands {info.compress_size:,} bytes to "
                f"{info.file_size:,}; refusing a possible zip bomb",
                ARCHIVE_HINT,
            )
    return members


def _safe_parts(info: zipfile.ZipInfo, archive: Path) -> tuple[str, ...]:
    """The member's path components, or ArchiveError if it could land outside the target."""
    # Zips made on Windows may use backslashes; treat them as separators so that
    # "..\\evil" is seen for what it is.
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16  # Unix mode bits, 0 for zips made elsewhere
    problem = None
    if "\x00" in name:
        problem = "a NUL character in its name"
    elif name.startswith("/") or any(_DRIVE_RE.match(p) for p in name.split("/")):
        problem = "an absolute path"
    elif ".." in name.split("/"):
        problem = "a '..' path component"
    elif stat.S_ISLNK(mode):
        problem = "a symbolic link"
    elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        problem = "a device or other special file"
    if problem:
        raise ArchiveError(
            f"unsafe archive {archive.name}: member {info.filename!r} has {problem}; nothing was extracted",
            "only extract archives from a source you trust; get MURA-v1.1.zip from Stanford",
        )
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    # Belt and braces: whatever the checks above missed, the lexical target must stay inside.
    target = os.path.normpath(os.path.join("/staging", *parts))
    if parts and os.path.commonpath(["/staging", target]) != "/staging":
        raise ArchiveError(f"unsafe archive {archive.name}: member {info.filename!r} escapes the target folder")
    return parts


def _is_junk(parts: tuple[str, ...]) -> bool:
    # Copies made on macOS carry resource forks (__MACOSX/, ._image1.png) that are not images.
    return "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


def _mura_prefix(entries: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], archive: Path) -> tuple[str, ...]:
    """Path components of the MURA root in the zip: ``("MURA-v1.1",)`` or ``("x", "MURA-v1.1")``."""
    roots = {
        parts[:-1]
        for info, parts in entries
        if len(parts) in (2, 3)
        and parts[-2] == ROOT_NAME
        and parts[-1] == "train_image_paths.csv"
        and not info.is_dir()
    }
    if not roots:
        raise ArchiveError(
            f"{archive.name} is not a MURA archive: no {ROOT_NAME}/train_image_paths.csv in it",
            "use MURA-v1.1.zip from Stanford, or `mura download --synthetic` for a synthetic dataset",
        )
    shallowest = min(len(r) for r in roots)
    candidates = sorted(r for r in roots if len(r) == shallowest)
    if len(candidates) > 1:
        shown = ", ".join("/".join(r) + "/" for r in candidates)
        raise ArchiveError(f"{archive.name} holds several MURA folders ({shown})", "keep one copy in the zip")
    return candidates[0]


def _check_space(members: list[_Member], dest: Path) -> None:
    needed = sum(m.info.file_size for m in members)
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise DataError(
            f"not enough space in {dest}: extraction needs {needed / 1e9:.2f} GB, {free / 1e9:.2f} GB free",
            "free some space or extract elsewhere with --dest",
        )


def _extract(zf: zipfile.ZipFile, archive: Path, members: list[_Member], root: Path, report: ProgressFn) -> None:
    files = [m for m in members if not m.info.is_dir()]
    report("extract", 0, len(files))
    root.mkdir()
    made: set[Path] = {root}
    for m in members:
        if m.info.is_dir():
            (root.joinpath(*m.parts)).mkdir(parents=True, exist_ok=True)
    done = 0
    for m in files:
        target = root.joinpath(*m.parts)
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        try:
            _copy_member(zf, m.info, target, archive)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
            # CRC mismatch, damaged deflate stream, truncated data, encryption, exotic compression.
            raise ArchiveError(f"{archive.name} is damaged: {m.info.filename}: {exc}", ARCHIVE_HINT) from None
        except OSError as exc:
            raise DataError(
                f"cannot write {target}: {exc.strerror or exc}", "check free space and permissions of --dest"
            ) from None
        done += 1
        report("extract", done, len(files))


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, archive: Path) -> None:
    written = 0
    with zf.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(CHUNK_SIZE):
            written += len(chunk)
            # zipfile itself stops at the declared size, but a hand-made archive should not be
            # able to fill the disk through a reader bug: stop as soon as it lies.
            if written > info.file_size:
                raise ArchiveError(
                    f"{archive.name}: member {info.filename} holds more than its declared "
                    f"{info.file_size:,} bytes; refusing a possible zip bomb",
                    ARCHIVE_HINT,
                )
            out.write(chunk)


def _move_into_place(new: Path, final: Path, staging: Path, overwrite: bool) -> None:
    try:
        if overwrite and (final.exists() or final.is_symlink()):
            # Move the old copy into the staging folder, which is deleted afterwards: a crash
            # between the two renames leaves no MURA-v1.1/ at all, never a mix of old and new.
            os.rename(final, staging / "replaced")
        os.rename(new, final)
    except OSError as exc:
        raise DataError(f"cannot move the extracted data to {final}: {exc.strerror or exc}") from None
