"""The options of ``mura demo``, and the training choices the demo makes for ``mura train``.

``DemoConfig`` holds what ``mura demo`` lets the user choose; ``TRAINING`` holds
what the demo chooses for the training run itself, as ``TrainConfig`` field names
and values. The run's ``TrainConfig`` (``train_config``), the report's sentence
about training and the ``mura train`` command line the report gives are all
written from ``training_options``, so they cannot disagree.

Cheap to import (``cli/demo.py`` reads its defaults from here at ``--help`` time):
no torch, numpy or pandas, and the modules it needs only to check or build a
config are imported inside the functions that do so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from muracli.choices import DEVICES, DIFFICULTIES, check_choice
from muracli.errors import ConfigError

if TYPE_CHECKING:
    from muracli.data.cache import Cache
    from muracli.training.config import TrainConfig

#: The demo's training choices, as ``TrainConfig`` fields; every other field keeps
#: ``TrainConfig``'s default. They are picked for a run of a few epochs at a small
#: image size that must be clearly better than chance in a minute or two of CPU.
TRAINING: Mapping[str, Any] = MappingProxyType({
    "model": "cnn",
    "batch_size": 32,
    "lr": 2e-3,
    # Cosine decay over the few epochs: the default plateau schedule (patience 1)
    # would cut the rate after the first noisy epoch of such a short run.
    "schedule": "cosine",
    # A run of a few epochs is over before regularisation pays off: without dropout and
    # augmentation the cnn learns the synthetic findings several times faster (measured:
    # valid AUC 0.74 against 0.64 after 8 epochs at 64 px); `mura train` keeps both on.
    "dropout": 0.0,
    "augment": False,
    # The MURA paper's loss weights: without them a weak model calls most studies normal
    # (the rarer class), which costs kappa and leaves the abnormal examples unflagged.
    "class_weights": True,
})


@dataclass(frozen=True)
class DemoConfig:
    """The demo's options. The defaults finish in about a minute and a half on a 2-core CPU (well under three)
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
    device: str = "auto"  # auto (the GPU when present) | cpu | cuda
    bootstrap: int = 1000
    predict_normal: int = 2
    predict_abnormal: int = 2
    # CPU threads for torch; None picks by how busy the cores are (see choose_threads).
    threads: int | None = None

    def validate(self) -> "DemoConfig":
        def check(ok: bool, message: str, hint: str | None = None) -> None:
            if not ok:
                raise ConfigError(message, hint)

        check(self.studies >= 14, f"--studies must be at least 14 (two per body part), got {self.studies}")
        check(self.seed >= 0, f"--seed must be >= 0, got {self.seed}")
        check_choice(self.difficulty, DIFFICULTIES, "difficulty")
        check(self.epochs >= 1, "--epochs must be at least 1")
        check(16 <= self.image_size <= 512, f"--image-size must be between 16 and 512, got {self.image_size}")
        check(64 <= self.max_side <= 4096, f"--max-side must be between 64 and 4096, got {self.max_side}")
        check_choice(self.device, DEVICES, "device")
        check(self.threads is None or self.threads >= 1, "--threads must be at least 1")
        check(self.bootstrap == 0 or self.bootstrap >= 100, "bootstrap needs at least 100 resamples (or 0)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options, with the training choices after ``epochs`` (where ``mura demo --json``
        has always listed them; the model, always the cnn, is not listed)."""
        options: dict[str, Any] = {}
        for name, value in asdict(self).items():
            options[name] = str(value) if name == "dir" else value
            if name == "epochs":
                options.update((key, value) for key, value in TRAINING.items() if key != "model")
        return options


def training_options(config: DemoConfig) -> dict[str, Any]:
    """Every ``TrainConfig`` field the demo sets but the paths and the device, in the order the
    ``mura train`` command line gives them: ``TRAINING`` and the demo options that reach training."""
    # "model" stays first: ``**TRAINING`` updates the key in place.
    return {"model": TRAINING["model"], "image_size": config.image_size, "epochs": config.epochs,
            **TRAINING, "seed": config.seed}


def train_config(cache: "Cache", config: DemoConfig, run_dir: Path, device: str) -> "TrainConfig":
    """The ``TrainConfig`` of the demo's run: ``training_options`` on the demo's cache."""
    from muracli.training.config import TrainConfig  # cheap, but only a run needs it

    options = {**training_options(config), "image_size": cache.size}
    return TrainConfig(**options, cache=str(cache.path.resolve()), fit=cache.fit, device=device, out=str(run_dir))
