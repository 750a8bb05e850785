"""Tiny MURA-format trees built by hand (the ``tiny_mura`` fixture and the layout tests).

A module of its own, not ``conftest``: tests that import helpers by name must
not depend on which of the suite's ``conftest.py`` files pytest loaded last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_mura_tree(base: Path, studies: list[tuple[str, str, str, int, int]], *, crlf: bool = False, size=(24, 20)) -> Path:
    """Write a MURA-v1.1 tree under ``base`` from (split, body_part, patient, label, n_views) rows.

    Study numbers count up per patient. Returns the MURA-v1.1 folder.
    """
    root = base / "MURA-v1.1"
    images: dict[str, list[str]] = {"train": [], "valid": []}
    labelled: dict[str, list[str]] = {"train": [], "valid": []}
    per_patient: dict[str, int] = {}
    rng = np.random.default_rng(0)
    for split, part, patient, label, views in studies:
        per_patient[patient] = per_patient.get(patient, 0) + 1
        study = f"MURA-v1.1/{split}/{part}/{patient}/study{per_patient[patient]}_{'positive' if label else 'negative'}/"
        folder = base / study
        folder.mkdir(parents=True)
        for view in range(1, views + 1):
            pixels = rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"image{view}.png")
            images[split].append(f"{study}image{view}.png")
        labelled[split].append(f"{study},{label}")
    newline = "\r\n" if crlf else "\n"
    for split in ("train", "valid"):
        (root / f"{split}_image_paths.csv").write_text(newline.join(images[split]) + newline, newline="")
        (root / f"{split}_labeled_studies.csv").write_text(newline.join(labelled[split]) + newline, newline="")
    return root


TINY_STUDIES = [
    ("train", "XR_WRIST", "patient00001", 1, 2),
    ("train", "XR_WRIST", "patient00001", 0, 1),
    ("train", "XR_ELBOW", "patient00002", 0, 3),
    ("train", "XR_HAND", "patient00003", 1, 2),
    ("valid", "XR_WRIST", "patient11185", 1, 2),
    ("valid", "XR_ELBOW", "patient11186", 0, 1),
]
