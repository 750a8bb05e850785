"""The preprocessed cache: decode and resize once, read every epoch.

One folder per (dataset fingerprint, size, fit), by default
``<data>/mura-cache/<size>px-<fit>-<fingerprint[:12]>/``::

    manifest.json     written last, atomically; without it the folder is incomplete
    train.npy         uint8 (N, S, S), a plain .npy file, memory-mapped when read
    train.csv         the index: row i describes pixels row i
    valid.npy, valid.csv
    .staging/         only while a build runs or after it was interrupted
    .lock             held while a build writes the folder

The pixels are memory-mapped read-only, so DataLoader workers share one copy
in the page cache instead of each holding the dataset (3.8 GB for full MURA
at 320 px) and nothing is decoded again during training. The index columns
are ``INDEX_COLUMNS``: the image path as in the CSVs, the study path, patient,
body part, label (0 normal, 1 abnormal), view number and the original width
and height.

``muracli.data.cache_build.build_cache`` writes it; ``open_cache`` here
reads it and refuses anything without a valid manifest of this format.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from muracli.errors import DataError
from muracli.files import write_atomic

if TYPE_CHECKING:
    import pandas as pd

    from muracli.data.layout import MuraLayout

FORMAT_VERSION = 1
CACHE_DIRNAME = "mura-cache"
MANIFEST_NAME = "manifest.json"
STAGING_NAME = ".staging"
LOCK_NAME = ".lock"
INDEX_COLUMNS = ("path", "study", "patient", "body_part", "label", "view", "width", "height")
_INDEX_DTYPES = {
    "path": str, "study": str, "patient": str, "body_part": str,
    "label": "int64", "view": "int64", "width": "int64", "height": "int64",
}
PREPROCESS_HINT = "run `mura preprocess` (with the same --data, --size and --fit) to build it"


@dataclass
class CacheManifest:
    """What a finished cache holds; ``manifest.json`` is its JSON form.

    ``skipped`` lists every image left out as ``{path, reason, detail}``
    (``reason`` from ``muracli.data.decode.REASONS``); ``dropped_studies``
    the studies left with no image.
    """

    format_version: int
    size: int
    fit: str
    fingerprint: str
    source: str
    counts: dict[str, int]
    study_counts: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)
    dropped_studies: list[str] = field(default_factory=list)
    created: str = ""
    mura_version: str = ""
    resample: str = "bilinear"
    body_parts: list[str] | None = None  # ``mura preprocess --body-part``: the cache holds only these

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CacheManifest":
        """Build from parsed JSON; ``ValueError`` when a field is missing or mistyped."""
        if not isinstance(data, dict):
            raise ValueError("the manifest is not a JSON object")
        known = {f.name for f in fields(cls)}
        required = {"format_version", "size", "fit", "fingerprint", "source", "counts", "study_counts"}
        missing = sorted(required - data.keys())
        if missing:
            raise ValueError(f"missing fields: {', '.join(missing)}")
        manifest = cls(**{k: v for k, v in data.items() if k in known})
        if not isinstance(manifest.format_version, int) or not isinstance(manifest.size, int):
            raise ValueError("format_version and size must be integers")
        if not isinstance(manifest.counts, dict) or not all(isinstance(v, int) for v in manifest.counts.values()):
            raise ValueError("counts must map split names to integers")
        return manifest

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def read(cls, path: Path) -> "CacheManifest":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def write(self, path: Path) -> None:
        """Write atomically: temp file, fsync, rename, fsync the folder."""
        write_atomic(Path(path), self.to_json().encode("utf-8"))


@dataclass
class CacheSplit:
    """One split of a cache, or a part of one: ``pixels[pixel_rows[i]]`` is the image described
    by ``index.iloc[i]`` (``pixels[i]`` for a whole split, whose ``positions`` is None).

    A part (``subset``, ``restricted``) shares the whole split's memory map
    and lists the rows it takes in ``positions``, so nothing is copied.
    """

    name: str
    pixels: np.ndarray  # read-only memmap, uint8, (N, S, S)
    index: "pd.DataFrame"  # INDEX_COLUMNS
    positions: np.ndarray | None = None  # rows of ``pixels`` of the index rows; None: all, in order

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> np.ndarray:
        return self.index["label"].to_numpy(dtype=np.int64)

    @property
    def pixel_rows(self) -> np.ndarray:
        """The row of ``pixels`` of each index row."""
        if self.positions is None:
            return np.arange(len(self.index), dtype=np.int64)
        return self.positions

    def subset(self, keep: np.ndarray, name: str | None = None) -> "CacheSplit":
        """The index rows where ``keep`` (a boolean mask over the index) is True, as a split of its own."""
        keep = np.asarray(keep, dtype=bool)
        return CacheSplit(
            name=name or self.name, pixels=self.pixels, index=self.index[keep].reset_index(drop=True),
            positions=self.pixel_rows[keep],
        )

    def restricted(self, body_parts: list[str] | None) -> "CacheSplit":
        """The images of ``body_parts`` (None: this split itself)."""
        from muracli.data.layout import in_body_parts

        return self if body_parts is None else self.subset(in_body_parts(self.index, body_parts))


class Cache:
    """A finished cache folder. ``reused`` is True when ``build_cache`` found it complete."""

    def __init__(self, path: Path, manifest: CacheManifest, *, reused: bool = False):
        self.path = Path(path)
        self.manifest = manifest
        self.reused = reused
        self._splits: dict[str, CacheSplit] = {}

    @property
    def size(self) -> int:
        return self.manifest.size

    @property
    def fit(self) -> str:
        return self.manifest.fit

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.manifest.counts)

    @property
    def body_parts(self) -> list[str] | None:
        """The body parts the cache was restricted to by ``mura preprocess --body-part`` (None: all)."""
        return self.manifest.body_parts

    def split(self, name: str, body_parts: list[str] | None = None) -> CacheSplit:
        """The split's pixels (memory-mapped) and index, loaded once; with ``body_parts``, only their images.

        A ``DataError`` when the cache was built without some of ``body_parts``.
        """
        if name not in self.manifest.counts:
            raise DataError(f"the cache at {self.path} has no split {name!r}", f"splits: {', '.join(self.splits)}")
        if name not in self._splits:
            self._splits[name] = _load_split(self.path, name, self.manifest)
        if body_parts is not None and self.body_parts is not None:
            missing = [p for p in body_parts if p not in self.body_parts]
            if missing:
                raise DataError(
                    f"the cache at {self.path} holds only {', '.join(self.body_parts)}, not {', '.join(missing)}",
                    "pass --data to use (or build) a cache of the whole dataset, or one made with "
                    f"`mura preprocess --body-part {','.join(body_parts)}`",
                )
        return self._splits[name].restricted(body_parts)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.manifest.counts.items())
        return f"Cache({str(self.path)!r}, size={self.size}, fit={self.fit!r}, {counts})"


def cache_folder_name(size: int, fit: str, fingerprint: str, body_parts: list[str] | None = None) -> str:
    """``320px-pad-<fingerprint[:12]>``, with ``-wrist+hand`` for a cache of some body parts."""
    parts = "" if body_parts is None else "-" + "+".join(p.removeprefix("XR_").lower() for p in body_parts)
    return f"{size}px-{fit}-{fingerprint[:12]}{parts}"


def default_cache_dir(layout: "MuraLayout", size: int, fit: str) -> Path:
    """``<layout.base>/mura-cache/<size>px-<fit>-<fingerprint[:12]>``.

    A changed dataset or other options give another folder, so a stale cache
    is never picked up.
    """
    return layout.base / CACHE_DIRNAME / cache_folder_name(size, fit, layout.fingerprint(), layout.body_parts)


def open_cache(path: str | os.PathLike[str]) -> Cache:
    """Open a finished cache folder (or its ``manifest.json``).

    Raises ``DataError`` when there is no valid manifest of this format version
    or a split's files are missing or of the wrong shape.
    """
    folder = Path(path)
    if folder.name == MANIFEST_NAME and folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise DataError(f"no preprocessed cache at {folder}", PREPROCESS_HINT)
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        if (folder / STAGING_NAME).exists():
            raise DataError(f"the cache at {folder} is incomplete (preprocessing was interrupted)",
                            "run `mura preprocess` again with the same options to finish it")
        raise DataError(f"{folder} is not a preprocessed cache (no {MANIFEST_NAME})", PREPROCESS_HINT)
    try:
        manifest = CacheManifest.read(manifest_path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise DataError(f"the cache manifest {manifest_path} is unreadable: {exc}", PREPROCESS_HINT) from exc
    if manifest.format_version != FORMAT_VERSION:
        raise DataError(
            f"the cache at {folder} has format version {manifest.format_version}; this mura reads version {FORMAT_VERSION}",
            "run `mura preprocess` again to rebuild it",
        )
    for name in manifest.counts:
        for suffix in (".npy", ".csv"):
            if not (folder / f"{name}{suffix}").is_file():
                raise DataError(f"the cache at {folder} is damaged: {name}{suffix} is missing", PREPROCESS_HINT)
    return Cache(folder, manifest)


def _load_split(folder: Path, name: str, manifest: CacheManifest) -> CacheSplit:
    import pandas as pd

    expected = (manifest.counts[name], manifest.size, manifest.size)
    try:
        pixels = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        index = pd.read_csv(folder / f"{name}.csv", dtype=_INDEX_DTYPES, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"the cache at {folder} is damaged: cannot read split {name}: {exc}", PREPROCESS_HINT) from exc
    if pixels.dtype != np.uint8 or pixels.shape != expected or len(index) != expected[0]:
        raise DataError(
            f"the cache at {folder} is damaged: {name} has pixels {pixels.shape} {pixels.dtype} and "
            f"{len(index)} index rows, expected {expected} uint8",
            PREPROCESS_HINT,
        )
    if list(index.columns) != list(INDEX_COLUMNS):
        raise DataError(f"the cache at {folder} is damaged: {name}.csv has columns {list(index.columns)}", PREPROCESS_HINT)
    return CacheSplit(name=name, pixels=pixels, index=index)

