"""One optimisation step, as a plain function.

AMP, DDP, channels_last and compile are wrapped around it by the caller
(autocast context, scaler, wrapped model, memory format of the inputs); the
step itself never branches on them. With bf16 or fp32 the scaler is
disabled and its calls are pass-throughs.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch


def train_step(
    model: torch.nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: "torch.amp.GradScaler",
    loss_fn: torch.nn.Module,
    autocast: AbstractContextManager,
) -> float:
    """Forward, backward and update on one batch; returns the batch's mean loss.

    ``inputs`` is an image batch, or a tuple of arguments (a study model's
    padded views and their mask).
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast:
        logits = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
        loss = loss_fn(logits.float(), targets)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())
