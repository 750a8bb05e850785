"""Image probabilities of a model over a cached split: batched, memory-bounded,
sharded across ranks under DDP and gathered so every rank sees the whole split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from muracli.batches.augment import prepare_batch
from muracli.batches.datasets import study_batches
from muracli.models.classifier import abnormal_log_odds, abnormal_probability
from muracli.progress import ProgressFn
from muracli.runtime.devices import Precision
from muracli.runtime.distributed import World, gather_objects

IMAGE_COLUMNS = ["path", "study", "body_part", "label", "view"]


@torch.inference_mode()
def image_probabilities(
    model: torch.nn.Module,
    split,
    *,
    device: torch.device,
    mean: float,
    std: float,
    precision: Precision = Precision(None),
    max_images: int = 256,
    channels_last: bool = False,
    world: World = World(),
    progress: ProgressFn | None = None,
    task: str = "validate",
    log_odds: bool = False,
) -> pd.DataFrame:
    """One row per image of ``split`` (index order): path, study, body_part, label,
    view and ``probability`` of abnormality (softmax of the two logits); with
    ``log_odds``, also ``log_odds`` (``z1 - z0``, what temperature scaling divides)."""
    batches = (
        ((prepare_batch(x, device=device, mean=mean, std=std, channels_last=channels_last),), index)
        for x, index in study_batches(split, max_images=max_images, rank=world.rank, world=world.size)
    )
    rows, probability, odds = _scores(model, batches, len(split.index), device=device, precision=precision,
                                      world=world, progress=progress, task=task)
    table = split.index.iloc[rows][IMAGE_COLUMNS].reset_index(drop=True)
    table["probability"] = probability
    if log_odds:
        table["log_odds"] = odds
    return table


def _scores(model, batches, total: int, *, device, precision: Precision, world: World,
            progress: ProgressFn | None, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``model(*inputs)`` in eval mode over ``batches`` of ``(inputs, positions)``;
    every rank's positions (each once, sorted), their probability of abnormality and its log-odds."""
    was_training = model.training
    model.eval()
    positions: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    odds: list[np.ndarray] = []
    done = 0
    try:
        with precision.autocast(device):
            for inputs, index in batches:
                logits = model(*inputs)
                # kept on the device until the end: a copy to the host per batch would make the CPU
                # wait for each batch before it queues the next
                probabilities.append(abnormal_probability(logits))
                odds.append(abnormal_log_odds(logits))
                positions.append(np.asarray(index))
                done += len(index)
                if progress is not None:
                    progress(task, min(done * world.size, total), total)
    finally:
        model.train(was_training)
    return _gather(positions, _host(probabilities), _host(odds), world)


def _host(values: list[torch.Tensor]) -> list[np.ndarray]:
    """Per-batch device tensors as one numpy array (in a list, as ``_gather`` takes them), copied to the host in one go."""
    return [torch.cat(values).cpu().numpy()] if values else []


def _gather(positions: list[np.ndarray], probabilities: list[np.ndarray], odds: list[np.ndarray],
            world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every rank's (position, probability, log-odds), each position once, sorted by position."""
    local = (
        np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64),
        np.concatenate(probabilities) if probabilities else np.zeros(0, dtype=np.float32),
        np.concatenate(odds) if odds else np.zeros(0, dtype=np.float32),
    )
    gathered = gather_objects(local, world)
    all_positions = np.concatenate([g[0] for g in gathered])
    unique, first = np.unique(all_positions, return_index=True)
    all_probs, all_odds = (np.concatenate([g[k] for g in gathered])[first].astype(np.float64) for k in (1, 2))
    return unique, all_probs, all_odds


def image_losses(table: pd.DataFrame) -> np.ndarray:
    """Per-row (image or study) cross-entropy from two-class softmax probabilities."""
    p = np.clip(table["probability"].to_numpy(dtype=np.float64), 1e-7, 1 - 1e-7)
    y = table["label"].to_numpy()
    return -np.where(y == 1, np.log(p), np.log1p(-p))


@torch.inference_mode()
def study_probabilities(
    model: torch.nn.Module,
    split,
    *,
    device: torch.device,
    mean: float,
    std: float,
    precision: Precision = Precision(None),
    max_images: int = 256,
    channels_last: bool = False,
    world: World = World(),
    progress: ProgressFn | None = None,
    task: str = "validate",
    log_odds: bool = False,
) -> pd.DataFrame:
    """One row per study of ``split`` from a study model (all views at once):
    study, body_part, label, probability, n_images (and ``log_odds`` when asked)."""
    from muracli.batches.datasets import StudyDataset, padded_study_batches

    dataset = StudyDataset(split)
    batches = (
        (study_inputs(x, mask, device=device, mean=mean, std=std, channels_last=channels_last), index)
        for x, mask, index in padded_study_batches(dataset, max_images=max_images, rank=world.rank, world=world.size)
    )
    unique, probability, odds = _scores(model, batches, len(dataset.studies), device=device, precision=precision,
                                        world=world, progress=progress, task=task)
    table = dataset.studies.iloc[unique][["study", "body_part", "label", "n_images"]].reset_index(drop=True)
    table["probability"] = probability
    if log_odds:
        table["log_odds"] = odds
    return table[["study", "body_part", "label", "probability", "n_images", *(["log_odds"] if log_odds else [])]]


def study_inputs(x, mask, *, device, mean, std, augment=None, generator=None, channels_last=False):
    """A padded uint8 study batch (B, V, 1, S, S) as the model's (x, mask), each view prepared like an image."""
    b, v = mask.shape
    flat = prepare_batch(
        x.reshape(b * v, *x.shape[2:]), device=device, mean=mean, std=std, augment=augment, generator=generator,
        channels_last=False,
    )
    views = flat.reshape(b, v, *flat.shape[1:])
    return views, mask.to(device, non_blocking=True)
