"""The training loss: class-weighted cross-entropy with optional label smoothing, on plain or mixed targets."""

from __future__ import annotations

import torch
from torch import nn

from muracli.batches.mix import MixedTargets


class TrainLoss(nn.Module):
    """``CrossEntropyLoss(weight=class weights, label_smoothing=...)``, the batch mean.

    On ``MixedTargets`` (mixup, CutMix) it is ``lam * loss(a) + (1 - lam) * loss(b)``.
    ``b`` permutes ``a``, so both terms share one normaliser (the batch's total class
    weight) and the mixed loss is a weighted sum over the batch divided by that
    weight, as the plain one is.
    """

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.cross_entropy = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor | MixedTargets) -> torch.Tensor:
        if isinstance(targets, MixedTargets):
            return targets.lam * self.cross_entropy(logits, targets.a) + (1.0 - targets.lam) * self.cross_entropy(logits, targets.b)
        return self.cross_entropy(logits, targets)
