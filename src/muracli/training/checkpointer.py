"""The run's checkpoints, owned by one object: best.pt, last.pt, and the save on a stop signal.

``Checkpointer`` holds what every checkpoint of a run is made from (the
model, optimiser, schedule, scaler, augmentation and mixing generators and
the EMA weights, plus the
metadata that rebuilds the model), so the loop calls ``save_best(epoch,
row)``, ``save_last(progress)``, ``restore()`` and ``interrupt(...)``
instead of passing ten values around (timm's ``CheckpointSaver`` does the
same job). Only rank 0 writes; every rank restores.

``last.pt`` carries everything a resume needs to continue the same
trajectory: the training state (``Progress``), the optimiser, schedule and
scaler states, the EMA weights (``--ema``) and every random generator (torch,
CUDA, the augmentation and mixing generators, Python's and numpy's). With
``--keep-epochs K``, ``epochs/epoch-NNN.pt`` keeps the last K epochs' weights.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch

from muracli.errors import ConfigError, TrainingInterrupted
from muracli.runtime.checkpoint import load_checkpoint, save_checkpoint
from muracli.runtime.distributed import World
from muracli.runtime.rundir import RunDir
from muracli.training.interrupt import StopFlag


@dataclass
class Progress:
    """Where the run stands; saved in ``last.pt`` so a resume continues exactly."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed steps inside the current epoch
    loss_sum: float = 0.0  # running train-loss sum and image count of the current epoch
    seen: int = 0
    best_kappa: float = -math.inf  # of the split that chooses best.pt (valid, or the held-out part of train)
    best_epoch: int | None = None
    best_auc: float | None = None
    stale_epochs: int = 0  # epochs since the best kappa, for early stopping
    stopped_early: bool = False
    best_valid_kappa: float | None = None  # valid's kappa and AUC at the best epoch, whichever split chose it
    best_valid_auc: float | None = None

    def state(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def end_epoch(self, epoch: int, row: dict[str, Any], *, chooser: str, early_stop: int) -> bool:
        """Close ``epoch`` with its metrics ``row``; True when it is the best so far.

        The best epoch is the one of highest ``<chooser>_kappa`` (``select``
        or ``valid``: ``TrainConfig.chooser``). An undefined kappa (one class
        only) counts as -1, below any real one; ties keep the earlier epoch,
        as ``mura compare`` reads it back.
        """
        kappa = row[f"{chooser}_kappa"]
        best = -math.inf if self.best_epoch is None else _score(self.best_kappa)
        improved = _score(kappa) > best
        if improved:
            self.best_kappa, self.best_epoch, self.best_auc = kappa, epoch, row[f"{chooser}_auc"]
            self.best_valid_kappa, self.best_valid_auc = row["valid_kappa"], row["valid_auc"]
            self.stale_epochs = 0
        else:
            self.stale_epochs += 1
        self.epoch, self.step, self.loss_sum, self.seen = epoch, 0, 0.0, 0
        self.stopped_early = bool(early_stop) and self.stale_epochs >= early_stop
        return improved


def _score(kappa: float | None) -> float:
    return -1.0 if kappa is None else kappa


class Checkpointer:
    """Writes and restores one run's checkpoints (see the module docstring).

    ``model`` is the unwrapped, uncompiled module: its ``state_dict`` keys are
    the same whatever DDP or ``torch.compile`` wrap around it for training.
    """

    def __init__(
        self,
        run: RunDir,
        meta: dict[str, Any],
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule,
        scaler: "torch.amp.GradScaler",
        augment_rng: torch.Generator,
        world: World,
        mix_rng: torch.Generator | None = None,
        ema: torch.optim.swa_utils.AveragedModel | None = None,
        keep_epochs: int = 0,
    ):
        self.run = run
        self.meta = meta
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule
        self.scaler = scaler
        self.augment_rng = augment_rng
        self.world = world
        self.mix_rng = mix_rng
        self.ema = ema
        self.keep_epochs = keep_epochs

    def save_best(self, epoch: int, row: dict[str, Any], *, weights: str = "raw") -> None:
        """``best.pt``: the weights of ``epoch`` (``weights``: the trained ones, ``raw``, or their
        moving average, ``ema``) and its metrics, for inference."""
        if self.world.is_main:
            model = self.ema.module if weights == "ema" else self.model
            save_checkpoint({**self.meta, "state_dict": model.state_dict(), "epoch": epoch, "metrics": row,
                             "weights": weights}, self.run.best_path)

    def save_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """With ``keep_epochs`` K: ``epochs/epoch-NNN.pt``, this epoch's trained weights (in best.pt's
        format), and only the last K of them kept."""
        if not (self.world.is_main and self.keep_epochs):
            return
        save_checkpoint({**self.meta, "state_dict": self.model.state_dict(), "epoch": epoch, "metrics": row,
                         "weights": "raw"}, self.run.epoch_path(epoch))
        for old in self.run.epoch_checkpoints()[:-self.keep_epochs]:
            old.unlink(missing_ok=True)

    def save_last(self, progress: Progress) -> None:
        """``last.pt``: everything a resume needs."""
        if not self.world.is_main:
            return
        save_checkpoint(
            {
                **self.meta,
                "state_dict": self.model.state_dict(),
                "epoch": progress.epoch,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(),
                "progress": progress.state(),
                "rng": rng_state(self.augment_rng, self.mix_rng),
                **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            },
            self.run.last_path,
        )

    def restore(self, device: torch.device) -> Progress:
        """Load ``last.pt`` into the model, optimiser, schedule, scaler and generators."""
        path = self.run.last_path
        checkpoint = load_checkpoint(path, map_location=device)
        for key in ("optimizer", "progress", "rng"):
            if key not in checkpoint:
                raise ConfigError(f"{path} lacks {key!r}: it is not a resumable last.pt", "resume from the run directory's last.pt")
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        set_rng_state(checkpoint["rng"], self.augment_rng, self.mix_rng)
        if self.ema is not None:
            if "ema" not in checkpoint:
                raise ConfigError(f"{path} holds no EMA weights to continue", "resume the run with the options it was started with")
            self.ema.load_state_dict(checkpoint["ema"])
        return Progress(**checkpoint["progress"])

    def interrupt(self, progress: Progress, stop: StopFlag) -> NoReturn:
        """Save ``last.pt`` and raise ``TrainingInterrupted`` with the way to resume."""
        name = StopFlag.name(stop.signal_number or 2)
        self.save_last(progress)
        if self.world.is_main:
            self.run.log(f"interrupted by {name} at epoch {progress.epoch} step {progress.step}; last.pt saved")
        raise TrainingInterrupted(
            f"training interrupted by {name}; progress saved to {self.run.last_path}",
            stop.signal_number or 2,
            hint=f"resume with: mura train --resume {self.run.path}",
        )


def rng_state(augment_rng: torch.Generator, mix_rng: torch.Generator | None = None) -> dict[str, Any]:
    """Every random generator a run draws from, as checkpoint-safe values (tensors and lists)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "augment": augment_rng.get_state(),
        **({"mix": mix_rng.get_state()} if mix_rng is not None else {}),
        "python": _listify(random.getstate()),
        # numpy arrays are not allowed by weights_only loading: store a tensor
        "numpy": [torch.from_numpy(keys.astype(np.int64)), [int(pos), int(has_gauss), float(gauss)]],
    }


def set_rng_state(state: dict[str, Any], augment_rng: torch.Generator, mix_rng: torch.Generator | None = None) -> None:
    """Undo ``rng_state``."""
    if mix_rng is not None and "mix" in state:
        mix_rng.set_state(state["mix"].cpu())
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    augment_rng.set_state(state["augment"].cpu())
    random.setstate(_tuplify(state["python"]))
    np.random.set_state(("MT19937", state["numpy"][0].numpy().astype(np.uint32), *state["numpy"][1]))


def _listify(value):
    return [_listify(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuplify(value):
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

