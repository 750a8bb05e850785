"""Which images go into which batch, epoch by epoch.

``EpochSampler`` is a batch sampler: the DataLoader asks it for lists of
indices, and the dataset reads each list with one memory-mapped read. The
order of an epoch is a pure function of (seed, epoch), so a run is
reproducible, every rank of a distributed run computes the same order
without talking to the others, and a run resumed mid-epoch continues with
exactly the batches it would have seen (``start_batch``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from muracli.errors import ConfigError

_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from several integers (e.g. seed, epoch, batch).

    ``seed + epoch`` would give seed 1's epoch 0 the order of seed 0's epoch 1;
    folding the values through splitmix64 keeps nearby inputs unrelated.
    """
    z = 0
    for value in values:
        z = _splitmix64(z ^ (int(value) & _MASK64))
    return z >> 1


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's order."""
    return mix_seed(seed, epoch)


class BatchIndices(list):
    """A batch's dataset indices (a plain list to the DataLoader) that also
    says which batch it is: ``epoch``, ``number`` within the epoch on its
    rank, and ``rank``. Loader-side augmentation seeds from these, so a batch
    is augmented the same way whichever worker reads it, however many
    workers there are, and after a mid-epoch resume."""

    def __init__(self, indices=(), *, epoch: int = 0, number: int = 0, rank: int = 0) -> None:
        super().__init__(indices)
        self.epoch, self.number, self.rank = epoch, number, rank

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.epoch, self.number, self.rank)


class EpochSampler(Sampler[list[int]]):
    """Batches of dataset indices, deterministic per (seed, epoch).

    ``shuffle`` draws a fresh permutation each epoch (``set_epoch``);
    otherwise the order is 0..size-1. With ``labels`` and ``balanced=True``
    each epoch instead draws ``size`` indices with replacement, weighted so
    that every class is drawn equally often on average.

    Distributed (``world > 1``): the epoch's order is padded by repeating its
    first indices until it divides evenly, then rank r takes every world-th
    index from position r, as ``DistributedSampler(drop_last=False)`` does, so
    all ranks get the same number of batches (up to ``world - 1`` images
    are seen twice per epoch). ``drop_last`` drops this rank's final batch
    when it is smaller than ``batch_size``.

    ``start_batch`` skips the first batches of the epoch (resuming mid-epoch);
    it is reset to 0 when ``set_epoch`` moves to another epoch. ``len()`` is
    the number of batches in a whole epoch on this rank, skipped ones included.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = False,
        labels: np.ndarray | None = None,
        balanced: bool = False,
        epoch: int = 0,
        start_batch: int = 0,
    ) -> None:
        if size < 0:
            raise ConfigError(f"a sampler needs a size >= 0, got {size}")
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"rank {rank} is not in a world of {world}")
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world = int(world)
        self.drop_last = bool(drop_last)
        self.balanced = bool(balanced)
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)
        self._weights: torch.Tensor | None = None
        if balanced:
            if labels is None:
                raise ConfigError("balanced sampling needs the labels")
            self._weights = class_balanced_weights(labels)
            if len(self._weights) != self.size:
                raise ConfigError(f"{len(self._weights)} labels for a sampler of size {self.size}")
        self._yielded = 0

    @property
    def samples_per_rank(self) -> int:
        return math.ceil(self.size / self.world) if self.size else 0

    def __len__(self) -> int:
        n = self.samples_per_rank
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        if int(epoch) != self.epoch:
            self.start_batch = 0
        self.epoch = int(epoch)

    def epoch_order(self) -> np.ndarray:
        """All ranks' indices for the current epoch, before sharding (int64)."""
        if self.size == 0:
            return np.zeros(0, dtype=np.int64)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        if self._weights is not None:
            order = torch.multinomial(self._weights, self.size, replacement=True, generator=generator)
        elif self.shuffle:
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        return order.numpy().astype(np.int64, copy=False)

    def batches(self) -> list[np.ndarray]:
        """This rank's batches for the current epoch, all of them (``start_batch`` ignored)."""
        order = self.epoch_order()
        total = self.samples_per_rank * self.world
        if total > len(order):
            order = np.concatenate([order, np.resize(order, total - len(order))])
        mine = order[self.rank : total : self.world]
        out = [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        if self.drop_last and out and len(out[-1]) < self.batch_size:
            out.pop()
        return out

    def __iter__(self) -> Iterator[list[int]]:
        # The order is fixed now, when the DataLoader starts an epoch, so later
        # changes to epoch or start_batch apply to the next iteration only.
        start = max(0, self.start_batch)
        batches = self.batches()[start:]
        self._yielded = 0
        return self._yield(batches, start, self.epoch)

    def _yield(self, batches: list[np.ndarray], start: int, epoch: int) -> Iterator[list[int]]:
        for number, batch in enumerate(batches, start):
            self._yielded += 1
            yield BatchIndices(batch.tolist(), epoch=epoch, number=number, rank=self.rank)

    def state_dict(self, batches_done: int | None = None) -> dict[str, Any]:
        """Where this epoch stands, for an exact mid-epoch resume.

        ``batches_done`` is the number of this epoch's batches the caller has
        consumed. Pass it when the DataLoader has workers: they prefetch, so
        the sampler itself runs several batches ahead of the training loop.
        Without it, ``start_batch`` plus the batches yielded so far is used.
        """
        done = self.start_batch + self._yielded if batches_done is None else int(batches_done)
        return {
            "epoch": self.epoch,
            "start_batch": done,
            "seed": self.seed,
            "size": self.size,
            "batch_size": self.batch_size,
            "world": self.world,
            "shuffle": self.shuffle,
            "balanced": self.balanced,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict()``: same seed and epoch, from its next batch."""
        start = int(state.get("start_batch", 0))
        if start:
            layout = ("size", "batch_size", "world", "shuffle", "balanced", "drop_last")
            changed = [k for k in layout if k in state and state[k] != getattr(self, k)]
            if changed:
                detail = ", ".join(f"{k} {state[k]} -> {getattr(self, k)}" for k in changed)
                raise ConfigError(
                    f"cannot resume mid-epoch: the batches have changed ({detail})",
                    "resume with the same data, batch size and number of processes",
                )
        self.seed = int(state.get("seed", self.seed))
        self.epoch = int(state["epoch"])
        self.start_batch = start
        self._yielded = 0


def class_balanced_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-sample weights 1 / (count of its class): each class gets the same total weight."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return torch.zeros(0, dtype=torch.float64)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return torch.from_numpy(1.0 / counts[inverse].astype(np.float64))
