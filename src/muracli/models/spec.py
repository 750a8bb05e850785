"""What to build: the one description of a model that checkpoints and config.json store.

Kept free of torch so that the CLI can parse and validate options without
paying for ``import torch``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from muracli.errors import ConfigError

INITS = ("kaiming", "xavier")


@dataclass(frozen=True)
class ModelSpec:
    """A model architecture plus where its starting weights come from.

    ``name`` is ``cnn`` or any torchvision classification model (``resnet18``,
    ``vgg16``, ``densenet169``, ...). ``init`` (kaiming | xavier) initialises the
    cnn and the new classification head; torchvision backbones keep their own
    initialisation. ``pretrained`` fetches torchvision's ImageNet weights;
    ``weights`` names a local state dict instead (and wins over ``pretrained``).
    ``freeze_backbone`` trains only the head.
    """

    name: str
    in_channels: int = 1
    num_classes: int = 2
    dropout: float = 0.5
    init: str = "kaiming"
    pretrained: bool = False
    weights: str | None = None
    freeze_backbone: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("the model name must be a non-empty string", "e.g. cnn, vgg16, densenet169, resnet18")
        # Frozen dataclass: normalise through object.__setattr__.
        object.__setattr__(self, "name", self.name.strip().lower())
        if self.weights is not None:
            object.__setattr__(self, "weights", os.fspath(self.weights))
        for field in ("in_channels", "num_classes"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{field} must be a positive integer, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        for field in ("pretrained", "freeze_backbone"):
            if not isinstance(getattr(self, field), bool):
                raise ConfigError(f"{field} must be true or false, got {getattr(self, field)!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (for checkpoints and config.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """The inverse of :meth:`to_dict`; unknown or missing keys are a ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError(f"a model spec must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown model spec field(s): {', '.join(unknown)}",
                "the checkpoint or config was written by another version of mura",
            )
        if "name" not in data:
            raise ConfigError("the model spec has no 'name'")
        return cls(**data)

    def architecture_only(self) -> ModelSpec:
        """The same architecture without pretrained weights or a weights file.

        Use it to rebuild a model whose weights come from a checkpoint of ours
        (resume, evaluate, predict): nothing is downloaded or read twice, and a
        weights file that has moved since training does not matter.
        """
        return dataclasses.replace(self, pretrained=False, weights=None)
