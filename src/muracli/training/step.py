"""One optimisation step, as plain functions.

AMP, DDP, channels_last and compile are wrapped around it by the caller
(autocast context, scaler, wrapped model, memory format of the inputs); the
step itself never branches on them. With bf16 or fp32 the scaler is
disabled and its calls are pass-throughs. With fp16, ``scaler.step`` reads back whether the
gradients were finite: one host sync per step that bf16 and fp32 runs do not have (the loop
itself reads the loss back only at ticks: ``training.meter``). ``train_step`` is ``backward``
then ``update`` on one batch; gradient accumulation (``training.window``)
calls ``backward`` once per micro-batch and ``update`` once per window.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch


def train_step(
    model: torch.nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    targets,
    optimizer: torch.optim.Optimizer,
    scaler: "torch.amp.GradScaler",
    loss_fn: torch.nn.Module,
    autocast: AbstractContextManager,
    *,
    clip_grad: float = 0.0,
) -> torch.Tensor:
    """Forward, backward and update on one batch; returns the batch's mean loss (a detached tensor).

    ``inputs`` is an image batch, or a tuple of arguments (a study model's
    padded views and their mask).
    """
    optimizer.zero_grad(set_to_none=True)
    loss = backward(model, inputs, targets, scaler, loss_fn, autocast)
    update(optimizer, scaler, clip_grad=clip_grad)
    return loss


def backward(model, inputs, targets, scaler, loss_fn, autocast, *, share: float = 1.0) -> torch.Tensor:
    """Forward and backward on one batch: ``share`` times its mean loss's gradient adds to ``.grad``;
    returns the mean loss, detached."""
    with autocast:
        logits = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
        loss = loss_fn(logits.float(), targets)
    scaler.scale(loss if share == 1.0 else loss * share).backward()
    return loss.detach()


def update(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *, clip_grad: float = 0.0) -> torch.Tensor | None:
    """The optimiser step on the gradients in ``.grad``, their norm first clipped to ``clip_grad``
    (on the unscaled gradients; 0: no clipping). Returns the norm before clipping, None without."""
    norm = None
    if clip_grad > 0:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, clip_grad)
    scaler.step(optimizer)
    scaler.update()
    return norm
