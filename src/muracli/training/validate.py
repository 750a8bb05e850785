"""Validation after every epoch: study-level loss, kappa and AUC on the valid split."""

from __future__ import annotations

import math
from typing import Any

import torch

from muracli.data.augment import GREY_MEAN, GREY_STD
from muracli.evaluation.aggregate import aggregate_studies
from muracli.evaluation.inference import image_losses, image_probabilities
from muracli.evaluation.metrics import binary_metrics
from muracli.training.devices import Precision
from muracli.training.distributed import World


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
) -> dict[str, Any]:
    """Valid loss (mean image cross-entropy) and study-level kappa, AUC and accuracy."""
    images = image_probabilities(
        model, split, device=device, mean=GREY_MEAN, std=GREY_STD, precision=precision,
        max_images=max_images, channels_last=channels_last, world=world, progress=progress,
    )
    studies = aggregate_studies(images, method=aggregate, threshold=threshold)
    metrics = binary_metrics(
        studies["label"].to_numpy(), studies["probability"].to_numpy(), threshold,
        predictions=studies["prediction"].to_numpy() if "prediction" in studies else None,
    )
    # Undefined metrics (e.g. a single-class split) are None, as in metrics.json.
    return {
        "valid_loss": float(image_losses(images).mean()) if len(images) else math.nan,
        "valid_kappa": metrics["kappa"],
        "valid_auc": metrics["auc"],
        "valid_accuracy": metrics["accuracy"],
    }

