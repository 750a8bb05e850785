"""Datasets of one's own radiographs listed in a CSV manifest: PNG and DICOM files the tests write."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from image_files import write_dicom
from PIL import Image

HEADER = ["path", "label", "study", "split", "body_part", "patient"]

#: (study, split, label, body part, patient, views): every split has both classes.
STUDIES = [
    ("wrist-a", "train", 1, "XR_WRIST", "P01", 2),
    ("wrist-b", "train", 0, "XR_WRIST", "P02", 2),
    ("hand-a", "train", 1, "XR_HAND", "P03", 2),
    ("hand-b", "train", 0, "XR_HAND", "P04", 1),
    ("knee-a", "train", 0, "", "P05", 2),
    ("wrist-c", "valid", 1, "XR_WRIST", "P06", 2),
    ("hand-c", "valid", 0, "XR_HAND", "P07", 2),
    ("knee-b", "valid", 1, "", "P08", 1),
]


def radiograph(rng: np.random.Generator, label: int, shape=(40, 48)) -> np.ndarray:
    """A 12-bit image in [0, 4095]: a bright "bone" band, brighter with a finding (label 1)."""
    pixels = rng.normal(800, 120, size=shape)
    pixels[:, shape[1] // 3 : 2 * shape[1] // 3] += 1800 + 1200 * label
    return np.clip(pixels, 0, 4095).astype(np.uint16)


def write_manifest_dataset(folder: Path, studies=STUDIES, *, name: str = "manifest.csv") -> Path:
    """Write one folder per study under ``folder/images`` (view 1 a PNG, view 2 a DICOM file) and
    the manifest listing them (relative paths, except one absolute); returns the manifest's path."""
    rng = np.random.default_rng(7)
    rows = []
    for study, split, label, part, patient, views in studies:
        study_dir = folder / "images" / study
        study_dir.mkdir(parents=True, exist_ok=True)
        for view in range(1, views + 1):
            pixels = radiograph(rng, label)
            if view % 2:
                path = study_dir / f"view{view}.png"
                Image.fromarray((pixels >> 4).astype(np.uint8)).save(path)
            else:
                path = write_dicom(study_dir / f"IM{view:06d}.dcm", pixels, bits=12, BodyPartExamined="WRIST")
            listed = str(path) if study == "hand-c" else path.relative_to(folder).as_posix()
            rows.append([listed, label, study, split, part, patient])
    return write_manifest(folder / name, rows)


def write_manifest(path: Path, rows: list[list], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def manifest_rows(path: Path) -> list[list[str]]:
    """The rows of a manifest, header first."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))
