"""Datasets over the preprocessed cache.

The cache holds each split's pixels as one uint8 ``N x S x S`` array,
memory-mapped read-only, so DataLoader workers share the page cache instead
of each holding a copy, and an epoch is a read, not a decode. Batches leave
the loader as uint8 (a quarter of float32's bytes through worker queues,
pinned memory and the bus); ``muracli.batches.augment.prepare_batch`` turns
them into the model's input on the device.

* ``ImageDataset`` + ``EpochSampler`` (``image_loader``): training batches,
  one memory-mapped read per batch; with ``LoaderPrepare`` they come out
  augmented and normalised instead, made in one compiled pass per image
  straight from the map. ``image_loader(threads=True)`` makes the same
  batches on threads instead of worker processes (what the trainer uses
  for image models; see ``muracli.batches.loader``).
* ``StudyDataset`` / ``study_batches``: whole studies, for evaluation.
"""

from __future__ import annotations

import copy
import math
import mmap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from muracli.batches.augment import GREY_MEAN, GREY_STD, AugmentConfig, AugmentParams, apply_params, sample_params
from muracli.batches.sampler import BatchIndices, EpochSampler, class_balanced_weights, epoch_seed, mix_seed
from muracli.errors import ConfigError, DataError

if TYPE_CHECKING:
    from muracli.batches.loader import ThreadLoader
    from muracli.data.cache import CacheSplit

__all__ = [
    "BatchIndices",
    "EpochSampler",
    "ImageDataset",
    "LoaderPrepare",
    "StudyDataset",
    "class_balanced_weights",
    "epoch_seed",
    "image_loader",
    "mix_seed",
    "pass_batch",
    "read_rows",
    "study_batches",
    "study_table",
]


def read_rows(pixels: np.ndarray, rows: np.ndarray, *, shared: bool = False) -> torch.Tensor:
    """Rows of an (N, S, S) uint8 array as a (B, 1, S, S) uint8 tensor, in the order given.

    One fancy-indexing read in ascending row order (sequential in the file,
    so the kernel's read-ahead helps on a cold cache), then the rows are put
    back in the requested order. With ``shared`` the result is written
    straight into shared memory, which is where a DataLoader worker's batch
    must go anyway (saving a copy of every batch on its way to the trainer).
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1:
        raise ValueError(f"expected a 1-D array of rows, got shape {rows.shape}")
    order = np.argsort(rows, kind="stable")
    ascending = rows[order]
    block = pixels[ascending]  # the one read; a fresh, writable in-memory array
    in_order = np.array_equal(order, np.arange(len(rows)))
    if shared and block.size:
        out = _shared_empty((len(rows), 1, *block.shape[1:]))
        if out is not None:
            out.numpy()[order if not in_order else slice(None), 0] = block
            return out
    if not in_order:
        restored = np.empty_like(block)
        restored[order] = block
        block = restored
    return torch.from_numpy(block).unsqueeze(1)


def _shared_empty(shape: tuple[int, ...], dtype: torch.dtype = torch.uint8) -> torch.Tensor | None:
    """An uninitialised tensor in shared memory, as default_collate makes in
    workers; None if this torch cannot make one directly."""
    itemsize = torch.empty(0, dtype=dtype).element_size()
    try:
        storage = torch.UntypedStorage._new_shared(math.prod(shape) * itemsize)
    except (AttributeError, RuntimeError):  # pragma: no cover - private API moved
        return None
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


@dataclass(frozen=True)
class LoaderPrepare:
    """``prepare_batch`` on the CPU, inside the loader.

    ``ImageDataset`` with a ``LoaderPrepare`` returns each batch augmented
    and normalised, made by ``read``: one compiled pass per image straight
    from the cache (``muracli.batches.warp``), in whichever thread or worker
    process reads the batch; in a worker process the float batch is written
    straight into the shared memory it travels in. Batch (epoch, number,
    rank) is augmented with a generator seeded from ``mix_seed(seed, epoch,
    number, rank)``: the same batches whatever the number of threads or
    workers, and a resumed run needs no generator state.

    On a GPU keep the loader's uint8 batches and call ``prepare_batch`` on
    the device instead: a quarter of the bytes to copy, and the GPU's time.
    """

    augment: AugmentConfig | None = None
    mean: float | tuple[float, ...] = GREY_MEAN
    std: float | tuple[float, ...] = GREY_STD
    seed: int = 0

    def generator(self, key: tuple[int, int, int]) -> torch.Generator:
        return torch.Generator().manual_seed(mix_seed(self.seed, *key))

    def params(self, batch_size: int, key: tuple[int, int, int]) -> AugmentParams:
        """Batch ``key``'s augmentation parameters."""
        if self.augment is None or self.augment.is_identity:
            return AugmentParams.identity(batch_size)
        return sample_params(batch_size, self.augment, self.generator(key))

    def __call__(self, x: torch.Tensor, key: tuple[int, int, int], *, shared: bool = False) -> torch.Tensor:
        """The model's float input for uint8 batch ``x``, which is batch ``key``."""
        out = _shared_empty(tuple(x.shape), torch.float32) if shared and x.numel() else None
        return apply_params(x, self.params(x.shape[0], key), mean=self.mean, std=self.std, out=out)

    def read(self, pixels: np.ndarray, rows: np.ndarray, key: tuple[int, int, int], *, shared: bool = False) -> torch.Tensor:
        """The model's float input for images ``pixels[rows]`` of an (N, S, S)
        uint8 cache array, which are batch ``key``: equal to ``self(read_rows(...))``,
        made by one compiled pass per image straight from the array
        (``muracli.batches.warp``, which releases the GIL while it works)."""
        mean, std = _scalar(self.mean), _scalar(self.std)
        if mean is None or std is None:  # per-channel statistics: the tensor path
            return self(read_rows(pixels, rows), key, shared=shared)
        from muracli.batches.warp import warp_rows

        out = _shared_empty((len(rows), 1, *pixels.shape[1:]), torch.float32) if shared and len(rows) else None
        return warp_rows(pixels, rows, self.params(len(rows), key), mean=mean, std=std, out=out)


