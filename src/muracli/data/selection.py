"""The held-out selection split of train (``mura train --select-on train:FRACTION``).

MURA's test set is hidden, so a run that chooses ``best.pt`` on valid and
then reports valid reports an optimistic number. ``selection_studies``
carves a patient-disjoint part of train, stratified by body part and label,
that chooses the checkpoint instead, and valid only reports.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: The columns of ``selection_studies`` (and of a run's selection.csv).
SELECTION_COLUMNS = ["study", "patient", "body_part", "label"]


def selection_studies(studies: "pd.DataFrame", fraction: float, seed: int) -> "pd.DataFrame":
    """The held-out selection split of ``studies`` (train: one row, or one row per image, per study).

    Whole patients are held out, so no patient is on both sides. Per (body
    part, label) cell the share of studies held out is ``fraction`` to
    within one patient's studies of that cell: patients are taken in an
    order drawn from ``seed`` alone (so every rank of a DDP run and every run
    of a seed ensemble get the same split), first those with studies in
    several cells while no cell of theirs passes its target, then the others
    while each brings its cell closer to the target, then the first kind again
    while they bring the cells closer overall. Returns ``SELECTION_COLUMNS``,
    sorted by study.
    """
    import numpy as np

    table = studies.drop_duplicates("study")[SELECTION_COLUMNS]
    cell_of = [(part, int(label)) for part, label in zip(table["body_part"], table["label"])]
    target = {cell: fraction * n for cell, n in Counter(cell_of).items()}
    patient_cells: dict[str, dict[tuple[str, int], int]] = defaultdict(lambda: defaultdict(int))
    for patient, cell in zip(table["patient"], cell_of):
        patient_cells[patient][cell] += 1
    widest = defaultdict(int)  # the most studies one patient has in a cell: the tolerance
    for cells in patient_cells.values():
        for cell, k in cells.items():
            widest[cell] = max(widest[cell], k)

    patients = sorted(patient_cells)
    order = [patients[i] for i in np.random.default_rng(seed).permutation(len(patients))]
    several = [p for p in order if len(patient_cells[p]) > 1]
    held: dict[tuple[str, int], int] = defaultdict(int)
    chosen: set[str] = set()

    def error_change(patient: str) -> float:  # of the sum of squared misses, were the patient held out
        return sum(k * (2 * (held[c] - target[c]) + k) for c, k in patient_cells[patient].items())

    def within(patient: str, slack: dict) -> bool:
        return all(held[c] + k <= target[c] + slack.get(c, 0) for c, k in patient_cells[patient].items())

    def take(candidates: list[str], accept) -> None:
        for patient in candidates:
            if patient not in chosen and accept(patient):
                chosen.add(patient)
                for c, k in patient_cells[patient].items():
                    held[c] += k

    take(several, lambda p: within(p, {}))
    take([p for p in order if len(patient_cells[p]) == 1], lambda p: error_change(p) < 0)
    take(several, lambda p: error_change(p) < 0 and within(p, widest))
    selected = table[table["patient"].isin(chosen)]
    return selected.sort_values("study", kind="stable").reset_index(drop=True)

