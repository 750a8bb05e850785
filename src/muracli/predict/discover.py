"""Find the studies and images under the paths given to ``mura predict``.

A *study* is a folder that directly holds image files; its images are those
files, in natural order (``image2`` before ``image10``). Each PATH is

* an image file: a study of its own, named by the path as given;
* a folder: every folder at or below it that directly holds images is a
  study, found depth-first with ``os.scandir`` in sorted order, so the same
  tree always gives the same studies in the same order. A folder that holds
  images *and* subfolders is a study and its subfolders are searched too.

What counts as an image file: a name ending in a known image suffix (PNG,
JPEG, DICOM's ``.dcm``, TIFF, ...), or any other file that starts like DICOM
(``DICM`` after the 128-byte preamble, or a dataset pydicom parses without
it: PACS exports name files ``IM000001`` or ``1.2.840....``) or like a
PNG/JPEG. macOS ``._*`` companions of image files are kept as *junk* so they
can be reported as skipped; other hidden files and folders (``.git``,
``.DS_Store``) and ``__MACOSX`` are ignored. Folder symlinks are not followed
inside a tree (no loops); a PATH that is itself a symlink is.

DICOM files are grouped by what their headers say (``data.dicom``, read
without pixel data):

* a folder whose DICOM files carry more than one StudyInstanceUID (a flat
  PACS export) is split into one study per StudyInstanceUID, all series
  together, numbered in file order: ``export (study 1 of 3)``; files without
  a StudyInstanceUID (PNGs, say) form one more study after them;
* a folder holding a ``DICOMDIR`` (or a ``DICOMDIR`` given as PATH) is read
  through it: its studies are made of the files the DICOMDIR lists, grouped
  as above, and its subfolders are not searched again (a DICOMDIR pydicom
  cannot read is ignored and the folder searched as usual);
* a study's ``body_part`` comes from BodyPartExamined or StudyDescription
  (``XR_WRIST``, ..., or another part as written); the output prefers the
  ``XR_*`` part of the path. ``study_uid`` and ``accession_number`` are kept
  for ``--with-ids``; no patient tag is ever read.

Discovery is a generator: it holds one folder listing (and, for DICOM, that
folder's headers) at a time, so memory does not grow with the size of the
tree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from muracli.data.dicom import (
    DICOMDIR_NAME,
    DicomHeader,
    dicomdir_files,
    is_dicom_name,
    looks_like_dicom,
    read_header,
    study_body_part,
)
from muracli.errors import DataError

#: Suffixes taken as image files without looking inside (lower case).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".dcm", ".dicom", ".dic", ".tif", ".tiff", ".bmp", ".gif", ".webp"}
)
#: Folders never searched: macOS zip debris.
IGNORED_FOLDERS = frozenset({"__MACOSX"})

_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
_NUMBER = re.compile(r"(\d+)")

# How a listed file was recognised: by suffix or magic (an image), as DICOM (its header
# is read), or as what may be a preamble-less DICOM dataset (kept only if pydicom parses it).
_IMAGE, _DICOM, _BARE = "image", "dicom", "bare"

SUPPORTED_HINT = (
    "PATH should be a study folder (holding image files), one image, or a folder of study folders; "
    "images are PNG, JPEG or DICOM (.dcm, or any name)"
)


@dataclass(frozen=True)
class Study:
    """One study to predict.

    ``name`` is the study as the user would type it (the PATH joined with
    the folder's path below it, plus ``(study N of M)`` for one study of a
    flat export); ``key`` is the same path relative to the PATH's parent, for
    readable output file names; ``images`` are the files to decode; ``junk``
    are ``._*`` companions, reported as skipped. ``body_part``,
    ``study_uid`` and ``accession_number`` come from DICOM headers (None /
    empty without them); ``part`` numbers the studies of one folder (0 when
    the folder is one study).
    """

    name: str
    folder: Path | None
    images: tuple[Path, ...]
    key: str
    junk: tuple[Path, ...] = ()
    body_part: str | None = None
    study_uid: str = ""
    accession_number: str = ""
    part: int = 0

    @property
    def n_files(self) -> int:
        return len(self.images) + len(self.junk)


def natural_key(name: str) -> tuple:
    """Sort key that orders ``image2`` before ``image10`` (ties broken by the plain name)."""
    parts = _NUMBER.split(name)
    return tuple((0, int(p), p) if p.isdigit() else (1, p.lower(), p) for p in parts if p != ""), name


def check_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The PATH arguments as Paths; ``DataError`` when none is given or one does not exist."""
    if not paths:
        raise DataError("no PATH given", SUPPORTED_HINT)
    checked = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError(f"{path} does not exist", SUPPORTED_HINT)
        if not (path.is_dir() or path.is_file()):
            raise DataError(f"{path} is neither a folder nor a file", SUPPORTED_HINT)
        checked.append(path)
    return checked


def discover_studies(
    paths: Sequence[str | os.PathLike[str]],
    *,
    on_empty: Callable[[Path], None] | None = None,
) -> Iterator[Study]:
    """Yield the studies under ``paths`` in a deterministic order (see the module docstring).

    Raises ``DataError`` up front for a PATH that does not exist, and after
    the walk when no image was found under any PATH. ``on_empty(path)`` is
    called for a folder PATH that held no images while others did. A study
    reached twice (overlapping PATHs) is yielded once.
    """
    checked = check_paths(paths)
    seen: set[str] = set()  # resolved study folders (and part numbers): small strings, one per study
    found = 0
    empty: list[Path] = []
    for path in checked:
        count = 0
        for study in _studies_under(path):
            ident = os.path.realpath(study.folder if study.folder is not None else study.images[0])
            ident = f"{ident}\0{study.part}"
            if ident in seen:
                continue
            seen.add(ident)
            count += 1
            yield study
        if count == 0:
            empty.append(path)
        found += count
    if found == 0:
        what = ", ".join(str(p) for p in checked)
        raise DataError(f"no images found in {what}", SUPPORTED_HINT)
    if on_empty is not None:
        for path in empty:
            on_empty(path)


