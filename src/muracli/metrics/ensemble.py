"""An ensemble's image probabilities: the mean of its members', image by image.

Members may read their images at different sizes (each from its own cache,
or each resizing a new file its own way), so their tables are aligned by the
images' identity (``path``, and for new studies the study too), never by
position. Members that did not score the same images are an error: an
ensemble of models that saw different splits would be averaging nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from muracli.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

#: How the members are combined, as metrics.json and the predict JSON record it.
METHOD = "mean of the members' image probabilities"


def mean_probabilities(tables: Sequence[pd.DataFrame], on: Sequence[str] = ("path",),
                       names: Sequence[str] | None = None) -> pd.DataFrame:
    """The first table, rows in its order, with ``probability`` the mean of every table's
    ``probability`` for the same image (the same values of the ``on`` columns).

    Raises ``DataError`` when an image appears twice in a table or when the
    tables do not hold the same images; ``names`` (one per table) name the
    members in that message.
    """
    if not tables:
        raise DataError("an ensemble needs at least one member")
    names = list(names) if names is not None else [f"member {i + 1}" for i in range(len(tables))]
    keys = [_keys(table, on, name) for table, name in zip(tables, names)]
    first = keys[0]
    stacked = np.empty((len(tables), len(first)), dtype=np.float64)
    for i, (table, key, name) in enumerate(zip(tables, keys, names)):
        if i and not key.equals(first):
            _check_same_images(first, key, names[0], name)
        values = table["probability"].to_numpy(dtype=np.float64)
        stacked[i] = values if i == 0 else values[key.get_indexer(first)]
    combined = tables[0].reset_index(drop=True).copy()
    combined["probability"] = stacked.mean(axis=0)
    return combined


def _keys(table: pd.DataFrame, on: Sequence[str], name: str) -> pd.Index:
    import pandas as pd

    missing = [column for column in (*on, "probability") if column not in table.columns]
    if missing:
        raise DataError(f"{name}'s image table lacks {', '.join(missing)}")
    key = pd.Index(table[on[0]].astype(str)) if len(on) == 1 else pd.MultiIndex.from_frame(table[list(on)].astype(str))
    if key.has_duplicates:
        raise DataError(f"{name} scored the image {key[key.duplicated()][0]} twice",
                        "each image of an ensemble is identified by its path")
    return key


def _check_same_images(first: pd.Index, other: pd.Index, first_name: str, other_name: str) -> None:
    """Nothing when ``other`` holds the images of ``first`` (in any order), else the ``DataError`` saying how they differ."""
    only_first = first.difference(other)
    only_other = other.difference(first)
    if len(only_first) == 0 and len(only_other) == 0:
        return
    parts = []
    if len(only_first):
        parts.append(f"{len(only_first)} only in {first_name} (e.g. {only_first[0]})")
    if len(only_other):
        parts.append(f"{len(only_other)} only in {other_name} (e.g. {only_other[0]})")
    raise DataError(
        f"the ensemble's members scored different images: {'; '.join(parts)}",
        "ensemble runs trained on the same data, evaluated on the same split and body parts "
        "(pass --data/--manifest and --body-part to make them read the same images)",
    )
