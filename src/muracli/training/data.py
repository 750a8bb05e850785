"""The data side of a training run: find or build the cache, the splits it trains and chooses on, then loaders.

A run of some body parts (``--body-part``) takes their images from the
cache's splits; a run that chooses its checkpoint on a part of train
(``--select-on train:FRACTION``) holds that part's studies out of training
(``muracli.data.selection.selection_studies``), and a resumed run holds out
the studies its ``selection.csv`` lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from muracli.batches.augment import GREY_MEAN, GREY_STD, AugmentConfig
from muracli.batches.sampler import mix_seed
from muracli.data.layout import parse_body_parts
from muracli.data.selection import selection_studies
from muracli.errors import DataError
from muracli.machine import usable_cores
from muracli.progress import ProgressFn
from muracli.runtime.caches import open_or_build_cache
from muracli.runtime.distributed import World
from muracli.runtime.rundir import RunDir
from muracli.training.config import TrainConfig

if TYPE_CHECKING:
    import pandas as pd


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
    select: object | None = None  # CacheSplit: the held-out part of train that chooses best.pt, if any
    selection: "pd.DataFrame | None" = None  # its studies, as selection.csv lists them


def load_train_data(config: TrainConfig, world: World, device: torch.device, progress: ProgressFn | None = None) -> TrainData:
    from muracli.batches.datasets import image_loader

    config.body_parts = parse_body_parts(config.body_parts)
    cache = open_or_build_cache(
        data=config.data, manifest=config.manifest, cache=config.cache, size=config.image_size, fit=config.fit,
        world=world, progress=progress, body_parts=config.body_parts,
    )
    if config.body_parts is None and cache.body_parts is not None:
        config.body_parts = list(cache.body_parts)  # a cache of some body parts makes a run of those parts
    train, valid = cache.split("train", config.body_parts), cache.split("valid", config.body_parts)
    if len(train.index) == 0 or len(valid.index) == 0:
        parts = f" of {', '.join(config.body_parts)}" if config.body_parts else ""
        raise DataError(
            f"the cache at {cache.path} has {len(train.index)} train and {len(valid.index)} valid images{parts}",
            "training needs both splits; check `mura stats` for the dataset",
        )
    select, selection = None, None
    if config.selection_fraction is not None:
        selection = _selection(config, train.index)
        held = train.index["study"].isin(selection["study"]).to_numpy()
        train, select = train.subset(~held), train.subset(held, name="select")
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
        select=select,
        selection=selection,
    )


def _selection(config: TrainConfig, train: "pd.DataFrame") -> "pd.DataFrame":
    """The studies of ``train`` (a cache index) held out to choose the checkpoint.

    A resumed run keeps the ones its selection.csv lists; a new run draws
    them with ``--select-seed`` (every rank alike: the draw depends on the
    index and the seed only).
    """
    run = RunDir(config.out) if config.out else None
    if run is not None and run.config_path.is_file() and run.selection_path.is_file():
        selection = run.read_selection()
        lost = sorted(set(selection["study"]) - set(train["study"]))
        if lost:
            raise DataError(
                f"{run.selection_path} lists {len(lost)} studies the training data lacks (e.g. {lost[0]})",
                "resume on the data the run was trained on (see its config.json)",
            )
    else:
        selection = selection_studies(train, config.selection_fraction, config.select_seed)
    where = f"--select-on {config.select_on} (--select-seed {config.select_seed})"
    labels = set(selection["label"])
    if len(selection) == 0 or len(selection) == train["study"].nunique() or labels != {0, 1}:
        raise DataError(
            f"{where} holds out {len(selection)} of {train['study'].nunique()} training studies"
            f"{', all ' + ('abnormal' if 1 in labels else 'normal') if len(labels) == 1 else ''}: "
            "kappa needs both classes there and training needs the rest",
            "choose another FRACTION (or --select-seed), or more data",
        )
    return selection


def mura_class_weights(index) -> torch.Tensor:
    """The MURA paper's weights over training studies: w_abnormal = N/(A+N), w_normal = A/(A+N).

    The rarer class gets the larger weight, so both classes pull equally on the loss.
    """
    studies = index.drop_duplicates("study")
    abnormal = int((studies["label"] == 1).sum())
    normal = int((studies["label"] == 0).sum())
    total = max(1, abnormal + normal)
    return torch.tensor([abnormal / total, normal / total], dtype=torch.float32)

