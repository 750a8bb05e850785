"""The augmentation's options, apart from the torch code that applies them.

Pure Python, so ``mura train --help`` can show their defaults and ranges
without importing torch; ``batches.augment`` applies them to batches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from muracli.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each random augmentation; zero switches one off.

    ``flip`` is the probability of a lateral (left-right) flip; ``rotate`` the
    largest rotation in degrees (uniform in ±rotate); ``scale`` the largest
    relative zoom (uniform in 1 ± scale); ``translate`` the largest shift as a
    fraction of the image side, per axis; ``brightness`` the largest shift of
    intensities in [0, 1] units; ``contrast`` the largest relative change of
    contrast around each image's mean (uniform in 1 ± contrast).
    """

    flip: float = 0.5
    rotate: float = 10.0
    scale: float = 0.1
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"augmentation {f.name} must be a number, got {value!r}")
            object.__setattr__(self, f.name, float(value))
        if not 0.0 <= self.flip <= 1.0:
            raise ConfigError(f"augmentation flip is a probability in [0, 1], got {self.flip}")
        if not 0.0 <= self.rotate <= 180.0:
            raise ConfigError(f"augmentation rotate must be in [0, 180] degrees, got {self.rotate}")
        if not 0.0 <= self.scale < 1.0:
            raise ConfigError(f"augmentation scale must be in [0, 1), got {self.scale}")
        if not 0.0 <= self.translate <= 1.0:
            raise ConfigError(f"augmentation translate must be in [0, 1], got {self.translate}")
        if not 0.0 <= self.brightness <= 1.0:
            raise ConfigError(f"augmentation brightness must be in [0, 1], got {self.brightness}")
        if not 0.0 <= self.contrast < 1.0:
            raise ConfigError(f"augmentation contrast must be in [0, 1), got {self.contrast}")

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation at all (evaluation, or ``--no-augment``)."""
        return cls(flip=0.0, rotate=0.0, scale=0.0, translate=0.0, brightness=0.0, contrast=0.0)

    @property
    def is_identity(self) -> bool:
        return not (self.geometric or self.photometric)

    @property
    def geometric(self) -> bool:
        return bool(self.flip or self.rotate or self.scale or self.translate)

    @property
    def photometric(self) -> bool:
        return bool(self.brightness or self.contrast)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "AugmentConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown augmentation option(s): {', '.join(unknown)}")
        return cls(**data)  # type: ignore[arg-type]
