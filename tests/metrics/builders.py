"""Builders for the evaluation tests: image tables of random studies."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

PARTS = ("XR_ELBOW", "XR_FINGER", "XR_WRIST")

# Probabilities on a coarse grid so that ties (between views, studies and the threshold) are common.
grid_probabilities = st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 0.9, 1.0])
any_probabilities = st.one_of(grid_probabilities, st.floats(0.0, 1.0, allow_nan=False))


@st.composite
def image_tables(draw, max_studies: int = 25, max_views: int = 4) -> pd.DataFrame:
    """One row per image of 1..max_studies studies, rows shuffled so studies interleave."""
    n_studies = draw(st.integers(1, max_studies))
    rows = []
    for s in range(n_studies):
        part = draw(st.sampled_from(PARTS))
        label = draw(st.integers(0, 1))
        for v in range(draw(st.integers(1, max_views))):
            rows.append(
                {
                    "study": f"MURA-v1.1/valid/{part}/patient{s:05d}/study1_{'positive' if label else 'negative'}/",
                    "body_part": part,
                    "label": label,
                    "probability": draw(any_probabilities),
                    "view": v + 1,
                    "path": f"p{s}/image{v + 1}.png",
                }
            )
    order = draw(st.permutations(range(len(rows))))
    return pd.DataFrame([rows[i] for i in order])


def make_images(n_studies: int = 200, seed: int = 0, parts=PARTS, separation: float = 0.35) -> pd.DataFrame:
    """A plausible image table: abnormal studies score higher, 1-4 views each."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_studies):
        part = parts[s % len(parts)]
        label = int(rng.integers(0, 2))
        for v in range(int(rng.integers(1, 5))):
            p = float(np.clip(rng.normal(0.5 + (separation if label else -separation) / 2, 0.22), 0, 1))
            rows.append({"study": f"MURA-v1.1/valid/{part}/patient{s:05d}/study1/", "body_part": part,
                         "label": label, "probability": p, "view": v + 1})
    return pd.DataFrame(rows)