def _studies_under(path: Path) -> Iterator[Study]:
    if path.is_file() and path.name.upper() == DICOMDIR_NAME:  # the DICOMDIR itself: its media
        listed = dicomdir_files(path)
        if listed is not None:
            yield from _group(path.parent, _anchor_name(path.parent), [(f, _DICOM) for f in listed], ())
            return
    if path.is_file():
        kind = _kind(path.name, str(path))
        yield from _group(path, path.name, [(path, kind or _IMAGE)], (), single=True)
        return
    anchor = _anchor_name(path)
    # Depth-first with an explicit stack: no recursion limit on deep trees.
    stack: list[tuple[Path, str]] = [(path, anchor)]
    while stack:
        folder, key = stack.pop()
        files, junk, subfolders, dicomdir = _list_folder(folder)
        listed = dicomdir_files(dicomdir) if dicomdir is not None else None
        if listed is not None:  # the DICOMDIR says which files make up the media
            yield from _group(folder, key, [(f, _DICOM) for f in listed], junk)
            continue
        if files:
            yield from _group(folder, key, files, junk)
        for name in reversed(subfolders):
            stack.append((folder / name, f"{key}/{name}" if key else name))


def _group(
    folder: Path, key: str, files: list[tuple[Path, str]], junk: Sequence[Path], *, single: bool = False
) -> Iterator[Study]:
    """The studies of one folder's files: one, or one per StudyInstanceUID (see the module docstring)."""
    headers: dict[Path, DicomHeader | None] = {path: read_header(path) for path, kind in files if kind != _IMAGE}
    kept = [path for path, kind in files if single or kind != _BARE or headers[path] is not None]
    if not kept:
        return
    by_uid: dict[str, list[Path]] = {}
    rest: list[Path] = []
    for path in kept:
        header = headers.get(path)
        if header is not None and header.study_uid:
            by_uid.setdefault(header.study_uid, []).append(path)
        else:
            rest.append(path)
    if single or len(by_uid) <= 1:
        name = str(folder)
        yield _study(name, None if single else folder, kept, key, junk, [headers.get(p) for p in kept])
        return
    groups = list(by_uid.values()) + ([rest] if rest else [])
    for n, paths in enumerate(groups, 1):
        yield _study(f"{folder} (study {n} of {len(groups)})", folder, paths, f"{key}/study{n}",
                     junk if n == 1 else (), [headers.get(p) for p in paths], part=n)


def _study(name: str, folder: Path | None, images: list[Path], key: str, junk: Sequence[Path],
           headers: list[DicomHeader | None], *, part: int = 0) -> Study:
    known = [h for h in headers if h is not None]
    return Study(
        name=name, folder=folder, images=tuple(images), key=key, junk=tuple(junk), part=part,
        body_part=study_body_part(known),
        study_uid=next((h.study_uid for h in known if h.study_uid), ""),
        accession_number=next((h.accession_number for h in known if h.accession_number), ""),
    )


def _anchor_name(path: Path) -> str:
    """The last component of a folder PATH, even for ``.`` or ``..``."""
    name = path.name
    if name in ("", ".", ".."):
        name = Path(os.path.abspath(path)).name
    return name or "root"


def _list_folder(folder: Path) -> tuple[list[tuple[Path, str]], list[Path], list[str], Path | None]:
    """A folder's image files (with how each was recognised), junk, subfolders and DICOMDIR."""
    images: list[tuple[str, str]] = []
    junk: list[str] = []
    subfolders: list[str] = []
    dicomdir = None
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return [], [], [], None  # unreadable folder (permissions): nothing to predict there
    for entry in entries:
        name = entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            is_file = entry.is_file()
        except OSError:
            continue
        if is_dir:
            if not name.startswith(".") and name not in IGNORED_FOLDERS:
                subfolders.append(name)
            continue
        if not is_file:
            continue
        if name.startswith("._"):
            if _has_image_suffix(name):
                junk.append(name)
            continue
        if name.startswith("."):
            continue
        if name.upper() == DICOMDIR_NAME:
            dicomdir = folder / name
            continue
        kind = _kind(name, entry.path)
        if kind is not None:
            images.append((name, kind))
    images.sort(key=lambda item: natural_key(item[0]))
    junk.sort(key=natural_key)
    subfolders.sort(key=natural_key)
    return [(folder / n, kind) for n, kind in images], [folder / n for n in junk], subfolders, dicomdir


def _has_image_suffix(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _kind(name: str, path: str) -> str | None:
    """How ``name`` is an image file (``_IMAGE``, ``_DICOM``, ``_BARE``), or None when it is not one.

    A known suffix is trusted without opening the file; any other file is
    recognised by its first 132 bytes.
    """
    if is_dicom_name(name):
        return _DICOM
    if _has_image_suffix(name):
        return _IMAGE
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return None
    if head.startswith(_MAGIC):
        return _IMAGE
    if head[128:132] == b"DICM":
        return _DICOM
    return _BARE if looks_like_dicom(head) else None
