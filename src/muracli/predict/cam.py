"""Grad-CAM overlays at the original image size.

``models.gradcam.grad_cam`` gives a heat map at the model's input size, i.e.
on the image *after* ``fit_square``. To show it on the radiograph as the
user has it, the fit is undone:

* ``pad``: cut away the black padding band, then resize to the original;
* ``stretch``: resize the square map to the original width and height;
* ``crop``: the model saw only the central square of the image, so the map
  is resized onto that region of the original and the cut-off margins stay
  uncoloured (no evidence was looked for there).

The overlay blends a colour map (jet: blue = none, red = strongest) onto the
grey image with an opacity that grows with the heat, so regions without
evidence keep the plain radiograph. A small caption with the probability is
drawn when the image is large enough for it to stay legible, and the PNG
carries the study, image, probability and model as text chunks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from muracli.errors import ConfigError, DataError
from muracli.files import atomic_output

if TYPE_CHECKING:
    from PIL import Image

#: Opacity of the colour map where the heat is 1 (it falls to 0 with the heat).
MAX_ALPHA = 0.55
#: Captions are drawn only on images at least this wide (smaller would hide the image).
CAPTION_MIN_WIDTH = 160

# Matplotlib's "jet" as piecewise-linear control points (position, R, G, B), so
# drawing a map does not import matplotlib.
_JET = np.array(
    [
        [0.00, 0.0, 0.0, 0.5],
        [0.11, 0.0, 0.0, 1.0],
        [0.125, 0.0, 0.0, 1.0],
        [0.34, 0.0, 0.86, 1.0],
        [0.35, 0.0, 0.9, 0.97],
        [0.64, 0.9, 1.0, 0.0],
        [0.66, 1.0, 0.86, 0.0],
        [0.89, 1.0, 0.0, 0.0],
        [1.00, 0.5, 0.0, 0.0],
    ]
)
_UNSAFE = re.compile(r"[^\w.+-]+")


def colormap(values: np.ndarray) -> np.ndarray:
    """RGB uint8 (..., 3) for ``values`` in [0, 1] under the jet colour map."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    channels = [np.interp(v, _JET[:, 0], _JET[:, c]) for c in (1, 2, 3)]
    return np.rint(np.stack(channels, axis=-1) * 255.0).astype(np.uint8)


def heatmap_to_original(heat: np.ndarray, height: int, width: int, fit: str) -> np.ndarray:
    """Map a ``S x S`` heat map on the fitted image back onto the original ``height x width``.

    The inverse of ``data.fit.fit_square``'s geometry (same rounding), see
    the module docstring. Returns float32 in [0, 1].
    """
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2 or heat.shape[0] != heat.shape[1]:
        raise ValueError(f"expected a square heat map, got shape {heat.shape}")
    size = heat.shape[0]
    if fit == "stretch":
        return _resize_float(heat, width, height)
    if fit == "pad":
        scale = size / max(height, width)
        new_w = min(size, max(1, round(width * scale)))
        new_h = min(size, max(1, round(height * scale)))
        top, left = (size - new_h) // 2, (size - new_w) // 2
        return _resize_float(heat[top : top + new_h, left : left + new_w], width, height)
    if fit == "crop":
        scale = size / min(height, width)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        top, left = (new_h - size) // 2, (new_w - size) // 2
        # The square [top, top+S) x [left, left+S) of the resized image, in original pixels.
        y0, y1 = round(top * height / new_h), round((top + size) * height / new_h)
        x0, x1 = round(left * width / new_w), round((left + size) * width / new_w)
        y1, x1 = max(y1, y0 + 1), max(x1, x0 + 1)
        out = np.zeros((height, width), np.float32)
        out[y0:y1, x0:x1] = _resize_float(heat, x1 - x0, y1 - y0)
        return out
    raise ConfigError(f"unknown fit {fit!r}", "use one of pad, stretch, crop")


