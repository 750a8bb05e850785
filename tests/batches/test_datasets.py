"""Datasets, the epoch sampler and study batches over a cache split (muracli.batches.datasets)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from cache_splits import FakeSplit, S, make_split

from muracli.batches.augment import AugmentConfig, prepare_batch
from muracli.batches.datasets import (
    BatchIndices,
    EpochSampler,
    ImageDataset,
    LoaderPrepare,
    StudyDataset,
    image_loader,
    read_rows,
    study_batches,
    study_table,
)
from muracli.errors import ConfigError, DataError


@pytest.fixture
def split(tmp_path):
    return make_split(tmp_path, [3, 1, 2, 4, 1, 1, 2, 3, 2, 1, 5, 1, 2, 2])


# ImageDataset ------------------------------------------------------------------------------------


def test_image_dataset_items_match_the_array(split):
    sp, data = split
    ds = ImageDataset(sp)
    assert len(ds) == len(data)
    assert ds.image_size == S
    x, y = ds[5]
    assert x.dtype == torch.uint8 and x.shape == (1, S, S)
    assert np.array_equal(x[0].numpy(), data[5])
    assert y == int(sp.index["label"][5])
    assert np.array_equal(ds.labels, sp.index["label"].to_numpy())


def test_getitems_reads_the_requested_order(split):
    sp, data = split
    ds = ImageDataset(sp)
    ids = [17, 3, 9, 3, 0, 25]
    x, y = ds.__getitems__(ids)
    assert x.shape == (len(ids), 1, S, S) and x.dtype == torch.uint8
    assert y.dtype == torch.int64
    assert np.array_equal(x[:, 0].numpy(), data[ids])
    assert np.array_equal(y.numpy(), sp.index["label"].to_numpy()[ids])
    assert x.numpy().flags.writeable


def test_row_subset(split):
    sp, data = split
    rows = [20, 2, 7]
    ds = ImageDataset(sp, rows=rows)
    assert len(ds) == 3
    x, y = ds.__getitems__([2, 0])
    assert np.array_equal(x[:, 0].numpy(), data[[7, 20]])
    assert np.array_equal(ds.labels, sp.index["label"].to_numpy()[rows])
    with pytest.raises(DataError):
        ImageDataset(sp, rows=[len(data)])


def test_read_rows_handles_sorted_unsorted_and_empty(split):
    sp, data = split
    for rows in ([0, 1, 2], [5, 1, 4], [3], []):
        out = read_rows(sp.pixels, np.array(rows, dtype=np.int64))
        assert out.shape == (len(rows), 1, S, S)
        assert np.array_equal(out[:, 0].numpy(), data[rows])


def test_read_rows_into_shared_memory(split):
    sp, data = split
    out = read_rows(sp.pixels, np.array([4, 0, 9]), shared=True)
    assert out.is_shared()
    assert np.array_equal(out[:, 0].numpy(), data[[4, 0, 9]])


def test_dataset_pickles_without_the_pixels(tmp_path):
    sp, data = make_split(tmp_path, [50] * 40)  # 2000 images, 128 kB of pixels
    ds = ImageDataset(sp)
    blob = pickle.dumps(ds)
    assert len(blob) < 40_000  # labels and rows, not the pixels
    back = pickle.loads(blob)
    assert isinstance(back._pixels, np.memmap)
    assert np.array_equal(back.__getitems__([3, 1999])[0][:, 0].numpy(), data[[3, 1999]])
    # A slice of the map reopens at the right offset.
    sub = FakeSplit("train", sp.pixels[100:200], sp.index.iloc[100:200].reset_index(drop=True))
    back = pickle.loads(pickle.dumps(ImageDataset(sub)))
    assert np.array_equal(back[0][0][0].numpy(), data[100])
    study = pickle.loads(pickle.dumps(StudyDataset(sp)))
    assert np.array_equal(study[1][0][:, 0].numpy(), data[50:100])


def test_bad_splits_are_rejected(split):
    sp, _ = split
    with pytest.raises(DataError):
        ImageDataset(FakeSplit("train", sp.pixels, sp.index.iloc[:-1]))
    with pytest.raises(DataError):
        ImageDataset(FakeSplit("train", np.zeros((len(sp.index), S, S + 1), np.uint8), sp.index))


@pytest.mark.parametrize("shuffle", [True, False])
def test_loader_batches_are_identical_with_and_without_workers(split, shuffle):
    sp, data = split
    runs = []
    for workers in (0, 2):
        loader, sampler = image_loader(sp, batch_size=4, shuffle=shuffle, seed=3, workers=workers)
        epochs = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            epochs.append([(x.clone(), y.clone()) for x, y in loader])
        runs.append(epochs)
    for e0, e1 in zip(*runs):
        assert len(e0) == len(e1) == len(sampler)
        for (xa, ya), (xb, yb) in zip(e0, e1):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # The batches are the sampler's indices, read from the array.
    sampler.set_epoch(1)
    for (x, y), ids in zip(runs[0][1], sampler.batches()):
        assert np.array_equal(x[:, 0].numpy(), data[ids])
        assert x.shape[0] == len(y)
    if shuffle:
        assert not all(torch.equal(a[0], b[0]) for a, b in zip(runs[0][0], runs[0][1]))


def test_loader_covers_an_epoch_once(split):
    sp, data = split
    loader, sampler = image_loader(sp, batch_size=5, shuffle=True, seed=0)
    seen = np.concatenate([x[:, 0, 0, 0].numpy() for x, _ in loader])
    assert sorted(seen.tolist()) == sorted((np.arange(len(data)) % 256).tolist())


@pytest.mark.parametrize("cfg", [AugmentConfig(), None])
def test_loader_prepare_is_prepare_batch_keyed_by_batch_and_independent_of_workers(split, cfg):
    sp, data = split
    prep = LoaderPrepare(augment=cfg, seed=11)
    runs = []
    for workers in (0, 2):
        loader, sampler = image_loader(sp, batch_size=4, shuffle=True, seed=3, workers=workers, prepare=prep)
        sampler.set_epoch(1)
        runs.append([(x.clone(), y.clone()) for x, y in loader])
    assert len(runs[0]) == len(runs[1]) == len(sampler)
    for (xa, ya), (xb, yb) in zip(*runs):
        assert xa.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb)
    sampler.set_epoch(1)
    for (x, _), ids in zip(runs[0], sampler):
        uint8 = torch.from_numpy(data[list(ids)]).unsqueeze(1)
        expected = prepare_batch(uint8, device="cpu", augment=cfg, generator=prep.generator(ids.key))
        assert torch.allclose(x, expected, atol=1e-5)
    # Resuming mid-epoch gives the same augmented batches as the full epoch.
    loader, sampler = image_loader(sp, batch_size=4, shuffle=True, seed=3, prepare=prep)
    sampler.set_epoch(1)
    sampler.start_batch = 2
    resumed = [x for x, _ in loader]
    assert all(torch.equal(a, b[0]) for a, b in zip(resumed, runs[0][2:]))


def test_loader_prepare_differs_between_batches_and_seeds(split):
    sp, _ = split
    x = torch.full((2, 1, S, S), 128, dtype=torch.uint8)
    prep = LoaderPrepare(augment=AugmentConfig(), seed=0)
    a = prep(x, (0, 0, 0))
    assert not torch.equal(a, prep(x, (0, 1, 0)))
    assert not torch.equal(a, prep(x, (1, 0, 0)))
    assert not torch.equal(a, prep(x, (0, 0, 1)))
    assert not torch.equal(a, LoaderPrepare(augment=AugmentConfig(), seed=1)(x, (0, 0, 0)))
    assert torch.equal(a, prep(x, (0, 0, 0), shared=True))


# EpochSampler ------------------------------------------------------------------------------------


def flat(sampler: EpochSampler) -> list[int]:
    return [i for batch in sampler for i in batch]


def test_sampler_is_deterministic_per_seed_and_epoch():
    a = EpochSampler(100, 8, seed=1)
    b = EpochSampler(100, 8, seed=1)
    assert list(a) == list(b)
    first = flat(a)
    a.set_epoch(1)
    assert flat(a) != first
    a.set_epoch(0)
    assert flat(a) == first
    assert flat(EpochSampler(100, 8, seed=2)) != first
    # Nearby seeds and epochs do not alias (seed 0 epoch 1 vs seed 1 epoch 0).
    assert flat(EpochSampler(100, 8, seed=0, epoch=1)) != flat(EpochSampler(100, 8, seed=1, epoch=0))
    assert sorted(first) == list(range(100))


def test_sampler_yields_batch_indices_with_their_key():
    s = EpochSampler(10, 4, shuffle=False, rank=1, world=2, epoch=3)
    batches = list(s)
    assert all(isinstance(b, BatchIndices) for b in batches)
    assert [b.key for b in batches] == [(3, 0, 1), (3, 1, 1)]
    s.start_batch = 1
    assert [b.key for b in s] == [(3, 1, 1)]
    assert pickle.loads(pickle.dumps(batches[1])).key == (3, 1, 1)


def test_sampler_sequential_and_lengths():
    s = EpochSampler(10, 4, shuffle=False)
    assert list(s) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(s) == 3
    s = EpochSampler(10, 4, shuffle=False, drop_last=True)
    assert list(s) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(s) == 2
    assert list(EpochSampler(0, 4)) == [] and len(EpochSampler(0, 4)) == 0
    with pytest.raises(ConfigError):
        EpochSampler(10, 0)
    with pytest.raises(ConfigError):
        EpochSampler(10, 2, rank=2, world=2)


@pytest.mark.parametrize("n, world", [(96, 4), (10, 3), (7, 2)])
def test_rank_shards_are_disjoint_cover_the_data_and_have_equal_lengths(n, world):
    shards = [EpochSampler(n, 4, seed=5, rank=r, world=world) for r in range(world)]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1
    assert {len(list(s)) for s in shards} == lengths
    indices = [flat(s) for s in shards]
    assert set().union(*map(set, indices)) == set(range(n))
    total = sum(len(i) for i in indices)
    assert total == -(-n // world) * world  # padded by at most world - 1 repeats
    if n % world == 0:
        for r in range(world):
            for q in range(r + 1, world):
                assert not set(indices[r]) & set(indices[q])


def test_start_batch_skips_exactly():
    s = EpochSampler(50, 6, seed=4, epoch=2)
    full = list(s)
    s.start_batch = 3
    assert list(s) == full[3:]
    assert len(s) == len(full)
    s.set_epoch(2)  # the same epoch keeps the resume point
    assert list(s) == full[3:]
    s.set_epoch(3)  # a new epoch starts from its first batch
    assert s.start_batch == 0 and len(list(s)) == len(full)


def test_state_dict_resumes_mid_epoch():
    s = EpochSampler(50, 6, seed=4)
    s.set_epoch(1)
    it = iter(s)
    next(it), next(it)
    state = s.state_dict()
    assert state["epoch"] == 1 and state["start_batch"] == 2
    rest = list(it)
    resumed = EpochSampler(50, 6, seed=4)
    resumed.load_state_dict(state)
    assert list(resumed) == rest
    assert s.state_dict(batches_done=5)["start_batch"] == 5
    with pytest.raises(ConfigError):
        EpochSampler(50, 8, seed=4).load_state_dict(state)


def test_balanced_sampling_draws_classes_about_equally():
    labels = np.array([1] * 100 + [0] * 900)
    s = EpochSampler(1000, 50, seed=0, labels=labels, balanced=True)
    drawn = np.array(flat(s))
    assert len(drawn) == 1000
    share = labels[drawn].mean()
    assert 0.45 < share < 0.55
    assert flat(s) == flat(EpochSampler(1000, 50, seed=0, labels=labels, balanced=True))
    s.set_epoch(1)
    assert flat(s) != drawn.tolist()
    with pytest.raises(ConfigError):
        EpochSampler(1000, 50, balanced=True)


def test_balanced_loader_draws_both_classes_equally_often(tmp_path):
    # 8 of the 30 images are abnormal (studies 0, 4, 8, 12); plain shuffling keeps that share
    sp, _ = make_split(tmp_path, [3, 1, 2, 4, 1, 1, 2, 3, 2, 1, 5, 1, 2, 2], abnormal_every=4)
    share = float(sp.index["label"].mean())
    assert share == pytest.approx(8 / 30)

    def abnormal_share(balanced: bool, epochs: int = 50) -> float:
        loader, sampler = image_loader(sp, batch_size=4, shuffle=True, seed=0, balanced=balanced)
        labels = []
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            epoch_labels = torch.cat([y for _, y in loader])
            assert len(epoch_labels) == len(sp.index)  # an epoch is as long either way
            labels.append(epoch_labels)
        return float(torch.cat(labels).float().mean())

    assert abnormal_share(balanced=False) == pytest.approx(share)
    assert abnormal_share(balanced=True) == pytest.approx(0.5, abs=0.06)  # 1,500 draws: sd 0.013


# Studies -----------------------------------------------------------------------------------------


def test_study_table_and_dataset_group_views(tmp_path):
    views = [3, 1, 2]
    sp, data = make_split(tmp_path, views)
    # Shuffle the index rows (and pixels alike) so grouping cannot rely on adjacency.
    perm = np.array([4, 0, 5, 2, 3, 1])
    shuffled = FakeSplit("train", data[perm], sp.index.iloc[perm].reset_index(drop=True))
    table = study_table(shuffled.index)
    assert list(table.columns) == ["study", "body_part", "label", "n_images", "rows"]
    assert table["n_images"].tolist() == [2, 3, 1]  # order of first appearance
    ds = StudyDataset(shuffled)
    assert len(ds) == 3
    for j in range(3):
        x, label, study = ds[j]
        rows = table["rows"][j]
        assert x.shape == (len(rows), 1, S, S) and x.dtype == torch.uint8
        assert set(shuffled.index["study"][rows]) == {study}
        assert label == int(shuffled.index["label"][rows[0]])
        assert shuffled.index["view"][rows].tolist() == sorted(shuffled.index["view"][rows])
        assert np.array_equal(x[:, 0].numpy(), shuffled.pixels[rows])


@pytest.mark.parametrize("max_images", [1, 3, 4, 7, 256])
def test_study_batches_bounded_and_cover_every_study_once(split, max_images):
    sp, data = split
    table = study_table(sp.index)
    seen_rows = []
    for x, rows in study_batches(sp, max_images=max_images):
        assert x.shape == (len(rows), 1, S, S)
        assert np.array_equal(x[:, 0].numpy(), data[rows])
        studies = sp.index["study"].to_numpy()[rows]
        if len(rows) > max_images:  # only a single oversized study may exceed the bound
            assert len(set(studies)) == 1
        seen_rows.extend(rows.tolist())
    assert sorted(seen_rows) == list(range(len(data)))
    # Whole studies: each study's rows appear in one batch, contiguously.
    assert len(seen_rows) == len(set(seen_rows))
    assert table["n_images"].max() == 5


def test_study_batches_shard_by_rank(split):
    sp, data = split
    world = 3
    per_rank = [
        np.concatenate([rows for _, rows in study_batches(sp, max_images=4, rank=r, world=world)])
        for r in range(world)
    ]
    assert sorted(np.concatenate(per_rank).tolist()) == list(range(len(data)))
    studies = [set(sp.index["study"].to_numpy()[rows]) for rows in per_rank]
    assert not (studies[0] & studies[1]) and not (studies[1] & studies[2]) and not (studies[0] & studies[2])
    with pytest.raises(ConfigError):
        list(study_batches(sp, max_images=0))
