"""A dataset of one's own radiographs, listed in a CSV manifest (``--manifest FILE``).

One row per image, with a header::

    path,label,study,split,body_part,patient
    images/p1/s1/view1.png,1,p1-s1,train,XR_WRIST,p1
    /pacs/export/IM000002.dcm,0,p2-s1,valid,,p2

``path`` is relative to the CSV's folder, or absolute; ``label`` 0 (normal) or
1 (abnormal); ``study`` a name unique to the study (its images share it);
``split`` ``train`` or ``valid``; optional ``body_part`` (``XR_<PART>``, empty
for ``unknown``) and ``patient``. Other columns are ignored. The images may be
in any format the decoder reads (``muracli.data.decode``).

``read_manifest`` turns it into the ``MuraLayout`` that ``read_layout`` gives
for MURA, so stats, the cache, training and evaluation read both the same
way. A malformed manifest (a missing column, a bad label or split, a path
listed twice, a study with two labels, splits, body parts or patients) is a
``DataError`` naming every bad row; listed files that are not on disk are
problems, as for MURA, and left out.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from muracli.choices import SPLITS
from muracli.data.layout import BODY_PARTS, MuraLayout, Problem, patient_overlap, study_table
from muracli.errors import DataError

REQUIRED_COLUMNS = ("path", "label", "study", "split")
OPTIONAL_COLUMNS = ("body_part", "patient")
UNKNOWN_PART = "unknown"
MANIFEST_HINT = (
    "a manifest is a CSV with the header path,label,study,split (optional: body_part,patient) and one row per "
    "image: path relative to the CSV's folder or absolute, label 0 (normal) or 1 (abnormal), study a name its "
    "images share, split train or valid, body_part XR_<PART> or empty"
)
MAX_SHOWN = 5  # bad rows named in the error; the rest are counted
# What one study's rows must agree on, and how an error names it.
_STUDY_FIELDS = (("label", "labels"), ("split", "splits"), ("body_part", "body parts"), ("patient", "patients"))


def read_manifest(path: str | os.PathLike[str]) -> MuraLayout:
    """Parse the manifest at ``path`` and check it against the files on disk."""
    import pandas as pd

    manifest = _manifest_file(path)
    header, rows = _read_rows(manifest)
    parsed = _parse_rows(rows, manifest.parent, has_patient="patient" in header)
    if parsed.errors:
        shown = "; ".join(parsed.errors[:MAX_SHOWN])
        more = f"; and {len(parsed.errors) - MAX_SHOWN} more" if len(parsed.errors) > MAX_SHOWN else ""
        raise DataError(f"manifest {manifest}: {shown}{more}", MANIFEST_HINT)

    problems: list[Problem] = []
    present = []
    for row in parsed.rows:
        if os.path.isfile(row["abs_path"]):
            present.append(row)
        else:
            problems.append(Problem("missing_file", "listed in the manifest but not on disk", row["path"], "error"))
    listed = dict.fromkeys(row["study"] for row in parsed.rows)
    kept = {row["study"] for row in present}
    problems.extend(Problem("empty_study", "listed but has no image on disk", s, "error") for s in listed if s not in kept)
    problems.extend(parsed.warnings)

    columns = ["split", "body_part", "patient", "study", "view", "label", "path", "abs_path"]
    images = pd.DataFrame(present, columns=columns).astype({"view": "int64", "label": "int64"})
    studies = study_table(images)
    problems.extend(patient_overlap(studies))
    return MuraLayout(root=manifest, images=images, studies=studies, problems=problems, kind="manifest")


def _manifest_file(path: str | os.PathLike[str]) -> Path:
    manifest = Path(path)
    if not manifest.exists():
        raise DataError(f"manifest {manifest} does not exist", MANIFEST_HINT)
    if not manifest.is_file():
        hint = f"for a MURA folder pass --data {manifest}" if manifest.is_dir() else MANIFEST_HINT
        raise DataError(f"manifest {manifest} is not a file", hint)
    return manifest.resolve()


def _read_rows(manifest: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header (lower-case names) and the non-blank rows, each with its line number."""
    try:
        text = manifest.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read manifest {manifest}: {exc}", "the manifest must be a UTF-8 CSV file") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip().lower() for name in next(reader)]
        lines = [(reader.line_num, row) for row in reader]
    except StopIteration:
        raise DataError(f"manifest {manifest} is empty", MANIFEST_HINT) from None
    except csv.Error as exc:
        raise DataError(f"manifest {manifest} is not a valid CSV (line {reader.line_num}): {exc}", MANIFEST_HINT) from exc
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise DataError(
            f"manifest {manifest} has no {', '.join(missing)} column{'s' if len(missing) > 1 else ''} "
            f"(its header: {','.join(header) or 'empty'})",
            MANIFEST_HINT,
        )
    twice = sorted({name for name in header if header.count(name) > 1 and name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS})
    if twice:
        raise DataError(f"manifest {manifest} has the column {', '.join(twice)} twice", MANIFEST_HINT)
    rows = []
    for line, cells in lines:
        if not any(cell.strip() for cell in cells):
            continue
        values = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header)}
        rows.append((line, values))
    if not rows:
        raise DataError(f"manifest {manifest} lists no images", MANIFEST_HINT)
    return header, rows


