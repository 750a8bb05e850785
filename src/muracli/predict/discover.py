"""Find the studies and images under the paths given to ``mura predict``.

A *study* is a folder that directly holds image files; its images are those
files, in natural order (``image2`` before ``image10``). Each PATH is

* an image file: a study of its own, named by the path as given;
* a folder: every folder at or below it that directly holds images is a
  study, found depth-first with ``os.scandir`` in sorted order, so the same
  tree always gives the same studies in the same order. A folder that holds
  images *and* subfolders is a study and its subfolders are searched too.

What counts as an image file: a name ending in a known image suffix (PNG,
JPEG, DICOM's ``.dcm``, TIFF, ...), or a file without a suffix that starts
like DICOM (the 128-byte preamble and ``DICM``) or like a PNG/JPEG. macOS
``._*`` companions of image files are kept as *junk* so they can be reported
as skipped; other hidden files and folders (``.git``, ``.DS_Store``) and
``__MACOSX`` are ignored. Folder symlinks are not followed inside a tree
(no loops); a PATH that is itself a symlink is.

Discovery is a generator: it holds one folder listing at a time, so memory
does not grow with the size of the tree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from muracli.errors import DataError

#: Suffixes taken as image files without looking inside (lower case).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".dcm", ".dicom", ".dic", ".tif", ".tiff", ".bmp", ".gif", ".webp"}
)
#: Folders never searched: macOS zip debris.
IGNORED_FOLDERS = frozenset({"__MACOSX"})

_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
_NUMBER = re.compile(r"(\d+)")

SUPPORTED_HINT = (
    "PATH should be a study folder (holding image files), one image, or a folder of study folders; "
    "images are PNG, JPEG or DICOM (.dcm or no suffix)"
)


@dataclass(frozen=True)
class Study:
    """One study to predict.

    ``name`` is the study as the user would type it (the PATH joined with
    the folder's path below it); ``key`` is the same path relative to the
    PATH's parent, for readable output file names; ``images`` are the files
    to decode; ``junk`` are ``._*`` companions, reported as skipped.
    """

    name: str
    folder: Path | None
    images: tuple[Path, ...]
    key: str
    junk: tuple[Path, ...] = ()

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
    seen: set[str] = set()  # resolved study folders: small strings, one per study
    found = 0
    empty: list[Path] = []
    for path in checked:
        count = 0
        for study in _studies_under(path):
            ident = os.path.realpath(study.folder if study.folder is not None else study.images[0])
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
    if path.is_file():
        yield Study(name=str(path), folder=None, images=(path,), key=path.name)
        return
    anchor = _anchor_name(path)
    # Depth-first with an explicit stack: no recursion limit on deep trees.
    stack: list[tuple[Path, str]] = [(path, anchor)]
    while stack:
        folder, key = stack.pop()
        images, junk, subfolders = _list_folder(folder)
        if images:
            yield Study(name=str(folder), folder=folder, images=tuple(images), key=key, junk=tuple(junk))
        for name in reversed(subfolders):
            stack.append((folder / name, f"{key}/{name}" if key else name))


def _anchor_name(path: Path) -> str:
    """The last component of a folder PATH, even for ``.`` or ``..``."""
    name = path.name
    if name in ("", ".", ".."):
        name = Path(os.path.abspath(path)).name
    return name or "root"


def _list_folder(folder: Path) -> tuple[list[Path], list[Path], list[str]]:
    images: list[str] = []
    junk: list[str] = []
    subfolders: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return [], [], []  # unreadable folder (permissions): nothing to predict there
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
        if _has_image_suffix(name) or (not os.path.splitext(name)[1] and _looks_like_image(entry.path)):
            images.append(name)
    images.sort(key=natural_key)
    junk.sort(key=natural_key)
    subfolders.sort(key=natural_key)
    return [folder / n for n in images], [folder / n for n in junk], subfolders


def _has_image_suffix(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _looks_like_image(path: str) -> bool:
    """A file without a suffix: DICOM (preamble + ``DICM``), PNG or JPEG by its first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or head.startswith(_MAGIC)
