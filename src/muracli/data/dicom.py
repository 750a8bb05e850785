"""DICOM files as PACS export them: found by content, grouped by study, read cheaply.

* ``looks_like_dicom(head)``: ``DICM`` at byte 128, or the start of a dataset
  written without the 128-byte preamble (a group 0002 or 0008 element, in
  explicit or implicit VR, little or big endian). A file that passes and
  that pydicom then parses is DICOM, whatever it is called.
* ``read_header(path)``: the few tags that group files into studies
  (``HEADER_TAGS``), read with ``specific_tags`` and ``stop_before_pixels``
  so the pixel data is never loaded. Patient tags are never read.
* ``study_body_part(headers)``: BodyPartExamined, else StudyDescription,
  mapped onto MURA's seven study types (``XR_HAND``, ...); another body part
  comes back as written in BodyPartExamined (``CSPINE``), never the free text
  of StudyDescription.
* ``dicomdir_files(path)``: the files a DICOMDIR lists, in its order.

This module imports only the standard library at load time (pydicom inside
the functions), so discovery and ``mura --help`` stay light.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Modalities of plain radiographs: computed, digital and conventional radiography.
RADIOGRAPH_MODALITIES = ("CR", "DX", "RG")
#: File-name suffixes taken for DICOM without looking inside (lower case).
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
#: The name of a DICOM media directory file.
DICOMDIR_NAME = "DICOMDIR"
#: The tags ``read_header`` reads: what groups files into studies, nothing that names a patient.
HEADER_TAGS = ("SOPClassUID", "Modality", "StudyInstanceUID", "AccessionNumber", "BodyPartExamined", "StudyDescription")

_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
_NOT_WORD = re.compile(r"[^A-Z]+")
_NOT_CODE = re.compile(r"[^A-Z0-9 _]+")

# Words of BodyPartExamined / StudyDescription -> MURA study type. DICOM's defined
# terms (PS3.16 Annex L) use ARM for the upper arm; descriptions add plurals and bones.
_PART_WORDS = {
    "HAND": "XR_HAND", "HANDS": "XR_HAND",
    "WRIST": "XR_WRIST", "WRISTS": "XR_WRIST",
    "ELBOW": "XR_ELBOW", "ELBOWS": "XR_ELBOW",
    "SHOULDER": "XR_SHOULDER", "SHOULDERS": "XR_SHOULDER",
    "FINGER": "XR_FINGER", "FINGERS": "XR_FINGER", "THUMB": "XR_FINGER",
    "FOREARM": "XR_FOREARM", "FOREARMS": "XR_FOREARM", "LOWERARM": "XR_FOREARM", "RADIUS": "XR_FOREARM",
    "ULNA": "XR_FOREARM",
    "HUMERUS": "XR_HUMERUS", "ARM": "XR_HUMERUS", "UPPERARM": "XR_HUMERUS",
}


@dataclass(frozen=True)
class DicomHeader:
    """The grouping tags of one DICOM file (empty strings where a tag is absent)."""

    study_uid: str = ""
    accession_number: str = ""
    modality: str = ""
    body_part_examined: str = ""
    study_description: str = ""


def looks_like_dicom(head: bytes) -> bool:
    """Whether the first 132 bytes of a file are those of a DICOM file (with or without its preamble)."""
    if head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    if head[0:2] in (b"\x02\x00", b"\x08\x00"):
        order = "little"
    elif head[0:2] == b"\x00\x08":
        order = "big"
    else:
        return False
    if head[4:6] in _VRS:  # explicit VR
        return True
    return int.from_bytes(head[4:8], order) < 1 << 16  # implicit VR: a 4-byte length, small for these groups


def is_dicom_name(name: str) -> bool:
    return name.lower().endswith(DICOM_SUFFIXES)


def read_header(path: str | os.PathLike[str]) -> DicomHeader | None:
    """The ``HEADER_TAGS`` of ``path``, or None when pydicom finds no DICOM dataset there."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on every lenient read
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(HEADER_TAGS))
    except Exception:  # unreadable, truncated or not DICOM: the decoder reports it
        return None
    if not any(tag in ds for tag in HEADER_TAGS):
        return None

    def text(keyword: str) -> str:
        try:
            value = ds.get(keyword)
        except Exception:  # a malformed value
            return ""
        return "" if value is None else str(value).strip()

    return DicomHeader(
        study_uid=text("StudyInstanceUID"),
        accession_number=text("AccessionNumber"),
        modality=text("Modality").upper(),
        body_part_examined=text("BodyPartExamined"),
        study_description=text("StudyDescription"),
    )


def mura_body_part(text: str) -> str | None:
    """The MURA study type named in ``text`` (``"LEFT UPPER ARM"`` -> ``XR_HUMERUS``), first mention first."""
    words = [w for w in _NOT_WORD.split(str(text).upper()) if w]
    for i, word in enumerate(words):
        if word in ("UPPER", "LOWER") and i + 1 < len(words) and words[i + 1] == "ARM":
            return _PART_WORDS[word + "ARM"]
        if word in _PART_WORDS:
            return _PART_WORDS[word]
    return None


def study_body_part(headers: Iterable[DicomHeader]) -> str | None:
    """The body part of a study from its files' headers (see the module docstring); None when none is given."""
    headers = list(headers)
    for field in ("body_part_examined", "study_description"):
        for header in headers:
            part = mura_body_part(getattr(header, field))
            if part is not None:
                return part
    for header in headers:
        code = _NOT_CODE.sub("", header.body_part_examined.upper()).strip()[:16]
        if code:
            return code
    return None


def dicomdir_files(path: str | os.PathLike[str]) -> list[Path] | None:
    """The files the DICOMDIR ``path`` lists (patient, study, series order), or None when it cannot be read."""
    import pydicom
    from pydicom.fileset import FileSet

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [Path(instance.path) for instance in FileSet(pydicom.dcmread(path, force=True))]
    except Exception:  # not a DICOMDIR, or a broken one: the folder is searched as usual
        return None