@dataclass
class _Parsed:
    rows: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def _parse_rows(rows: list[tuple[int, dict[str, str]]], folder: Path, *, has_patient: bool) -> _Parsed:
    """Check each row, then that each study's rows agree; number the views of each study."""
    parsed = _Parsed()
    first_line: dict[str, int] = {}  # abs path -> the line that listed it first
    views: dict[str, int] = defaultdict(int)
    no_patient = 0
    for line, values in rows:
        row = _parse_row(line, values, parsed)
        if row is None:
            continue
        row["abs_path"] = os.path.normpath(os.path.join(folder, row["path"]))
        if row["abs_path"] in first_line:
            parsed.errors.append(f"line {line}: {row['path']} is listed twice (first on line {first_line[row['abs_path']]})")
            continue
        first_line[row["abs_path"]] = line
        if not row["patient"]:
            no_patient += 1
            row["patient"] = row["study"]  # a study of its own patient: no overlap can be found
        views[row["study"]] += 1
        row["view"] = views[row["study"]]
        parsed.rows.append(row)
    parsed.errors.extend(_study_conflicts(parsed.rows))
    if no_patient:
        which = "no patient column" if not has_patient else f"{no_patient} rows without a patient"
        parsed.warnings.append(Problem(
            "no_patient", f"{which}: each such study counts as its own patient, so a patient in both train and "
            "valid cannot be found"))
    # Rows grouped by study (in order of first appearance), views in order: as MURA's CSVs list them.
    order = {study: i for i, study in enumerate(dict.fromkeys(row["study"] for row in parsed.rows))}
    parsed.rows.sort(key=lambda row: (order[row["study"]], row["view"]))
    return parsed


def _parse_row(line: int, values: dict[str, str], parsed: _Parsed) -> dict | None:
    errors = []
    path, label, study = values["path"], values["label"], values["study"]
    split = values["split"].lower()
    if not path:
        errors.append("empty path")
    if label not in ("0", "1"):
        errors.append(f"label must be 0 or 1, got {label!r}")
    if not study:
        errors.append("empty study")
    if split not in SPLITS:
        errors.append(f"split must be {' or '.join(SPLITS)}, got {values['split']!r}")
    part = values.get("body_part", "").upper()
    if part in ("", UNKNOWN_PART.upper()):
        part = UNKNOWN_PART
    elif not part.startswith("XR_") or len(part) == 3:
        errors.append(f"body_part must be XR_<PART> (e.g. XR_WRIST) or empty, got {values['body_part']!r}")
    elif part not in BODY_PARTS:
        parsed.warnings.append(Problem("unknown_body_part", f"{part} is not one of MURA's seven study types", path))
    if errors:
        parsed.errors.extend(f"line {line}: {error}" for error in errors)
        return None
    return {"split": split, "body_part": part, "patient": values.get("patient", ""), "study": study,
            "label": int(label), "path": path, "line": line}


def _study_conflicts(rows: list[dict]) -> list[str]:
    """A study is one patient's examination of one body part: its rows must agree."""
    seen: dict[tuple[str, str], dict] = defaultdict(dict)  # (study, field) -> {value: first line}
    for row in rows:
        for key, _ in _STUDY_FIELDS:
            seen[row["study"], key].setdefault(row[key], row["line"])
    errors = []
    for study in dict.fromkeys(row["study"] for row in rows):
        for key, plural in _STUDY_FIELDS:
            values = seen[study, key]
            if len(values) > 1:
                where = ", ".join(f"{value} (line {line})" for value, line in values.items())
                errors.append(f"study {study!r} has {len(values)} {plural}: {where}")
    return errors
