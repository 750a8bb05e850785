"""Read and validate a MURA v1.1 tree.

MURA ships four header-less CSVs beside its ``train/`` and ``valid/`` folders:

* ``<split>_image_paths.csv``: one image path per row,
  ``MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive/image1.png``;
* ``<split>_labeled_studies.csv``: ``<study path>/,<0|1>`` (trailing slash,
  1 = abnormal).

Paths are relative to the folder that holds ``MURA-v1.1/``. ``read_layout``
turns them into an image table and a study table and lists every problem it
finds instead of stopping at the first, so a user can fix a broken copy in
one go. A dataset of one's own radiographs listed in a CSV manifest
(``muracli.data.manifest``) becomes the same ``MuraLayout``, so every
command reads either one the same way (``muracli.data.dataset``).
``MuraLayout.restricted`` keeps some body parts only (``--body-part``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from muracli.choices import SPLITS
from muracli.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ROOT_NAME = "MURA-v1.1"
BODY_PARTS = (
    "XR_ELBOW",
    "XR_FINGER",
    "XR_FOREARM",
    "XR_HAND",
    "XR_HUMERUS",
    "XR_SHOULDER",
    "XR_WRIST",
)
#: The body part of a study whose path names none of them (``metrics.aggregate.body_part_of``).
UNKNOWN_BODY_PART = "unknown"
#: Every name ``--body-part`` accepts, in the order runs record them.
KNOWN_BODY_PARTS = (*BODY_PARTS, UNKNOWN_BODY_PART)
BODY_PART_HELP = "Only these body parts, comma-separated (XR_WRIST,XR_HAND; the XR_ is optional). [default: all]"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DOWNLOAD_HINT = (
    "run `mura download --synthetic` for a synthetic dataset, or `mura download --archive "
    "MURA-v1.1.zip` for the real one, then pass --data DIR (default $MURA_DATA, else ./data)"
)

_STUDY_RE = re.compile(r"^study(\d+)_(positive|negative)$")
_VIEW_RE = re.compile(r"^image(\d+)\.[A-Za-z]+$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the tree. ``severity`` is ``error`` or ``warning``."""

    kind: str
    detail: str
    path: str = ""
    severity: str = "warning"


@dataclass
class MuraLayout:
    """A parsed MURA tree, or a manifest's dataset (``kind`` ``mura`` or ``manifest``).

    ``root`` is the ``MURA-v1.1`` folder, or the manifest CSV itself.
    ``images`` has one row per listed image that exists on disk, with columns
    split, body_part, patient, study (MURA: the study path as in the CSVs,
    trailing slash included; a manifest: its study name), view (the N of
    imageN; a manifest: the image's place in its study, from 1), label (0
    normal, 1 abnormal), path (as in the CSV) and abs_path. ``studies`` has
    one row per study with at least one image: split, body_part, patient,
    study, label, n_images, abs_path (the folder that holds its images).
    """

    root: Path
    images: "pd.DataFrame"
    studies: "pd.DataFrame"
    problems: list[Problem] = field(default_factory=list)
    junk_files: int = 0
    kind: str = "mura"
    body_parts: list[str] | None = None  # set by ``restricted``: the tables hold only these parts

    @property
    def base(self) -> Path:
        """The folder that holds ``MURA-v1.1/`` (or the manifest); the default cache goes under it."""
        return self.root.parent

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def split(self, name: str) -> "pd.DataFrame":
        return self.images[self.images["split"] == name]

    def restricted(self, body_parts: list[str] | None) -> "MuraLayout":
        """This layout with only the images, studies and problems of ``body_parts`` (None: itself).

        A ``DataError`` when the dataset has no study of them.
        """
        if body_parts is None:
            return self
        parts = parse_body_parts(body_parts)
        check_not_empty(self.studies, parts, f"the dataset at {self.root}")
        studies = self.studies[in_body_parts(self.studies, parts)]
        patients = set(studies["patient"])
        problems = [p for p in self.problems if _problem_in(p, parts, patients)]
        images = self.images[in_body_parts(self.images, parts)]
        return replace(self, images=images, studies=studies, problems=problems, body_parts=parts)

    def fingerprint(self) -> str:
        """A hash of the CSVs and the size and mtime of every listed image.

        A cache built from this layout stores it; any edit to the labels, an
        added or replaced image changes it, so a stale cache is never reused.
        """
        digest = hashlib.sha256()
        if self.body_parts is not None:  # a restricted layout is another dataset
            digest.update(("body_parts=" + ",".join(self.body_parts) + "\n").encode())
        if self.kind == "manifest":
            digest.update(b"manifest\0" + self.root.read_bytes())
        else:
            for split in SPLITS:
                for kind in ("image_paths", "labeled_studies"):
                    digest.update((self.root / f"{split}_{kind}.csv").read_bytes())
        for path in self.images["abs_path"]:
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()


