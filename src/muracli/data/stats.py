"""The data breakdown of a MURA tree: studies (normal/abnormal), images and
views per study, per split and body part (the tables of the MURA paper and
of the thesis' "Data Breakdowns")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from muracli.data.layout import MuraLayout

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["split", "body_part", "patients", "normal", "abnormal", "studies", "images", "views_per_study"]


def breakdown(layout: MuraLayout) -> "pd.DataFrame":
    """One row per (split, body part), then a ``total`` row per split and an
    ``all`` split with both combined. ``normal``/``abnormal`` count studies."""
    import pandas as pd

    studies = layout.studies
    rows = []
    for split in [*sorted(studies["split"].unique()), "all"]:
        in_split = studies if split == "all" else studies[studies["split"] == split]
        for part in [*sorted(in_split["body_part"].unique()), "total"]:
            group = in_split if part == "total" else in_split[in_split["body_part"] == part]
            rows.append(_row(split, part, group))
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(split: str, body_part: str, studies: "pd.DataFrame") -> dict:
    n = len(studies)
    images = int(studies["n_images"].sum())
    return {
        "split": split,
        "body_part": body_part,
        "patients": int(studies["patient"].nunique()),
        "normal": int((studies["label"] == 0).sum()),
        "abnormal": int((studies["label"] == 1).sum()),
        "studies": n,
        "images": images,
        "views_per_study": round(images / n, 2) if n else 0.0,
    }


def summary(layout: MuraLayout) -> dict:
    """The breakdown plus the layout's problems, as JSON-ready data."""
    table = breakdown(layout)
    return {
        "root": str(layout.root),
        "kind": layout.kind,
        "body_parts": layout.body_parts,
        "breakdown": table.to_dict(orient="records"),
        "problems": [
            {"kind": p.kind, "severity": p.severity, "path": p.path, "detail": p.detail} for p in layout.problems
        ],
        "junk_files": layout.junk_files,
    }
