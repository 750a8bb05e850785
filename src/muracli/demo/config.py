"""The options of ``mura demo``, and the ``TrainConfig`` of its training run.

Cheap to import (``cli/demo.py`` reads its defaults from here at ``--help`` time):
no torch, numpy or pandas, and the modules it needs only to check or build a
config are imported inside the functions that do so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli.errors import ConfigError

if TYPE_CHECKING:
    from muracli.data.cache import Cache
    from muracli.training.config import TrainConfig

@dataclass(frozen=True)
class DemoConfig:
    """The demo's options. The defaults finish in about a minute on a 2-core CPU (well under three)
    and give a model that is clearly better than chance (see the README)."""

    dir: Path = Path("mura-demo")
    studies: int = 600
    seed: int = 0
    # "easy": at 64 px and a few epochs the cnn learns the easy findings (measured with
    # these defaults: valid kappa 0.66, AUC 0.87) but not yet the default "normal"
    # ones (AUC about 0.6).
    difficulty: str = "easy"
    # The images are shrunk to image_size px for the model anyway; drawing them at
    # 256 px instead of MURA's 512 halves the time the dataset takes.
    max_side: int = 256
    image_size: int = 64
    epochs: int = 6
    batch_size: int = 32
    lr: float = 2e-3
    # Cosine decay over the few epochs: the default plateau schedule (patience 1)
    # would cut the rate after the first noisy epoch of such a short run.
    schedule: str = "cosine"
    # A run of a few epochs is over before regularisation pays off: without dropout and
    # augmentation the cnn learns the synthetic findings several times faster (measured:
    # valid AUC 0.74 against 0.64 after 8 epochs at 64 px); `mura train` keeps both on.
    dropout: float = 0.0
    augment: bool = False
    # The MURA paper's loss weights: without them a weak model calls most studies normal
    # (the rarer class), which costs kappa and leaves the abnormal examples unflagged.
    class_weights: bool = True
    device: str = "auto"  # auto (the GPU when present) | cpu | cuda
    bootstrap: int = 1000
    predict_normal: int = 2
    predict_abnormal: int = 2
    # CPU threads for torch; None picks by the load of the machine (see choose_threads).
    threads: int | None = None

    def validate(self) -> "DemoConfig":
        from muracli.synthetic import DIFFICULTIES  # numpy and PIL: not at --help time

        def check(ok: bool, message: str, hint: str | None = None) -> None:
            if not ok:
                raise ConfigError(message, hint)

        check(self.studies >= 14, f"--studies must be at least 14 (two per body part), got {self.studies}")
        check(self.seed >= 0, f"--seed must be >= 0, got {self.seed}")
        check(self.difficulty in DIFFICULTIES, f"unknown difficulty {self.difficulty!r}",
              f"choose one of {', '.join(DIFFICULTIES)}")
        check(self.epochs >= 1, "--epochs must be at least 1")
        check(16 <= self.image_size <= 512, f"--image-size must be between 16 and 512, got {self.image_size}")
        check(64 <= self.max_side <= 4096, f"--max-side must be between 64 and 4096, got {self.max_side}")
        check(self.device in ("auto", "cpu", "cuda"), f"unknown device {self.device!r}")
        check(self.threads is None or self.threads >= 1, "--threads must be at least 1")
        check(self.bootstrap == 0 or self.bootstrap >= 100, "bootstrap needs at least 100 resamples (or 0)")
        return self


def train_config(cache: "Cache", config: DemoConfig, run_dir: Path, device: str) -> "TrainConfig":
    """The ``TrainConfig`` of the demo's run."""
    from muracli.training.config import TrainConfig  # cheap, but only a run needs it

    return TrainConfig(
        cache=str(cache.path.resolve()), image_size=cache.size, fit=cache.fit, model="cnn", epochs=config.epochs,
        batch_size=config.batch_size, lr=config.lr, schedule=config.schedule, dropout=config.dropout,
        augment=config.augment, class_weights=config.class_weights, seed=config.seed, device=device,
        out=str(run_dir),
    )
