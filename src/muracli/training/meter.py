"""The epoch's running train loss, summed on the device and read back only at progress ticks.

Reading a CUDA loss with ``float(loss)`` every step makes the CPU wait for
the GPU to finish that step before it queues the next: the GPU then idles
while Python launches the next step's kernels. ``LossMeter`` keeps the sum
of ``loss x images`` in a float64 tensor on the device and copies it to the
host (``sync``) only at a tick: every step on the CPU (where reading is
free, and the sum stays a Python float as before), every ``CUDA_TICK_STEPS`` steps on CUDA, and at the end of the epoch
or on a stop. The arithmetic is the old one in the same order (the float32
loss widened to float64, times the batch's image count, added in turn), so
``train_loss`` in metrics.csv is the same number to the last bit.

The image count needs no device: the labels' length is known on the host.

Other reads the loop still makes: with fp16 the GradScaler's ``step`` reads
back whether the gradients were finite, once per step (bf16 and fp32 have no
scaler); under DDP, asking every rank whether one was interrupted is a
collective, so it happens at ticks only (``Ticks.stop_check``).
"""

from __future__ import annotations

import torch

#: Steps between host reads of the loss on CUDA (and between DDP stop checks).
CUDA_TICK_STEPS = 20


class LossMeter:
    """The running ``Progress.loss_sum``; ``sync`` makes ``state`` whole and returns the running mean.

    ``on_device`` (default: off the CPU) keeps the sum in a float64 tensor on ``device``; on the
    CPU, where reading a loss costs nothing, it is summed in ``state`` as Python floats, as it
    always was (a tensor add would cost some microseconds a step for nothing).
    """

    def __init__(self, state, device: torch.device, *, on_device: bool | None = None):
        self.state = state
        on_device = device.type != "cpu" if on_device is None else on_device
        self.total = torch.tensor(state.loss_sum, dtype=torch.float64, device=device) if on_device else None
        self.reads = 0  # host reads so far (for tests)

    def add(self, loss: torch.Tensor, images: int) -> None:
        """Add a batch's mean loss (a detached scalar tensor) over ``images`` images; on the device, no host read."""
        if self.total is None:
            self.state.loss_sum += float(loss) * images
        else:
            self.total += loss.detach().double() * images
        self.state.seen += images

    def sync(self) -> float:
        """Copy the sum to the host, into ``state.loss_sum`` (what last.pt saves); returns the running mean."""
        if self.total is not None:
            self.state.loss_sum = float(self.total)
            self.reads += 1
        return self.state.loss_sum / max(1, self.state.seen)


def tick_every(device: torch.device) -> int:
    """Steps between progress ticks: 1 on the CPU, ``CUDA_TICK_STEPS`` on an accelerator."""
    return 1 if device.type == "cpu" else CUDA_TICK_STEPS


def is_tick(step: int, total: int, every: int) -> bool:
    """Whether step ``step`` (1-based, of ``total`` in the epoch) reports progress: every ``every``
    steps and the epoch's last. The same on every rank (it depends on step counts only)."""
    return step % every == 0 or step >= total
