"""``mura average``: the mean of a run's last K kept epochs' weights, as ``RUN/averaged.pt``.

``mura train --keep-epochs K`` keeps the last K epochs' weights in
``RUN/epochs/``. Their mean (stochastic weight averaging over epochs) is
written in ``best.pt``'s format, so ``mura evaluate`` and ``mura predict``
take it like any checkpoint. BatchNorm statistics of averaged weights are
not the average of the epochs' statistics: they are recomputed over the
run's training batches, without augmentation
(``torch.optim.swa_utils.update_bn``), on the images the run trained on
(a ``--select-on train:FRACTION`` run leaves its held-out part out).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from muracli.batches.augment import GREY_MEAN, GREY_STD
from muracli.errors import CheckpointError
from muracli.progress import ProgressFn, silent
from muracli.runtime.checkpoint import load_checkpoint, rebuild_model, save_checkpoint
from muracli.runtime.distributed import World
from muracli.runtime.rundir import RunDir
from muracli.training.config import TrainConfig


@dataclass
class AverageResult:
    path: Path  # RUN/averaged.pt
    epochs: list[int]  # the epochs averaged
    bn_batches: int  # training batches that recomputed the BatchNorm statistics (0: the model has none)


def average_run(run_dir: Path | str, *, last: int, device: torch.device | str = "cpu",
                progress: ProgressFn | None = None) -> AverageResult:
    """Average the last ``last`` kept epochs of ``run_dir`` into ``averaged.pt``; returns where and what."""
    run = RunDir(run_dir)
    kept = run.epoch_checkpoints()
    if last < 1 or len(kept) < last:
        hint = (f"average at most {len(kept)} (--last {len(kept)})" if kept
                else "train with --keep-epochs K to keep the last K epochs' weights")
        raise CheckpointError(f"{run.path} keeps {len(kept)} epochs' weights in {run.epochs_path}, not {last}", hint)
    chosen = kept[-last:]
    state, payload, epochs = average_state_dicts(chosen)
    model = rebuild_model({**payload, "state_dict": state}, chosen[-1])
    batches = recompute_batchnorm(model, run, torch.device(device), progress or silent)
    payload = {**payload, "state_dict": model.cpu().state_dict(), "weights": "averaged", "averaged_epochs": epochs,
               "metrics": None}
    save_checkpoint(payload, run.averaged_path)
    return AverageResult(path=run.averaged_path, epochs=epochs, bn_batches=batches)


def average_state_dicts(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict, list[int]]:
    """The mean of the checkpoints' floating-point weights (summed in float64, one file in memory
    at a time; integer buffers such as BatchNorm's batch count are the last one's), the last
    checkpoint, and the epochs they hold."""
    sums: dict[str, torch.Tensor] = {}
    checkpoint: dict = {}
    epochs = []
    for path in paths:
        checkpoint = load_checkpoint(path)
        epochs.append(int(checkpoint["epoch"]))
        for key, value in checkpoint["state_dict"].items():
            if not value.is_floating_point():
                sums[key] = value
            elif key not in sums:
                sums[key] = value.double()
            elif sums[key].shape != value.shape:
                raise CheckpointError(f"{path} holds another model than {paths[0]} ({key})", "average the epochs of one run")
            else:
                sums[key] += value
    state = {key: (value / len(paths)).to(checkpoint["state_dict"][key].dtype) if value.is_floating_point() else value
             for key, value in sums.items()}
    return state, checkpoint, epochs


def recompute_batchnorm(model: torch.nn.Module, run: RunDir, device: torch.device, progress: ProgressFn) -> int:
    """Recompute ``model``'s BatchNorm statistics over one pass of the run's training batches,
    unaugmented; returns the batches seen (0 for a model without BatchNorm)."""
    from torch.optim.swa_utils import update_bn

    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return 0
    from muracli.training.data import load_train_data

    config = dataclasses.replace(TrainConfig.from_dict(run.read_config()["config"]), augment=False, out=str(run.path))
    data = load_train_data(config, World(), device, progress)
    model.to(device)
    counted = _Counted(_inputs(data, device, progress))
    update_bn(counted, _Forward(model))
    return counted.seen


class _Forward(torch.nn.Module):
    """``update_bn`` calls ``model(batch)``; a study model takes ``(views, mask)`` as two arguments."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model(*inputs) if isinstance(inputs, tuple) else self.model(inputs)


class _Counted:
    def __init__(self, batches):
        self.batches, self.seen = batches, 0

    def __iter__(self):
        for batch in self.batches:
            self.seen += 1
            yield batch


def _inputs(data, device: torch.device, progress: ProgressFn):
    """The training loader's batches as model input, without augmentation (``update_bn`` takes
    the first element of a list: a study batch comes as ``[(views, mask)]``)."""
    from muracli.batches.augment import prepare_batch
    from muracli.runtime.inference import study_inputs

    prepare = {"device": device, "mean": GREY_MEAN, "std": GREY_STD}
    for step, (*x, _) in enumerate(data.loader, start=1):
        if len(x) == 2:
            yield [study_inputs(*x, **prepare)]
        else:
            yield x[0].to(device) if data.prepared else prepare_batch(x[0], **prepare)
        progress("batchnorm", step, data.steps_per_epoch)