def _scalar(value: float | Sequence[float]) -> float | None:
    """A single normalisation value as a float, or None for several."""
    if isinstance(value, (int, float)):
        return float(value)
    values = list(value)
    return float(values[0]) if len(values) == 1 else None


def pass_batch(batch: Any) -> Any:
    """collate_fn for datasets whose ``__getitems__`` already returns a whole batch."""
    return batch


class _MemmapRef:
    """Enough to reopen a read-only memory map: a pickled dataset carries this,
    not the pixels (pickling an ``np.memmap`` copies all of its data)."""

    def __init__(self, filename: str, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.filename, self.offset, self.shape, self.dtype = filename, offset, shape, dtype

    @classmethod
    def of(cls, array: np.ndarray) -> "_MemmapRef | None":
        """The file region behind ``array``, or None when it is not a plain
        C-contiguous view of a file mapping (then it pickles by value)."""
        mapping = getattr(array, "_mmap", None)
        filename = getattr(array, "filename", None)
        if not isinstance(array, np.memmap) or mapping is None or filename is None:
            return None
        if not array.flags.c_contiguous or array.size == 0:
            return None
        # np.memmap maps from the allocation-granularity boundary below its
        # offset, and a slice of it keeps its parent's ``offset`` attribute:
        # locate this view's first byte inside the mapping instead.
        mapped_from = array.offset - array.offset % mmap.ALLOCATIONGRANULARITY
        whole = np.frombuffer(mapping, dtype=np.uint8)
        delta = array.ctypes.data - whole.ctypes.data
        if not 0 <= delta <= whole.size - array.nbytes:
            return None
        return cls(filename, mapped_from + delta, tuple(array.shape), array.dtype)

    def open(self) -> np.ndarray:
        return np.memmap(self.filename, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape)


def _pickle_pixels(state: dict[str, Any], key: str = "_pixels") -> dict[str, Any]:
    ref = _MemmapRef.of(state[key])
    if ref is not None:
        state = dict(state)
        state[key] = ref
    return state


def _unpickle_pixels(state: dict[str, Any], key: str = "_pixels") -> dict[str, Any]:
    if isinstance(state.get(key), _MemmapRef):
        state = dict(state)
        state[key] = state[key].open()
    return state


def _check_split(split: "CacheSplit") -> np.ndarray:
    """The row of ``split.pixels`` of each index row (``CacheSplit.pixel_rows``), once the shapes agree."""
    pixels = split.pixels
    if pixels.ndim != 3 or pixels.dtype != np.uint8 or pixels.shape[1] != pixels.shape[2]:
        raise DataError(f"the {split.name} split's pixels are {pixels.shape} {pixels.dtype}, not uint8 (N, S, S)")
    if split.positions is None and len(split.index) != pixels.shape[0]:
        raise DataError(f"the {split.name} split has {pixels.shape[0]} images but {len(split.index)} index rows")
    rows = split.pixel_rows
    if len(rows) != len(split.index) or (rows.size and (rows.min() < 0 or rows.max() >= pixels.shape[0])):
        raise DataError(f"the {split.name} split's {len(rows)} positions do not fit its {len(split.index)} index rows "
                        f"and {pixels.shape[0]} images")
    return rows


class ImageDataset(Dataset):
    """The images of a cache split (or a subset of its rows), as uint8 tensors.

    ``dataset[i]`` is ``(uint8 (1, S, S), label)``; ``dataset.__getitems__(ids)``,
    which the DataLoader calls with a whole batch of indices when it exists,
    returns ``(uint8 (B, 1, S, S), int64 (B,))`` from one memory-mapped read
    (or, with ``prepare``, the batch's float model input instead of uint8).
    Use it with ``collate_fn=pass_batch`` (``image_loader`` does).
    """

    def __init__(
        self,
        split: "CacheSplit",
        rows: Sequence[int] | np.ndarray | None = None,
        *,
        prepare: LoaderPrepare | None = None,
    ) -> None:
        positions = _check_split(split)
        self.name = split.name
        self.prepare = prepare
        self._pixels = split.pixels  # never read here: it stays on disk until a batch asks
        n = len(split.index)
        local = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if local.size and (local.min() < 0 or local.max() >= n):
            raise DataError(f"row subset out of range for the {split.name} split of {n} images")
        self.rows = positions[local]  # rows of the pixel array
        labels = split.index["label"].to_numpy(dtype=np.int64)
        self._labels = labels[local]
        self._labels.setflags(write=False)

    @property
    def labels(self) -> np.ndarray:
        """Labels of the dataset's items (0 normal, 1 abnormal), read-only int64."""
        return self._labels

    @property
    def image_size(self) -> int:
        return int(self._pixels.shape[1])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = np.array(self._pixels[self.rows[i]])  # copy out of the read-only map
        return torch.from_numpy(image).unsqueeze(0), int(self._labels[i])

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        key = indices.key if isinstance(indices, BatchIndices) else (0, -1, 0)
        ids = np.asarray(indices, dtype=np.int64)
        in_worker = get_worker_info() is not None
        if self.prepare is not None:
            x = self.prepare.read(self._pixels, self.rows[ids], key, shared=in_worker)
        else:
            x = read_rows(self._pixels, self.rows[ids], shared=in_worker)
        return x, torch.from_numpy(self._labels[ids].copy())

    def with_prepare(self, prepare: LoaderPrepare | None) -> "ImageDataset":
        """The same images with another ``prepare`` (a shallow copy)."""
        dataset = copy.copy(self)
        dataset.prepare = prepare
        return dataset

    def __getstate__(self) -> dict[str, Any]:
        return _pickle_pixels(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(_unpickle_pixels(state))


def image_loader(
    split: "CacheSplit | ImageDataset",
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    workers: int = 0,
    threads: bool = False,
    rank: int = 0,
    world: int = 1,
    balanced: bool = False,
    pin_memory: bool = False,
    drop_last: bool = False,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
    prepare: LoaderPrepare | None = None,
) -> tuple["DataLoader | ThreadLoader", EpochSampler]:
    """A loader of uint8 training batches ``(x (B, 1, S, S), y (B,))`` and its sampler.

    Call ``sampler.set_epoch(e)`` before each epoch (and set
    ``sampler.start_batch`` to resume mid-epoch). ``pin_memory`` only takes
    effect when CUDA is available. With ``prepare`` the batches come out
    augmented and normalised as float32; see :class:`LoaderPrepare`.

    By default a DataLoader with ``workers`` worker processes
    (``persistent_workers`` defaults to True when there are any, so an epoch
    does not pay for starting them). With ``threads`` a
    :class:`muracli.batches.loader.ThreadLoader` with ``workers`` threads makes
    the same batches (``prefetch_factor`` batches ahead per thread, 2 by
    default): what the trainer uses, see that module.
    """
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    if isinstance(split, ImageDataset):
        dataset = split if prepare is None else split.with_prepare(prepare)
    else:
        dataset = ImageDataset(split, prepare=prepare)
    sampler = EpochSampler(
        len(dataset),
        batch_size,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world=world,
        drop_last=drop_last,
        labels=dataset.labels if balanced else None,
        balanced=balanced,
    )
    if threads:
        from muracli.batches.loader import ThreadLoader

        loader = ThreadLoader(dataset, sampler, workers=workers, prefetch=prefetch_factor or 2, pin_memory=pin_memory)
        return loader, sampler
    return _batch_loader(dataset, sampler, seed, workers, pin_memory, persistent_workers, prefetch_factor), sampler


def _batch_loader(
    dataset: Dataset,
    sampler: EpochSampler,
    seed: int,
    workers: int,
    pin_memory: bool,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader over a dataset whose ``__getitems__`` returns whole batches."""
    options: dict[str, Any] = {}
    if workers > 0:
        options["persistent_workers"] = True if persistent_workers is None else persistent_workers
        if prefetch_factor is not None:
            options["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=pass_batch,
        num_workers=workers,
        pin_memory=bool(pin_memory and torch.cuda.is_available()),
        # Its own generator: starting an epoch's iterator must not draw from
        # the global RNG (dropout's), or a run resumed mid-epoch would drift.
        generator=torch.Generator().manual_seed(mix_seed(seed, 0x10ADE5)),
        **options,
    )


def study_table(index: pd.DataFrame) -> pd.DataFrame:
    """One row per study, in order of first appearance in ``index``: study,
    body_part, label, n_images and rows (int64 positions into ``index``, by view)."""
    n = len(index)
    if n == 0:
        return pd.DataFrame(
            {"study": pd.Series([], dtype=object), "body_part": pd.Series([], dtype=object),
             "label": pd.Series([], dtype=np.int64), "n_images": pd.Series([], dtype=np.int64),
             "rows": pd.Series([], dtype=object)}
        )
    codes, studies = pd.factorize(index["study"], sort=False)
    view = index["view"].to_numpy() if "view" in index else np.zeros(n)
    positions = np.arange(n, dtype=np.int64)
    order = np.lexsort((positions, view, codes))  # by study, then view, then position
    counts = np.bincount(codes, minlength=len(studies))
    rows = np.split(order, np.cumsum(counts)[:-1])
    first = np.array([r[0] for r in rows], dtype=np.int64)
    return pd.DataFrame(
        {
            "study": np.asarray(studies, dtype=object),
            "body_part": index["body_part"].to_numpy()[first],
            "label": index["label"].to_numpy(dtype=np.int64)[first],
            "n_images": counts.astype(np.int64),
            "rows": pd.Series(rows, dtype=object),
        }
    )


class StudyDataset(Dataset):
    """The studies of a cache split: item j is ``(uint8 (V, 1, S, S), label, study)``
    with the study's V views in view order. ``studies`` is the table of
    :func:`study_table`."""

    def __init__(self, split: "CacheSplit") -> None:
        self._pixel_rows = _check_split(split)
        self.name = split.name
        self._pixels = split.pixels
        self.studies = study_table(split.index)

    def __len__(self) -> int:
        return len(self.studies)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int, str]:
        row = self.studies.iloc[j]
        return read_rows(self._pixels, self._pixel_rows[row["rows"]]), int(row["label"]), str(row["study"])

    def __getstate__(self) -> dict[str, Any]:
        return _pickle_pixels(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(_unpickle_pixels(state))


def study_batches(
    split: "CacheSplit | StudyDataset",
    *,
    max_images: int = 256,
    rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Evaluation batches of whole studies: ``(x uint8 (sum V, 1, S, S), rows)``.

    ``rows`` are the positions of the batch's images in the split's index, so
    image probabilities map back to their studies. Studies are packed in
    order until the next would push a batch over ``max_images``; a study
    with more views than that comes alone, whole. With ``world > 1`` rank r
    takes studies r, r + world, ... so the ranks' shards are disjoint and
    together cover every study once.
    """
    if max_images < 1:
        raise ConfigError(f"max_images must be at least 1, got {max_images}")
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is not in a world of {world}")
    dataset = split if isinstance(split, StudyDataset) else StudyDataset(split)
    pixels, pixel_rows = dataset._pixels, dataset._pixel_rows
    pending: list[np.ndarray] = []
    count = 0
    for rows in dataset.studies["rows"].iloc[rank::world]:
        if pending and count + len(rows) > max_images:
            batch = np.concatenate(pending)
            yield read_rows(pixels, pixel_rows[batch]), batch
            pending, count = [], 0
        pending.append(rows)
        count += len(rows)
    if pending:
        batch = np.concatenate(pending)
        yield read_rows(pixels, pixel_rows[batch]), batch


def pad_views(studies: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack studies of (V_i, C, S, S) views into (B, max V, C, S, S) plus a (B, max V) mask.

    Padding views are zeros and masked out; a study model never encodes them.
    """
    most = max(len(s) for s in studies)
    first = studies[0]
    x = first.new_zeros((len(studies), most, *first.shape[1:]))
    mask = torch.zeros(len(studies), most, dtype=torch.bool)
    for i, views in enumerate(studies):
        x[i, : len(views)] = views
        mask[i, : len(views)] = True
    return x, mask


class StudyTrainDataset(Dataset):
    """Training batches of whole studies for a study model.

    ``__getitems__`` takes a batch of study indices and returns ``(x uint8
    (B, V, 1, S, S), mask (B, V), labels (B,))``. A study with more than
    ``max_views`` views contributes a random choice of ``max_views`` of them,
    drawn from a generator seeded by (seed, epoch, batch, rank), so batches
    are the same whatever the workers and after a resume.
    """

    def __init__(self, split: "CacheSplit", *, max_views: int = 4, seed: int = 0) -> None:
        self._pixel_rows = _check_split(split)
        if max_views < 1:
            raise ConfigError(f"max_views must be at least 1, got {max_views}")
        self.name = split.name
        self._pixels = split.pixels
        self.studies = study_table(split.index)
        self.max_views = int(max_views)
        self.seed = int(seed)
        self._labels = self.studies["label"].to_numpy(dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def __len__(self) -> int:
        return len(self.studies)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = indices.key if isinstance(indices, BatchIndices) else (0, -1, 0)
        generator = torch.Generator().manual_seed(mix_seed(self.seed, 0x57D1, *key))
        views = []
        for j in indices:
            rows = self.studies["rows"].iat[int(j)]
            if len(rows) > self.max_views:
                keep = torch.randperm(len(rows), generator=generator)[: self.max_views].sort().values.numpy()
                rows = rows[keep]
            views.append(read_rows(self._pixels, self._pixel_rows[rows]))
        x, mask = pad_views(views)
        labels = torch.from_numpy(self._labels[np.asarray(indices, dtype=np.int64)].copy())
        return x, mask, labels

    def __getstate__(self) -> dict[str, Any]:
        return _pickle_pixels(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(_unpickle_pixels(state))


def study_loader(
    split: "CacheSplit",
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    max_views: int = 4,
    workers: int = 0,
    rank: int = 0,
    world: int = 1,
    balanced: bool = False,
    pin_memory: bool = False,
) -> tuple[DataLoader, EpochSampler]:
    """A DataLoader of padded study batches ``(x, mask, y)`` and its sampler (``batch_size`` studies)."""
    dataset = StudyTrainDataset(split, max_views=max_views, seed=seed)
    sampler = EpochSampler(
        len(dataset), batch_size, shuffle=shuffle, seed=seed, rank=rank, world=world,
        labels=dataset.labels if balanced else None, balanced=balanced,
    )
    return _batch_loader(dataset, sampler, seed, workers, pin_memory), sampler


def padded_study_batches(
    split: "CacheSplit | StudyDataset",
    *,
    max_images: int = 256,
    rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """Evaluation batches for a study model: ``(x uint8 (B, V, 1, S, S), mask, study positions)``.

    Every view of every study (no cap); studies packed until the next would
    take the batch over ``max_images`` real views; rank r takes studies
    r, r + world, ... as in :func:`study_batches`.
    """
    if max_images < 1:
        raise ConfigError(f"max_images must be at least 1, got {max_images}")
    dataset = split if isinstance(split, StudyDataset) else StudyDataset(split)
    pixels, pixel_rows = dataset._pixels, dataset._pixel_rows
    positions = np.arange(len(dataset.studies))[rank::world]
    pending: list[int] = []
    count = 0

    def emit(batch: list[int]):
        views = [read_rows(pixels, pixel_rows[dataset.studies["rows"].iat[j]]) for j in batch]
        x, mask = pad_views(views)
        return x, mask, np.asarray(batch, dtype=np.int64)

    for j in positions:
        n = int(dataset.studies["n_images"].iat[j])
        if pending and count + n > max_images:
            yield emit(pending)
            pending, count = [], 0
        pending.append(int(j))
        count += n
    if pending:
        yield emit(pending)