def _resize_float(values: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.shape == (height, width):
        return values.copy()
    resized = Image.fromarray(values).resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def overlay(image: np.ndarray, heat: np.ndarray, *, caption: str | None = None) -> "Image.Image":
    """The grey ``image`` (uint8 H x W) with ``heat`` (H x W in [0, 1]) blended on in colour."""
    from PIL import Image

    grey = np.asarray(image, dtype=np.float32)[..., None]
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    if heat.shape != grey.shape[:2]:
        raise ValueError(f"heat map {heat.shape} does not match the image {grey.shape[:2]}")
    alpha = (MAX_ALPHA * heat)[..., None]
    blended = grey * (1.0 - alpha) + colormap(heat).astype(np.float32) * alpha
    picture = Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
    if caption and picture.width >= CAPTION_MIN_WIDTH:
        _draw_caption(picture, caption)
    return picture


def _draw_caption(picture, text: str) -> None:
    from PIL import ImageDraw, ImageFont

    size = max(10, min(28, picture.width // 28))
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(picture)
    margin = max(2, size // 4)
    x0, y0, x1, y1 = draw.textbbox((margin, margin), text, font=font)
    draw.rectangle((x0 - margin, y0 - margin, x1 + margin, y1 + margin), fill=(0, 0, 0))
    draw.text((margin, margin), text, fill=(255, 255, 255), font=font)
    # A small colour bar under the caption: the scale of the heat.
    bar_w, bar_h = max(16, x1 - x0), max(3, size // 3)
    top = y1 + 2 * margin
    if top + bar_h < picture.height:
        ramp = colormap(np.linspace(0.0, 1.0, bar_w))
        for i, (r, g, b) in enumerate(ramp):
            draw.line((margin + i, top, margin + i, top + bar_h), fill=(int(r), int(g), int(b)))


def cam_file_name(study_key: str, image_path: Path | str) -> str:
    """``<study key with / -> __>__<image stem>_cam.png``, made safe for any file system."""
    parts = [p for p in str(study_key).replace("\\", "/").split("/") if p not in ("", ".", "..")]
    parts.append(Path(image_path).stem or Path(image_path).name)
    safe = [_UNSAFE.sub("_", p).strip("_") or "_" for p in parts]
    return "__".join(safe) + "_cam.png"


class CamWriter:
    """Writes overlays into ``folder`` with unique, readable names.

    Names come from ``cam_file_name``; should two images map to the same name
    in one run (two PATHs with the same last folder name) the later ones get
    ``-2``, ``-3``, ... before ``_cam.png``. Files from an earlier run are
    overwritten, as a rerun should.
    """

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise DataError(f"--cam {self.folder} exists and is not a folder", "pass a folder for the heat-map images")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create {self.folder}: {exc.strerror or exc}", "pass a writable folder to --cam") from exc
        self._used: set[str] = set()

    def path_for(self, study_key: str, image_path: Path | str) -> Path:
        name = cam_file_name(study_key, image_path)
        if name in self._used:
            stem = name[: -len("_cam.png")]
            n = 2
            while f"{stem}-{n}_cam.png" in self._used:
                n += 1
            name = f"{stem}-{n}_cam.png"
        self._used.add(name)
        return self.folder / name

    def write(
        self,
        image: np.ndarray,
        heat: np.ndarray,
        *,
        fit: str,
        study_key: str,
        image_path: Path | str,
        probability: float,
        metadata: dict[str, str] | None = None,
    ) -> Path:
        """Save the overlay of ``heat`` (model input size) on ``image`` (original size); returns its path."""
        from PIL.PngImagePlugin import PngInfo

        height, width = image.shape
        full = heatmap_to_original(heat, height, width, fit)
        picture = overlay(image, full, caption=f"p(abnormal) {probability:.3f}")
        info = PngInfo()
        for key, value in {"image": str(image_path), "probability": f"{probability:.6f}", **(metadata or {})}.items():
            info.add_text(key, str(value))
        path = self.path_for(study_key, image_path)
        try:
            with atomic_output(path) as handle:
                picture.save(handle, format="PNG", pnginfo=info)
        except OSError as exc:
            raise DataError(f"cannot write {path}: {exc.strerror or exc}", "check free space and permissions of --cam") from exc
        return path
