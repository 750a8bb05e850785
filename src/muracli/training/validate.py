"""Validation after every epoch: study-level loss, kappa and AUC on the valid split, and on the
held-out part of train that chooses the checkpoint when there is one (``--select-on train:FRACTION``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from muracli.batches.augment import GREY_MEAN, GREY_STD
from muracli.metrics.aggregate import aggregate_studies
from muracli.metrics.binary import binary_metrics
from muracli.runtime.devices import Precision
from muracli.runtime.distributed import World
from muracli.runtime.inference import image_losses, image_probabilities, study_probabilities


def validate(
    model: torch.nn.Module,
    split,
    *,
    device: torch.device,
    precision: Precision,
    channels_last: bool,
    aggregate: str,
    threshold: float,
    max_images: int,
    world: World,
    progress=None,
    study_model: bool = False,
    prefix: str = "valid",
) -> dict[str, Any]:
    """The split's loss (mean cross-entropy per image, or per study for a
    study model) and study-level kappa, AUC and accuracy, as ``<prefix>_loss``,
    ``<prefix>_kappa``, ``<prefix>_auc`` and ``<prefix>_accuracy``."""
    options = dict(
        device=device, mean=GREY_MEAN, std=GREY_STD, precision=precision, max_images=max_images,
        channels_last=channels_last, world=world, progress=progress, task="validate" if prefix == "valid" else prefix,
    )
    if study_model:
        rows = study_probabilities(model, split, **options)
        studies = rows.assign(prediction=(rows["probability"] >= threshold).astype(int))
    else:
        rows = image_probabilities(model, split, **options)
        studies = aggregate_studies(rows, method=aggregate, threshold=threshold)
    metrics = binary_metrics(
        studies["label"].to_numpy(), studies["probability"].to_numpy(), threshold,
        predictions=studies["prediction"].to_numpy(),
    )
    # Undefined metrics (e.g. a single-class split) are None, as in metrics.json.
    return {
        f"{prefix}_loss": float(image_losses(rows).mean()) if len(rows) else math.nan,
        f"{prefix}_kappa": metrics["kappa"],
        f"{prefix}_auc": metrics["auc"],
        f"{prefix}_accuracy": metrics["accuracy"],
    }
