"""The data side of a training run: find or build the cache, then loaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from muracli.batches.augment import GREY_MEAN, GREY_STD, AugmentConfig
from muracli.batches.sampler import mix_seed
from muracli.errors import DataError
from muracli.machine import usable_cores
from muracli.progress import ProgressFn
from muracli.runtime.caches import open_or_build_cache
from muracli.runtime.distributed import World
from muracli.training.config import TrainConfig


@dataclass
class TrainData:
    train: object  # CacheSplit
    valid: object  # CacheSplit
    loader: object  # ThreadLoader (image models) or DataLoader (study models)
    sampler: object  # EpochSampler
    steps_per_epoch: int
    class_weights: torch.Tensor  # [w_normal, w_abnormal]
    image_size: int
    fit: str
    fingerprint: str
    source: str
    cache_path: Path
    prepared: bool = False  # the loader's batches are already augmented and normalised model input


def load_train_data(config: TrainConfig, world: World, device: torch.device, progress: ProgressFn | None = None) -> TrainData:
    from muracli.batches.datasets import image_loader

    cache = open_or_build_cache(
        data=config.data, manifest=config.manifest, cache=config.cache, size=config.image_size, fit=config.fit, world=world, progress=progress
    )
    train, valid = cache.split("train"), cache.split("valid")
    if len(train.index) == 0 or len(valid.index) == 0:
        raise DataError(
            f"the cache at {cache.path} has {len(train.index)} train and {len(valid.index)} valid images",
            "training needs both splits; check `mura stats` for the dataset",
        )
    if config.study_model:
        from muracli.batches.datasets import study_loader

        workers = config.workers if config.workers is not None else (0 if device.type == "cpu" else min(8, usable_cores()))
        # --batch-size counts studies here: each brings up to --max-views images.
        loader, sampler = study_loader(
            train, batch_size=config.batch_size, shuffle=True, seed=config.seed, max_views=config.max_views,
            workers=workers, rank=world.rank, world=world.size, balanced=config.balanced_sampling,
            pin_memory=device.type == "cuda",
        )
        prepared = False
    else:
        from muracli.batches.datasets import LoaderPrepare

        # Loader threads, not processes (see muracli.batches.loader). On the CPU
        # they also augment and normalise, one compiled pass per image, seeded
        # per batch; one thread keeps the next batch ready while the model
        # uses torch's threads. On CUDA they only read uint8 batches into
        # pinned memory and the GPU augments.
        workers = config.workers if config.workers is not None else (1 if device.type == "cpu" else min(4, usable_cores()))
        prepared = device.type == "cpu"
        prepare = None
        if prepared:
            augment = config.augmentation() or AugmentConfig.none()
            prepare = LoaderPrepare(augment=augment, mean=GREY_MEAN, std=GREY_STD, seed=mix_seed(config.seed, 0xA06))
        loader, sampler = image_loader(
            train, batch_size=config.batch_size, shuffle=True, seed=config.seed, workers=workers,
            threads=True, rank=world.rank, world=world.size, balanced=config.balanced_sampling,
            pin_memory=device.type == "cuda", drop_last=False, prepare=prepare,
        )
    return TrainData(
        train=train,
        valid=valid,
        loader=loader,
        sampler=sampler,
        steps_per_epoch=len(sampler),
        class_weights=mura_class_weights(train.index),
        image_size=cache.size,
        fit=cache.fit,
        fingerprint=cache.manifest.fingerprint,
        source=str(cache.manifest.source),
        cache_path=cache.path,
        prepared=prepared,
    )


def mura_class_weights(index) -> torch.Tensor:
    """The MURA paper's weights over training studies: w_abnormal = N/(A+N), w_normal = A/(A+N).

    The rarer class gets the larger weight, so both classes pull equally on the loss.
    """
    studies = index.drop_duplicates("study")
    abnormal = int((studies["label"] == 1).sum())
    normal = int((studies["label"] == 0).sum())
    total = max(1, abnormal + normal)
    return torch.tensor([abnormal / total, normal / total], dtype=torch.float32)

