"""Make a greyscale image square: ``pad``, ``stretch`` or ``crop``.

Resizing uses Pillow's bilinear filter, which (unlike OpenCV's or a plain
``F.interpolate``) widens its support by the scale factor when shrinking, so
downscaling is antialiased: every source pixel contributes, no aliasing on
fine trabecular texture. It is also what torchvision's ``Resize`` does
(bilinear, ``antialias=True``), so cached pixels match the usual PIL
pipeline. No ``reducing_gap`` shortcut: results are exact and deterministic.
"""

from __future__ import annotations

import numpy as np

from muracli.choices import FITS, check_choice
from muracli.errors import ConfigError

RESAMPLE = "bilinear"  # recorded in the cache manifest


def fit_square(img: np.ndarray, size: int, fit: str) -> np.ndarray:
    """Return ``img`` (uint8 ``H x W``) as a uint8 ``size x size`` array.

    * ``pad``: keep the aspect ratio; the longest side becomes ``size`` and
      the image is centred on black (0).
    * ``stretch``: resize both sides to ``size`` (the MURA paper's choice).
    * ``crop``: the shortest side becomes ``size``; the centre is kept.
    """
    check_choice(fit, FITS, "fit")
    size = int(size)
    if size < 1:
        raise ConfigError(f"size must be at least 1, got {size}")
    img = np.asarray(img)
    if img.ndim != 2 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"expected a non-empty 2-D greyscale array, got shape {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    height, width = img.shape

    if fit == "stretch":
        return _resize(img, size, size)
    if fit == "pad":
        scale = size / max(height, width)
        new_w, new_h = _scaled(width, scale, size), _scaled(height, scale, size)
        resized = _resize(img, new_w, new_h)
        out = np.zeros((size, size), np.uint8)
        top, left = (size - new_h) // 2, (size - new_w) // 2
        out[top : top + new_h, left : left + new_w] = resized
        return out
    # crop
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = _resize(img, new_w, new_h)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


def _scaled(side: int, scale: float, size: int) -> int:
    return min(size, max(1, round(side * scale)))


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.shape == (height, width):
        return img.copy()
    from PIL import Image

    return np.array(Image.fromarray(img).resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
