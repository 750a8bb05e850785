"""Optimisers and learning-rate schedules."""

from __future__ import annotations

import math

import torch

from muracli.choices import OPTIMIZERS, check_choice
from muracli.training.config import TrainConfig


def build_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``config.optimizer`` names over the trainable ``params``; an unknown name is a ``ConfigError``."""
    params = [p for p in params if p.requires_grad]
    name = check_choice(config.optimizer, OPTIMIZERS, "optimizer")
    if name == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


class Schedule:
    """One interface over the two kinds of schedule.

    ``plateau`` (the MURA paper: divide the LR by 10 when the loss of the
    split that chooses the checkpoint, valid or ``--select-on``'s part of
    train, stops improving) steps once per epoch with that loss; ``cosine``
    (with linear warm-up) steps after every optimisation step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
        self.kind = config.schedule
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None
        if self.kind == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=0.1, patience=config.plateau_patience
            )
        elif self.kind == "cosine":
            total = max(1, config.epochs * steps_per_epoch)
            warmup = int(round(config.warmup_epochs * steps_per_epoch))
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _WarmupCosine(warmup, total))
        else:
            self.scheduler = None

    def after_step(self) -> None:
        if self.kind == "cosine":
            self.scheduler.step()

    def after_epoch(self, loss: float) -> None:
        if self.kind == "plateau" and math.isfinite(loss):
            self.scheduler.step(loss)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is None or not state:
            return
        fresh = [dict(f.__dict__) for f in getattr(self.scheduler, "lr_lambdas", [])]
        self.scheduler.load_state_dict(state)
        # LambdaLR restores its lambda's attributes, which include the total
        # step count. Keep the freshly built ones, so that a run resumed with
        # a larger --epochs lays its cosine over the new total.
        for function, attributes in zip(getattr(self.scheduler, "lr_lambdas", []), fresh):
            function.__dict__.update(attributes)


class _WarmupCosine:
    """LR factor: linear warm-up over ``warmup`` steps, then half a cosine to 0 at ``total``.

    A callable object rather than a closure so LambdaLR can save its state.
    """

    def __init__(self, warmup: int, total: int):
        self.warmup = warmup
        self.total = total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
