"""Every training option with its default, in one place.

The CLI maps its flags onto ``TrainConfig``; the run directory stores it as
``config.json``; ``--resume`` reads it back. Nothing else holds defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from muracli.errors import ConfigError

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
SCHEDULES = ("plateau", "cosine", "none")
AGGREGATES = ("mean", "max", "vote")
FITS = ("pad", "stretch", "crop")
VIEW_POOLS = ("mean", "max", "attention")

#: Options that change how a run executes but not what it learns: a finished run
#: whose config differs from another only in these is the same experiment.
EXECUTION_FIELDS = frozenset({"out", "data", "cache", "device", "workers", "eval_batch_images", "compile"})
#: What ``--resume`` may change: how the rest of the run executes, and how long it goes on.
RESUMABLE_FIELDS = frozenset({"epochs", "early_stop"} | (EXECUTION_FIELDS - {"out", "data", "cache"}))


@dataclass
class TrainConfig:
    # data
    data: str | None = None  # the folder holding MURA-v1.1/ (None: $MURA_DATA, else ./data)
    cache: str | None = None  # an existing preprocess cache; built from `data` when None
    image_size: int = 224
    fit: str = "pad"
    # model
    model: str = "cnn"
    pretrained: bool = False
    weights: str | None = None
    freeze_backbone: bool = False
    dropout: float = 0.2
    init: str = "kaiming"
    study_model: bool = False
    view_pool: str = "mean"
    max_views: int = 4
    # optimisation
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "plateau"
    plateau_patience: int = 1
    warmup_epochs: float = 0.0
    class_weights: bool = True  # the MURA paper's weighting; --no-class-weights for plain cross-entropy
    balanced_sampling: bool = False
    augment: bool = True
    augment_params: dict[str, float] = field(default_factory=dict)
    early_stop: int = 0  # epochs without a better valid kappa before stopping; 0 = never
    aggregate: str = "mean"
    threshold: float = 0.5
    # execution
    device: str = "auto"  # auto | cpu | cuda
    amp: bool | None = None  # None: on for CUDA, off for CPU
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    workers: int | None = None  # None: see training.data (loader threads, or DataLoader workers for study models)
    seed: int = 0
    deterministic: bool = False
    out: str | None = None
    eval_batch_images: int = 256

    def validate(self) -> "TrainConfig":
        def check(ok: bool, message: str, hint: str | None = None) -> None:
            if not ok:
                raise ConfigError(message, hint)

        check(self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}", f"choose one of {', '.join(OPTIMIZERS)}")
        check(self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}", f"choose one of {', '.join(SCHEDULES)}")
        check(self.aggregate in AGGREGATES, f"unknown aggregate {self.aggregate!r}", f"choose one of {', '.join(AGGREGATES)}")
        check(self.fit in FITS, f"unknown fit {self.fit!r}", f"choose one of {', '.join(FITS)}")
        check(self.view_pool in VIEW_POOLS, f"unknown view pool {self.view_pool!r}", f"choose one of {', '.join(VIEW_POOLS)}")
        check(self.init in ("kaiming", "xavier"), f"unknown init {self.init!r}", "choose kaiming or xavier")
        check(self.device in ("auto", "cpu", "cuda"), f"unknown device {self.device!r}")
        check(self.epochs >= 1, "--epochs must be at least 1")
        check(self.batch_size >= 1, "--batch-size must be at least 1")
        check(16 <= self.image_size <= 2048, "--image-size must be between 16 and 2048")
        check(self.lr > 0, "--lr must be positive")
        check(0.0 <= self.dropout < 1.0, "--dropout must be in [0, 1)")
        check(self.weight_decay >= 0, "--weight-decay must be >= 0")
        check(0.0 < self.threshold < 1.0, "--threshold must be in (0, 1)")
        check(self.max_views >= 1, "--max-views must be at least 1")
        check(self.early_stop >= 0, "--early-stop must be >= 0")
        check(not (self.pretrained and self.weights), "--pretrained and --weights both given", "use one: --weights FILE is the offline way to get pretrained weights")
        return self

    def augmentation(self):
        """The training augmentation (``muracli.batches.augment.AugmentConfig``), or None with ``augment`` off."""
        if not self.augment:
            return None
        from muracli.batches.augment import AugmentConfig  # torch: not at import time

        return AugmentConfig.from_dict(self.augment_params)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Rebuild from ``config.json``; unknown keys (from a newer version) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
