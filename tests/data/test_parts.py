"""Parts of a split: the body-part filter and the held-out selection split of train."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from muracli.data.layout import in_body_parts, parse_body_parts
from muracli.data.selection import SELECTION_COLUMNS, selection_studies
from muracli.errors import ConfigError, DataError


def plan_table(studies: int = 2000, seed: int = 5) -> pd.DataFrame:
    """The train studies of a synthetic MURA plan (no pixels drawn): MURA's class balance per body part,
    one to three studies per patient with mixed labels."""
    from muracli.synthetic.plan import plan_studies

    plans = [p for p in plan_studies(studies, seed=seed) if p.split == "train"]
    return pd.DataFrame({"study": [p.study_path for p in plans], "patient": [p.patient_id for p in plans],
                         "body_part": [p.body_part for p in plans], "label": [p.label for p in plans]})


def with_cross_part_patients(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus patients with studies of several body parts and labels, as in MURA."""
    rows = []
    for n in range(60):
        patient = f"patient9{n:04d}"
        for k, (part, label) in enumerate([("XR_WRIST", n % 2), ("XR_HAND", 1), ("XR_ELBOW", 0)][: 2 + n % 2]):
            suffix = "positive" if label else "negative"
            rows.append({"study": f"MURA-v1.1/train/{part}/{patient}/study{k + 1}_{suffix}/", "patient": patient,
                         "body_part": part, "label": label})
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


@pytest.fixture(scope="module")
def train_studies() -> pd.DataFrame:
    return with_cross_part_patients(plan_table())


def assert_stratified(table: pd.DataFrame, held: pd.DataFrame, fraction: float) -> None:
    """Per (body part, label) the held-out count is within one patient's studies of the target."""
    for (part, label), cell in table.groupby(["body_part", "label"]):
        widest = int(cell.groupby("patient").size().max())
        taken = int(((held["body_part"] == part) & (held["label"] == label)).sum())
        assert abs(taken - fraction * len(cell)) <= widest, (part, label, taken, len(cell), widest)


def test_body_part_names_are_checked_and_recorded_one_way():
    assert parse_body_parts("XR_WRIST,hand, xr_wrist") == ["XR_HAND", "XR_WRIST"]
    assert parse_body_parts(["unknown", "XR_ELBOW"]) == ["XR_ELBOW", "unknown"]
    assert parse_body_parts(None) is None
    with pytest.raises(ConfigError, match="unknown body part 'XR_KNEE'") as info:
        parse_body_parts("XR_WRIST,XR_KNEE")
    assert "XR_SHOULDER" in info.value.hint
    with pytest.raises(ConfigError, match="names no body part"):
        parse_body_parts(" , ")


def test_the_body_part_filter_keeps_those_rows_only(train_studies):
    table = train_studies
    keep = in_body_parts(table, ["XR_WRIST", "XR_HAND"])
    assert set(table[keep]["body_part"]) == {"XR_WRIST", "XR_HAND"}
    assert keep.sum() == table["body_part"].isin(["XR_WRIST", "XR_HAND"]).sum()
    assert in_body_parts(table, None).all()


@pytest.mark.parametrize("fraction", [0.1, 0.25])
def test_the_selection_split_is_patient_disjoint_and_stratified(train_studies, fraction):
    table = train_studies
    held = selection_studies(table, fraction, seed=0)
    assert list(held.columns) == SELECTION_COLUMNS
    rest = table[~table["study"].isin(held["study"])]
    assert not set(held["patient"]) & set(rest["patient"])  # whole patients only
    assert set(held["study"]) <= set(table["study"]) and held["study"].is_unique
    assert_stratified(table, held, fraction)
    assert abs(len(held) - fraction * len(table)) <= 0.02 * len(table)


def test_the_selection_split_depends_on_its_seed_alone(train_studies):
    table = train_studies
    first = selection_studies(table, 0.1, seed=0)
    shuffled = table.sample(frac=1.0, random_state=1).reset_index(drop=True)  # row order does not matter
    pd.testing.assert_frame_equal(selection_studies(shuffled, 0.1, seed=0), first)
    images = table.loc[np.repeat(table.index, 3)]  # one row per image, as a cache index has
    pd.testing.assert_frame_equal(selection_studies(images, 0.1, seed=0), first)
    other = selection_studies(table, 0.1, seed=1)
    assert set(other["study"]) != set(first["study"])
    assert_stratified(table, other, 0.1)


def test_a_layout_restricted_to_body_parts_has_only_their_studies(synthetic_data):
    from muracli.data.layout import read_layout

    layout = read_layout(synthetic_data)
    wrists = layout.restricted(["XR_WRIST"])
    assert set(wrists.studies["body_part"]) == {"XR_WRIST"} == set(wrists.images["body_part"])
    assert len(wrists.studies) == int((layout.studies["body_part"] == "XR_WRIST").sum())
    assert wrists.fingerprint() != layout.fingerprint()  # a cache of wrists is another cache
    assert layout.restricted(None) is layout


def test_a_body_part_the_dataset_lacks_is_a_data_error(tiny_mura):
    from muracli.data.layout import read_layout

    with pytest.raises(DataError, match="no studies of XR_SHOULDER") as info:
        read_layout(tiny_mura).restricted(["XR_SHOULDER"])
    assert "XR_ELBOW, XR_HAND, XR_WRIST" in info.value.hint
