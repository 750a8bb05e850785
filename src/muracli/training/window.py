"""One optimiser step over a window of micro-batches (gradient accumulation, ``--accumulate N``).

With accumulation, a run takes one optimiser step every N batches of the
loader (the last window of an epoch may be shorter). The window's loss is
its class-weighted loss summed over every image of the window divided by
the window's total class weight (the image count without class weights):
exactly the mean loss of one batch of all its images, so ``--accumulate 2``
with ``--batch-size B`` follows the gradients of ``--batch-size 2B``
(BatchNorm and dropout aside). Each micro-batch's mean loss enters with the
share ``its weight / the window's``. Under DDP the micro-batches but the last
skip the gradient all-reduce (``no_sync``).

A "step" of the run (``Progress.step``, the cosine schedule, the progress
bar) is one optimiser step: ``ceil(batches / N)`` per epoch. A resume
skips ``step * N`` batches of the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from typing import Any

import torch

from muracli.training.step import backward, update


def steps_per_epoch(batches: int, accumulate: int) -> int:
    """Optimiser steps in an epoch of ``batches`` batches, ``accumulate`` per step."""
    return math.ceil(batches / accumulate)


def windows(loader: Iterable, size: int) -> Iterator[list]:
    """The loader's items in lists of ``size`` (the last one shorter when they do not divide)."""
    window = []
    for item in loader:
        window.append(item)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


class StepWindow:
    """Zero the gradients, forward and backward every micro-batch, then one update (and the EMA's).

    ``model`` is what the step runs (DDP- and compile-wrapped), ``raw`` the
    plain module the EMA (``torch.optim.swa_utils.AveragedModel``) follows.
    ``class_weights`` (on the CPU, or None) weigh the labels into each
    micro-batch's share.
    """

    def __init__(
        self, *, model: torch.nn.Module, raw: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler,
        loss_fn: torch.nn.Module, autocast: Callable[[], Any], class_weights: torch.Tensor | None = None,
        clip_grad: float = 0.0, ema: torch.optim.swa_utils.AveragedModel | None = None,
    ):
        self.model, self.raw, self.optimizer, self.scaler = model, raw, optimizer, scaler
        self.loss_fn, self.autocast, self.class_weights = loss_fn, autocast, class_weights
        self.clip_grad, self.ema = clip_grad, ema
        ddp = getattr(model, "_orig_mod", model)  # torch.compile wraps DDP
        self.no_sync = ddp.no_sync if isinstance(ddp, torch.nn.parallel.DistributedDataParallel) else nullcontext

    def weight(self, labels: torch.Tensor) -> float:
        """A micro-batch's total class weight (its size without class weights)."""
        if self.class_weights is None:
            return float(len(labels))
        return float(self.class_weights[labels.cpu().long()].sum())

    def step(self, items: list, prepare: Callable[[Any], tuple[Any, Any]]) -> list[torch.Tensor]:
        """One optimiser step over ``items`` (the loader's, last element the labels), each made
        into ``(inputs, targets)`` by ``prepare`` just before its forward; returns their mean losses."""
        shares = [self.weight(item[-1]) for item in items]
        total = sum(shares) or 1.0
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for i, item in enumerate(items):
            inputs, targets = prepare(item)
            with nullcontext() if i == len(items) - 1 else self.no_sync():
                share = 1.0 if len(items) == 1 else shares[i] / total
                losses.append(backward(self.model, inputs, targets, self.scaler, self.loss_fn, self.autocast(), share=share))
        update(self.optimizer, self.scaler, clip_grad=self.clip_grad)
        if self.ema is not None:
            self.ema.update_parameters(self.raw)
        return losses
