"""Training batches on threads (muracli.batches.loader, via image_loader(threads=True))."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from cache_splits import make_split

from muracli.batches.augment import AugmentConfig
from muracli.batches.datasets import ImageDataset, LoaderPrepare, image_loader
from muracli.batches.loader import ThreadLoader
from muracli.errors import ConfigError

VIEWS = [3, 1, 2, 4, 1, 1, 2, 3, 2, 1, 5, 1, 2, 2]


@pytest.fixture
def split(tmp_path):
    return make_split(tmp_path, VIEWS, size=16)


def epoch(loader, sampler, number: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    sampler.set_epoch(number)
    return [(x.clone(), y.clone()) for x, y in loader]


def loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mura-loader")]


@pytest.mark.parametrize("prepare", [None, LoaderPrepare(augment=AugmentConfig(), seed=5)], ids=["uint8", "augmented"])
def test_same_batches_as_the_dataloader_whatever_the_threads(split, prepare):
    sp, _ = split
    reference_loader, reference_sampler = image_loader(sp, batch_size=4, shuffle=True, seed=3, prepare=prepare)
    reference = epoch(reference_loader, reference_sampler, 2)
    for workers in (0, 1, 3):
        loader, sampler = image_loader(
            sp, batch_size=4, shuffle=True, threads=True, seed=3, workers=workers, prepare=prepare
        )
        assert len(loader) == len(reference_sampler) == len(reference)
        got = epoch(loader, sampler, 2)
        assert len(got) == len(reference)
        for (xa, ya), (xb, yb) in zip(got, reference):
            assert xa.dtype == (torch.uint8 if prepare is None else torch.float32)
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not loader_threads()


def test_an_epoch_covers_every_image_once_and_epochs_differ(split):
    sp, data = split
    loader, sampler = image_loader(sp, batch_size=5, shuffle=True, threads=True, seed=0, workers=2)
    first = epoch(loader, sampler, 0)
    seen = np.concatenate([x[:, 0, 0, 0].numpy() for x, _ in first])
    assert sorted(seen.tolist()) == sorted((np.arange(len(data)) % 256).tolist())
    second = epoch(loader, sampler, 1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, second))


def test_resuming_mid_epoch_continues_with_the_same_batches(split):
    sp, _ = split
    prep = LoaderPrepare(augment=AugmentConfig(), seed=1)
    loader, sampler = image_loader(sp, batch_size=4, shuffle=True, threads=True, seed=3, workers=2, prepare=prep)
    whole = epoch(loader, sampler, 1)
    sampler.start_batch = 3
    rest = [x for x, _ in loader]
    assert len(rest) == len(whole) - 3
    assert all(torch.equal(a, b[0]) for a, b in zip(rest, whole[3:]))


def test_leaving_early_stops_the_threads(split):
    sp, _ = split
    loader, sampler = image_loader(sp, batch_size=2, shuffle=True, threads=True, seed=0, workers=3, prefetch_factor=4)
    batches = iter(loader)
    next(batches)
    assert loader_threads()
    batches.close()
    assert not loader_threads()
    for _ in loader:  # and the loader can start again afterwards
        break
    assert not loader_threads()


class Exploding(ImageDataset):
    """Fails on the third batch it is asked for."""

    def __getitems__(self, indices):
        if indices.number == 2:
            raise RuntimeError("bad batch")
        return super().__getitems__(indices)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_in_a_batch_reaches_the_caller_in_order(split, workers):
    sp, _ = split
    dataset = Exploding(sp)
    loader, sampler = image_loader(dataset, batch_size=3, shuffle=False, threads=True, seed=0, workers=workers)
    got = []
    with pytest.raises(RuntimeError, match="bad batch"):
        for x, _ in loader:
            got.append(x)
    assert len(got) == 2
    assert not loader_threads()


def test_pinning_is_a_no_op_without_cuda(split):
    sp, data = split
    loader, sampler = image_loader(sp, batch_size=4, shuffle=False, threads=True, seed=0, workers=1, pin_memory=True)
    assert loader.pin_memory == torch.cuda.is_available()
    x, _ = next(iter(loader))
    assert np.array_equal(x[:, 0].numpy(), data[:4])


def test_rejects_bad_settings(split):
    sp, _ = split
    dataset = ImageDataset(sp)
    _, sampler = image_loader(dataset, batch_size=4, shuffle=False, threads=True, seed=0)
    with pytest.raises(ConfigError):
        ThreadLoader(dataset, sampler, workers=-1)
    with pytest.raises(ConfigError):
        ThreadLoader(dataset, sampler, prefetch=0)
    with pytest.raises(TypeError):
        ThreadLoader([1, 2, 3], sampler)
