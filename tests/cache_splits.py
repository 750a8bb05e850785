"""Cache splits for loader tests: the ``CacheSplit`` contract over a real memory-mapped .npy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from muracli.data.cache import CacheSplit

S = 8

#: The cache's own split type over a hand-made memory map: name, a read-only uint8 (N, S, S) memmap, an index table.
FakeSplit = CacheSplit


def make_split(
    tmp_path, views: list[int], *, abnormal_every: int = 3, name: str = "train", size: int = S
) -> tuple[FakeSplit, np.ndarray]:
    """One study per entry of ``views`` with that many images; image i's
    pixels are all i % 256 plus a per-pixel pattern, so rows are recognisable."""
    n = sum(views)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    data[:, 0, 0] = np.arange(n) % 256
    path = tmp_path / f"{name}.npy"
    np.save(path, data)
    pixels = np.load(path, mmap_mode="r")
    rows = []
    for s, v in enumerate(views):
        label = int(s % abnormal_every == 0)
        study = f"MURA-v1.1/{name}/XR_HAND/patient{s:05d}/study1_{'positive' if label else 'negative'}/"
        for k in range(v):
            rows.append(
                {"path": f"{study}image{k + 1}.png", "study": study, "patient": f"patient{s:05d}",
                 "body_part": "XR_HAND" if s % 2 else "XR_WRIST", "label": label, "view": k + 1,
                 "width": 100, "height": 80}
            )
    return FakeSplit(name, pixels, pd.DataFrame(rows)), data
