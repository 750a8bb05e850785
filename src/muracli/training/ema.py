"""``--ema DECAY``: an exponential moving average of the weights, updated every optimiser step.

``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``: the
first update copies the weights, each later one makes them
``decay * ema + (1 - decay) * weights``. ``use_buffers=True`` averages the
buffers (BatchNorm's running statistics) along, so the average is a model
one can validate and save as it is, with no BatchNorm pass.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_model(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """The moving average of ``model`` (on its device), or None when ``decay`` is 0 (off)."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
