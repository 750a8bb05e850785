"""Training batches from the cache, made on threads.

A DataLoader's worker processes exist to run Python decoding in parallel.
Reading the cache is a memory copy, and ``LoaderPrepare`` augments a batch
in one compiled loop that releases the GIL (``muracli.batches.warp``), so
threads do the same work in parallel without what processes cost: each
float batch written into fresh shared memory, handed over through a pipe,
and mapped again by the trainer. On the 2-core development machine that
hand-over alone held uint8 batches to ~6,400 images/s with 2 worker
processes; see ``benchmarks/README.md``.

``ThreadLoader`` (``image_loader(threads=True)``) takes the place of a
DataLoader for a dataset whose ``__getitems__`` returns a whole batch
(``ImageDataset``): batch number k
of the sampler is made by one of ``workers`` threads (in the caller's
thread when ``workers`` is 0) and batches come out in the sampler's order,
up to ``prefetch`` per thread made ahead. Which thread makes a batch
changes nothing in it: ``LoaderPrepare`` seeds each batch's augmentation
from the batch's (epoch, number, rank).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from muracli.batches.sampler import EpochSampler
from muracli.errors import ConfigError


class ThreadLoader:
    """Iterate ``(x, y)`` batches of ``dataset`` in the order of ``sampler``.

    ``pin_memory`` (honoured when CUDA is available) copies each batch into
    page-locked memory on the worker thread, for non-blocking copies to the
    GPU. Leaving an iteration early (``break``, an exception, the generator
    closed) cancels the batches not yet started and waits for the ones in
    progress, so no thread outlives the epoch.
    """

    def __init__(
        self,
        dataset: Any,
        sampler: EpochSampler,
        *,
        workers: int = 0,
        prefetch: int = 2,
        pin_memory: bool = False,
    ) -> None:
        if workers < 0:
            raise ConfigError(f"workers must be >= 0, got {workers}")
        if prefetch < 1:
            raise ConfigError(f"prefetch must be >= 1, got {prefetch}")
        if not hasattr(dataset, "__getitems__"):
            raise TypeError(f"{type(dataset).__name__} has no __getitems__ to read a whole batch")
        self.dataset = dataset
        self.sampler = sampler
        self.workers = int(workers)
        self.prefetch = int(prefetch)
        self.pin_memory = bool(pin_memory and torch.cuda.is_available())

    def __len__(self) -> int:
        return len(self.sampler)

    def _batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.dataset.__getitems__(indices)
        if self.pin_memory:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(self.sampler)  # the epoch's order is fixed here, as a DataLoader fixes it
        if self.workers == 0:
            return (self._batch(indices) for indices in batches)
        return self._threaded(batches)

    def _threaded(self, batches: Iterator[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="mura-loader")
        pending: deque[Future] = deque()
        ahead = self.workers * self.prefetch
        try:
            for indices in batches:
                pending.append(pool.submit(self._batch, indices))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            # Batches not started are cancelled; the ones in progress are waited for.
            pool.shutdown(wait=True, cancel_futures=True)
