"""The study plan: which studies exist, before a single pixel is drawn.

``plan_studies`` decides splits, body parts, patients, study numbers, labels,
view counts, the kind of each abnormal study's finding and the views that
show it, from MURA v1.1's own statistics. It is cheap (no rendering), so the
class balance and the layout can be checked for any N, and the renderer gets
everything it needs from one ``StudyPlan`` and the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from muracli.data.layout import BODY_PARTS, ROOT_NAME, SPLITS
from muracli.errors import ConfigError
from muracli.synthetic.anatomy import VIEWS
from muracli.synthetic.findings import DIFFICULTIES, available_kinds

# MURA v1.1 training studies per body part: (normal, abnormal).
MURA_TRAIN_STUDIES = {
    "XR_ELBOW": (1094, 660),
    "XR_FINGER": (1280, 655),
    "XR_FOREARM": (590, 287),
    "XR_HAND": (1497, 521),
    "XR_HUMERUS": (321, 271),
    "XR_SHOULDER": (1364, 1457),
    "XR_WRIST": (2134, 1326),
}
# Chance of 1, 2, 3, 4, 5 views per study; the means match MURA's images per study
# (elbow 2.8, finger 2.6, forearm 2.1, hand 2.7, humerus 2.1, shoulder 3.0, wrist 2.8).
VIEW_COUNTS = {
    "XR_ELBOW": (0.02, 0.35, 0.45, 0.16, 0.02),
    "XR_FINGER": (0.03, 0.36, 0.55, 0.05, 0.01),
    "XR_FOREARM": (0.08, 0.78, 0.12, 0.02, 0.0),
    "XR_HAND": (0.02, 0.3, 0.6, 0.07, 0.01),
    "XR_HUMERUS": (0.05, 0.78, 0.14, 0.03, 0.0),
    "XR_SHOULDER": (0.03, 0.3, 0.4, 0.22, 0.05),
    "XR_WRIST": (0.02, 0.3, 0.55, 0.11, 0.02),
}
# Studies per patient: most patients have one study of a body part, some two or three.
STUDIES_PER_PATIENT = (0.8, 0.16, 0.04)
MIN_STUDIES = 2 * len(BODY_PARTS)  # every body part in both splits
MAX_STUDIES = 99_999  # patient numbers have five digits

# Keys that separate the random streams derived from the user's seed.
PLAN_STREAM, STUDY_STREAM, PATIENT_STREAM = 0, 1, 2


@dataclass(frozen=True)
class StudyPlan:
    index: int  # position in the plan; with the seed it fixes every random draw of the study
    split: str
    body_part: str
    patient: int
    study: int  # 1, 2, ... within the patient
    label: int  # 1 = abnormal
    views: tuple[int, ...]  # index into anatomy.VIEWS[body_part] for image1, image2, ...
    finding: str | None  # kind of finding of an abnormal study
    visible: tuple[bool, ...]  # whether each view shows the finding

    @property
    def patient_id(self) -> str:
        return f"patient{self.patient:05d}"

    @property
    def study_path(self) -> str:
        """As in ``<split>_labeled_studies.csv``, with the trailing slash."""
        suffix = "positive" if self.label else "negative"
        return f"{ROOT_NAME}/{self.split}/{self.body_part}/{self.patient_id}/study{self.study}_{suffix}/"

    def image_path(self, view: int) -> str:
        """As in ``<split>_image_paths.csv``; ``view`` counts from 0."""
        return f"{self.study_path}image{view + 1}.png"

    @property
    def n_views(self) -> int:
        return len(self.views)


def check_arguments(studies: int, difficulty: str, valid_fraction: float) -> None:
    if isinstance(studies, bool) or not isinstance(studies, (int, np.integer)):
        raise ConfigError(f"studies must be a whole number, got {studies!r}")
    if studies < MIN_STUDIES:
        raise ConfigError(f"studies must be at least {MIN_STUDIES} (every body part in both splits), got {studies}",
                          f"use --studies {MIN_STUDIES} or more; 400 gives a quick demo")
    if studies > MAX_STUDIES:
        raise ConfigError(f"studies must be at most {MAX_STUDIES}, got {studies}")
    if difficulty not in DIFFICULTIES:
        raise ConfigError(f"unknown difficulty {difficulty!r}", f"choose one of {', '.join(DIFFICULTIES)}")
    if not 0.0 < valid_fraction < 1.0:
        raise ConfigError(f"valid_fraction must be between 0 and 1 (exclusive), got {valid_fraction}")


def plan_studies(studies: int = 400, *, seed: int = 0, difficulty: str = "normal",
                 valid_fraction: float = 0.2, visibility: float | None = None) -> list[StudyPlan]:
    """The studies of a synthetic dataset, sorted as in its CSVs (split, body part, patient, study).

    ``visibility``, when given, replaces the difficulty's chance that each
    further view of an abnormal study shows the finding.
    """
    check_arguments(studies, difficulty, valid_fraction)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(PLAN_STREAM,)))
    level = DIFFICULTIES[difficulty]
    if visibility is not None:
        if not 0.0 <= visibility <= 1.0:
            raise ConfigError(f"visibility must be between 0 and 1, got {visibility}")
        level = replace(level, visibility=float(visibility))
    n_valid = min(max(round(studies * valid_fraction), len(BODY_PARTS)), studies - len(BODY_PARTS))
    counts = {"train": studies - n_valid, "valid": n_valid}
    shares = np.array([sum(MURA_TRAIN_STUDIES[p]) for p in BODY_PARTS], float)

    rows: list[dict] = []
    next_patient = 1
    for split in SPLITS:
        per_part = _allocate(counts[split], shares, minimum=1)
        patients: list[tuple[str, list[int]]] = []
        for part, n in zip(BODY_PARTS, per_part):
            normal, abnormal = MURA_TRAIN_STUDIES[part]
            n_abnormal = round(n * abnormal / (normal + abnormal))
            if n >= 2:
                n_abnormal = min(max(n_abnormal, 1), n - 1)
            labels = np.array([1] * n_abnormal + [0] * (n - n_abnormal))
            rng.shuffle(labels)
            i = 0
            while i < n:
                size = int(rng.choice(len(STUDIES_PER_PATIENT), p=STUDIES_PER_PATIENT)) + 1
                patients.append((part, [int(x) for x in labels[i:i + size]]))
                i += size
        # MURA numbers patients across body parts; valid patients continue after train's.
        order = rng.permutation(len(patients))
        for rank, j in enumerate(order):
            part, labels_ = patients[j]
            for k, label in enumerate(labels_):
                rows.append({"split": split, "part": part, "patient": next_patient + rank, "study": k + 1,
                             "label": label})
        next_patient += len(patients)

    rows.sort(key=lambda r: (SPLITS.index(r["split"]), BODY_PARTS.index(r["part"]), r["patient"], r["study"]))
    plans = []
    for index, r in enumerate(rows):
        part = r["part"]
        n_views = int(rng.choice(5, p=np.array(VIEW_COUNTS[part]) / sum(VIEW_COUNTS[part]))) + 1
        standard = len(VIEWS[part])
        # image1 is the AP/PA film, image2 the lateral, ...; extra films repeat a projection.
        views = tuple(v if v < standard else int(rng.integers(standard)) for v in range(n_views))
        finding, visible = None, (False,) * n_views
        if r["label"]:
            kinds, weights = available_kinds(part, level)
            finding = str(kinds[int(rng.choice(len(kinds), p=weights))])
            if finding in ("hardware", "dislocation"):
                visible = (True,) * n_views  # metal and a dislocated joint show on every film
            else:
                sure = int(rng.integers(n_views))
                visible = tuple(bool(v == sure or rng.random() < level.visibility) for v in range(n_views))
        plans.append(StudyPlan(index, r["split"], part, r["patient"], r["study"], r["label"], views, finding, visible))
    return plans


def _allocate(total: int, shares: np.ndarray, minimum: int) -> list[int]:
    """Split ``total`` in proportion to ``shares`` (largest remainder), each at least ``minimum``."""
    n = len(shares)
    rest = total - minimum * n
    quota = shares / shares.sum() * rest
    counts = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - counts), kind="stable")[: rest - counts.sum()]:
        counts[i] += 1
    return [int(c) + minimum for c in counts]