# -- body parts: ``in_body_parts`` is the one filter of every command's --body-part: ``mura stats`` and
# ``mura preprocess`` apply it to the layout's tables (``MuraLayout.restricted``), ``mura train`` and
# ``mura evaluate`` to a cache split's index (``CacheSplit.restricted``), so an unfiltered cache serves
# a body-part run.


def parse_body_parts(value: str | Iterable[str] | None) -> list[str] | None:
    """``"XR_WRIST,hand"`` (or a list of names) as ``["XR_HAND", "XR_WRIST"]``: checked, without
    duplicates, in ``KNOWN_BODY_PARTS`` order; None (or nothing) means every body part."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else list(value)
    parts = set()
    for name in (str(n).strip() for n in names):
        if not name:
            continue
        canonical = name.lower() if name.lower() == UNKNOWN_BODY_PART else name.upper()
        if canonical != UNKNOWN_BODY_PART and not canonical.startswith("XR_"):
            canonical = "XR_" + canonical
        if canonical not in KNOWN_BODY_PARTS:
            raise ConfigError(
                f"unknown body part {name!r}",
                f"choose from {', '.join(KNOWN_BODY_PARTS)} (comma-separated, e.g. --body-part XR_WRIST,XR_HAND)",
            )
        parts.add(canonical)
    if not parts:
        raise ConfigError("--body-part names no body part", f"e.g. --body-part XR_WRIST; choose from {', '.join(BODY_PARTS)}")
    return [p for p in KNOWN_BODY_PARTS if p in parts]


def in_body_parts(table: "pd.DataFrame", parts: list[str] | None) -> "np.ndarray":
    """The rows of ``table`` (any table with a ``body_part`` column) of ``parts``; all rows for None."""
    import numpy as np

    if parts is None:
        return np.ones(len(table), dtype=bool)
    return table["body_part"].isin(parse_body_parts(parts)).to_numpy(dtype=bool)


def check_not_empty(table: "pd.DataFrame", parts: list[str] | None, where: str) -> None:
    """A ``DataError`` naming the body parts ``where`` does have, when restricting ``table`` left nothing."""
    if parts is None or bool(in_body_parts(table, parts).any()):
        return
    present = sorted(set(table["body_part"]))
    raise DataError(
        f"{where} has no studies of {', '.join(parts)}",
        f"it holds {', '.join(present) if present else 'no studies at all'}; pick --body-part among those",
    )


_PROBLEM_PART_RE = re.compile(r"(?:^|/)(?:train|valid)/([^/]+)/")


def _problem_in(problem: Problem, parts: list[str], patients: set[str]) -> bool:
    """Whether ``problem`` concerns the body parts ``parts`` (or their ``patients``), or no body part at all."""
    if problem.kind == "patient_overlap":
        return problem.path in patients
    match = _PROBLEM_PART_RE.search(problem.path.replace("\\", "/"))
    return match is None or match.group(1) in parts


def default_data_dir() -> Path:
    env = os.environ.get("MURA_DATA")
    return Path(env) if env else Path("data")


def resolve_root(data: Path | str | None = None) -> Path:
    """Find the ``MURA-v1.1`` folder from ``--data`` (the folder or its parent)."""
    given = Path(data) if data is not None else default_data_dir()
    where = "--data" if data is not None else ("$MURA_DATA" if os.environ.get("MURA_DATA") else "./data")
    if not given.exists():
        raise DataError(f"data folder {given} ({where}) does not exist", DOWNLOAD_HINT)
    if not given.is_dir():
        hint = f"for a CSV manifest of your own images pass --manifest {given}" if given.suffix.lower() == ".csv" else DOWNLOAD_HINT
        raise DataError(f"{given} ({where}) is not a folder", hint)
    for candidate in (given, given / ROOT_NAME):
        if (candidate / "train_image_paths.csv").is_file():
            return candidate.resolve()
    raise DataError(
        f"no MURA dataset in {given} ({where}): expected {ROOT_NAME}/train_image_paths.csv",
        DOWNLOAD_HINT,
    )


def read_layout(data: Path | str | None = None, *, scan_disk: bool = True) -> MuraLayout:
    """Parse the CSVs under ``data`` and check them against the files on disk.

    Raises ``DataError`` when there is no dataset or a CSV is missing or
    unreadable; everything else is collected in ``MuraLayout.problems``.
    """
    import pandas as pd

    root = resolve_root(data)
    problems: list[Problem] = []
    on_disk, junk = _scan(root) if scan_disk else (None, 0)

    image_rows: list[dict] = []
    for split in SPLITS:
        labels = _read_study_labels(root, split, problems)
        seen: set[str] = set()
        for rel in _read_csv_column(root / f"{split}_image_paths.csv"):
            row = _parse_image_path(rel, split, problems)
            if row is None:
                continue
            if rel in seen:
                problems.append(Problem("duplicate_row", "listed twice", rel))
                continue
            seen.add(rel)
            row["abs_path"] = str(root.joinpath(*rel.split("/")[1:]))
            if on_disk is not None and row["abs_path"] not in on_disk:
                problems.append(Problem("missing_file", "listed in the CSV but not on disk", rel, "error"))
                continue
            if on_disk is not None:
                on_disk.discard(row["abs_path"])
            label = labels.get(row["study"])
            if label is None:
                problems.append(
                    Problem("unlabelled_study", "not in the labelled-studies CSV; label taken from the folder suffix", row["study"])
                )
                label = row["suffix_label"]
                labels[row["study"]] = label
            row["label"] = label
            image_rows.append(row)
        listed = {r["study"] for r in image_rows if r["split"] == split}
        for study, label in labels.items():
            if study not in listed:
                problems.append(Problem("empty_study", "labelled but has no image on disk", study, "error"))
            suffix = _suffix_label(study)
            if suffix is not None and suffix != label:
                problems.append(
                    Problem(
                        "label_mismatch",
                        f"CSV label {label} but folder says {'positive' if suffix else 'negative'}; the CSV label is used",
                        study,
                    )
                )

    if on_disk:
        for path in sorted(on_disk)[:20]:
            problems.append(Problem("unlisted_file", "image on disk not listed in any CSV (ignored)", path))
        if len(on_disk) > 20:
            problems.append(Problem("unlisted_file", f"... and {len(on_disk) - 20} more unlisted images (ignored)"))
    if junk:
        problems.append(Problem("junk_files", f"{junk} junk files (e.g. macOS ._*) ignored"))

    columns = ["split", "body_part", "patient", "study", "view", "label", "path", "abs_path"]
    images = pd.DataFrame(image_rows, columns=columns + ["suffix_label"])[columns]
    images = images.astype({"view": "int64", "label": "int64"})
    studies = study_table(images)
    problems.extend(patient_overlap(studies))
    return MuraLayout(root=root, images=images, studies=studies, problems=problems, junk_files=junk)


def study_table(images: "pd.DataFrame") -> "pd.DataFrame":
    """One row per study of ``images``; its abs_path is the folder that holds its images."""
    import pandas as pd

    if images.empty:
        return pd.DataFrame(columns=["split", "body_part", "patient", "study", "label", "n_images", "abs_path"])
    images = images.assign(folder=[os.path.dirname(p) for p in images["abs_path"]])
    studies = (
        images.groupby("study", sort=False)
        .agg(split=("split", "first"), body_part=("body_part", "first"), patient=("patient", "first"),
             label=("label", "first"), n_images=("path", "size"), abs_path=("folder", _common_folder))
        .reset_index()
    )
    return studies[["split", "body_part", "patient", "study", "label", "n_images", "abs_path"]]


def _common_folder(folders: "pd.Series") -> str:
    unique = set(folders)
    return unique.pop() if len(unique) == 1 else os.path.commonpath(sorted(unique))


def patient_overlap(studies: "pd.DataFrame") -> list[Problem]:
    """An error per patient with studies in both train and valid (a leak between the splits)."""
    shared = set(studies.loc[studies.split == "train", "patient"]) & set(studies.loc[studies.split == "valid", "patient"])
    return [Problem("patient_overlap", "patient appears in both train and valid", p, "error") for p in sorted(shared)]


def _read_csv_column(path: Path) -> Iterable[str]:
    for row in _read_csv(path):
        yield row[0]


def _read_csv(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"{path.name} is missing from {path.parent}", DOWNLOAD_HINT)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}", "the file should be MURA's plain-text CSV") from exc
    # newline="" lets csv handle LF and CRLF alike; blank rows are skipped.
    return [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text, newline="")) if row and row[0].strip()]


def _read_study_labels(root: Path, split: str, problems: list[Problem]) -> dict[str, int]:
    labels: dict[str, int] = {}
    for row in _read_csv(root / f"{split}_labeled_studies.csv"):
        study = row[0] if row[0].endswith("/") else row[0] + "/"
        if len(row) < 2 or row[1] not in ("0", "1"):
            problems.append(Problem("bad_label", f"label must be 0 or 1, got {row[1:] or 'nothing'}", study, "error"))
            continue
        if study in labels:
            problems.append(Problem("duplicate_row", "study listed twice", study))
        labels[study] = int(row[1])
    return labels


def _parse_image_path(rel: str, split: str, problems: list[Problem]) -> dict | None:
    parts = rel.replace("\\", "/").split("/")
    if len(parts) != 6 or parts[1] != split:
        problems.append(
            Problem("malformed_row", f"expected {ROOT_NAME}/{split}/XR_<PART>/patientN/studyN_<label>/imageN.png", rel, "error")
        )
        return None
    _, _, body_part, patient, study_dir, name = parts
    study_match, view_match = _STUDY_RE.match(study_dir), _VIEW_RE.match(name)
    if not study_match or not view_match or not patient.startswith("patient"):
        problems.append(Problem("malformed_row", "unexpected folder or file name", rel, "error"))
        return None
    if body_part not in BODY_PARTS:
        problems.append(Problem("unknown_body_part", f"{body_part} is not one of MURA's seven study types", rel))
    return {
        "split": split,
        "body_part": body_part,
        "patient": patient,
        "study": "/".join(parts[:5]) + "/",
        "view": int(view_match.group(1)),
        "path": rel,
        "suffix_label": 1 if study_match.group(2) == "positive" else 0,
    }


def _suffix_label(study: str) -> int | None:
    match = _STUDY_RE.match(study.rstrip("/").rsplit("/", 1)[-1])
    if match is None:
        return None
    return 1 if match.group(2) == "positive" else 0


def _scan(root: Path) -> tuple[set[str], int]:
    """Image files under the split folders, and how many junk files sit beside them."""
    images: set[str] = set()
    junk = 0
    for split in SPLITS:
        for folder, dirs, files in os.walk(root / split):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
            for name in files:
                if name.startswith("._") or name == ".DS_Store" or name == "Thumbs.db":
                    junk += 1
                elif name.lower().endswith(IMAGE_SUFFIXES):
                    images.add(os.path.join(folder, name))
    return images, junk
