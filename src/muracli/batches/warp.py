"""The CPU training batch in one compiled pass per image.

``apply_params`` builds a batch out of whole-tensor torch operations: copy
to float, build a sampling grid, ``grid_sample``, then jitter and
normalise. On a GPU that is the right shape. On a CPU each of those passes
streams the whole batch through memory again, and the bilinear
``grid_sample`` alone costs ~0.4 ms per 224 px image, so augmentation, not
the cache read, sets the pace of a CPU run.

``warp_rows`` does the same arithmetic, image by image, in one compiled
loop: it reads the image straight out of the memory-mapped cache (no uint8
copy, no float copy), samples it bilinearly at the affine-mapped position
of each output pixel, and then applies the brightness/contrast jitter, the
clamp and the normalisation to the freshly written (cache-hot) image. The
loop releases the GIL, so a loader runs it on several threads at once with
no process hand-over.

The results equal ``apply_params`` on the same parameters to float32
rounding (tests compare them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numba import njit

from muracli.batches.augment import GREY_MEAN, GREY_STD, AugmentParams

_PAD = 2  # zero columns/rows around the float copy of each source image


def _compiled(function):
    """``function`` compiled without the GIL, cached on disk when numba finds
    a writable cache folder (next to this file, else the user's cache) and
    compiled afresh in each process otherwise (about a second)."""
    try:
        return njit(nogil=True, fastmath=True, cache=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(nogil=True, fastmath=True)(function)


@_compiled
def _warp_kernel(pixels, rows, coeffs, intensity, out, h, w):  # pragma: no cover - compiled
    """``out[b]`` = image ``pixels[rows[b]]`` warped by ``coeffs[b]``, then
    mapped by ``intensity[b]`` (``pixels`` (N, H*W) uint8, ``out`` (B, H*W) float32).

    ``coeffs[b] = (ax, bx, cx, ay, by, cy)``: output pixel (row i, column j)
    samples the source at column ``ax*j + bx*i + cx``, row ``ay*j + by*i + cy``
    (pixel-centre coordinates, as ``grid_sample`` with align_corners=False),
    bilinearly, with zeros outside the image. ``intensity[b] = (gain,
    offset, contrast_weight, lo, hi)``: each value v (0..255) becomes
    ``clamp(v*gain + offset + contrast_weight*mean, lo, hi)``, ``mean`` being
    the warped image's mean value.

    Each source image is first copied into a float32 buffer with a zero
    border two pixels wide. Every sample position, clamped to that frame,
    then reads four buffer cells without a bounds check: a position more
    than a pixel outside the image lands wholly on the border and reads
    zeros, which is what zero padding gives it anyway.
    """
    pw = w + 2 * _PAD
    padded = np.zeros((h + 2 * _PAD) * pw, dtype=np.float32)
    corner = np.empty(w, dtype=np.int32)  # per output column of a row: buffer index of the top-left cell
    fx = np.empty(w, dtype=np.float32)  # and the bilinear weights
    fy = np.empty(w, dtype=np.float32)
    x_last = np.int32(w + _PAD)  # the largest top-left corner whose 2x2 cells stay in the buffer
    y_last = np.int32(h + _PAD)
    zero = np.int32(0)
    pw32 = np.int32(pw)
    for b in range(rows.shape[0]):
        src = pixels[rows[b]]
        for i in range(h):
            line = (i + _PAD) * pw + _PAD
            for j in range(w):
                padded[line + j] = src[i * w + j]
        dst = out[b]
        ax = np.float32(coeffs[b, 0])
        ay = np.float32(coeffs[b, 3])
        total = 0.0
        for i in range(h):
            # Positions in buffer coordinates (the image starts at _PAD), where
            # truncation towards zero is floor for every position it can reach
            # unclamped (>= 0). This loop has no loads and vectorises; the
            # next one does the four reads per pixel.
            x_row = np.float32(coeffs[b, 1] * i + coeffs[b, 2] + _PAD)
            y_row = np.float32(coeffs[b, 4] * i + coeffs[b, 5] + _PAD)
            for j in range(w):
                x = ax * np.float32(j) + x_row
                y = ay * np.float32(j) + y_row
                x0 = min(max(np.int32(x), zero), x_last)
                y0 = min(max(np.int32(y), zero), y_last)
                fx[j] = x - np.float32(x0)
                fy[j] = y - np.float32(y0)
                corner[j] = y0 * pw32 + x0
            line = i * w
            row_total = np.float32(0.0)
            for j in range(w):
                k = corner[j]
                top = padded[k] + (padded[k + 1] - padded[k]) * fx[j]
                bottom = padded[k + pw32] + (padded[k + pw32 + 1] - padded[k + pw32]) * fx[j]
                v = top + (bottom - top) * fy[j]
                dst[line + j] = v
                row_total += v
            total += row_total
        gain = np.float32(intensity[b, 0])
        shift = np.float32(intensity[b, 1] + intensity[b, 2] * (total / (h * w)))
        lo = np.float32(intensity[b, 3])
        hi = np.float32(intensity[b, 4])
        for k in range(h * w):
            dst[k] = min(max(dst[k] * gain + shift, lo), hi)


def pixel_coefficients(params: AugmentParams, height: int, width: int) -> np.ndarray:
    """(B, 6) float64: ``params``' sampling map in pixel coordinates, for ``warp_rows``.

    ``AugmentParams.theta`` maps normalised output coordinates to normalised
    input ones; with align_corners=False pixel j sits at ``(2j + 1)/W - 1``,
    so composing with that scaling on both sides gives an affine map of pixel
    indices.
    """
    t = params.theta(height, width).numpy()
    out = np.empty((len(params), 6), dtype=np.float64)
    # x_in = ((t00*xn + t01*yn + t02) + 1) * W/2 - 1/2, with xn = (2j+1)/W - 1, yn = (2i+1)/H - 1.
    for k, (size, offset) in enumerate(((width, 0), (height, 3))):
        a, b, c = t[:, k, 0], t[:, k, 1], t[:, k, 2]
        out[:, offset + 0] = a * size / width
        out[:, offset + 1] = b * size / height
        out[:, offset + 2] = (a * (1.0 / width - 1.0) + b * (1.0 / height - 1.0) + c + 1.0) * (size / 2.0) - 0.5
    return out


def intensity_coefficients(
    params: AugmentParams, mean: float = GREY_MEAN, std: float = GREY_STD
) -> np.ndarray:
    """(B, 5) float64 ``(gain, offset, contrast_weight, lo, hi)`` for ``warp_rows``.

    As in ``apply_params``: v/255 gets contrast c around the image mean m and
    brightness shift s, ``v01*c + m*(1 - c) + s``, is clamped to [0, 1] and
    normalised with (mean, std); folded into one multiply-add and a clamp.
    """
    c = params.contrast.to(torch.float64).numpy()
    s = params.brightness.to(torch.float64).numpy()
    out = np.empty((len(params), 5), dtype=np.float64)
    out[:, 0] = c / 255.0 / std
    out[:, 1] = (s - mean) / std
    out[:, 2] = (1.0 - c) / 255.0 / std
    out[:, 3] = -mean / std
    out[:, 4] = (1.0 - mean) / std
    return out


def warp_rows(
    pixels: np.ndarray,
    rows: Sequence[int] | np.ndarray,
    params: AugmentParams,
    *,
    mean: float = GREY_MEAN,
    std: float = GREY_STD,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Images ``pixels[rows]`` of an (N, S, S) uint8 array, augmented by
    ``params`` and normalised: a float32 (B, 1, S, S) tensor (``out`` when given).

    Equal to ``apply_params(uint8 batch, params, mean=mean, std=std)`` up
    to float rounding, without materialising the uint8 or float batch first.
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if pixels.ndim != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected an (N, H, W) uint8 array, got {pixels.shape} {pixels.dtype}")
    if rows.ndim != 1 or len(rows) != len(params):
        raise ValueError(f"{len(params)} sets of parameters for {rows.shape} rows")
    if rows.size and (rows.min() < 0 or rows.max() >= pixels.shape[0]):
        raise IndexError(f"row out of range for {pixels.shape[0]} images")
    _, h, w = pixels.shape
    if out is None:
        out = torch.empty(len(rows), 1, h, w, dtype=torch.float32)
    elif out.shape != (len(rows), 1, h, w) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous float32 ({len(rows)}, 1, {h}, {w}) tensor")
    if len(rows):
        if not pixels.flags.c_contiguous:  # a strided view: take the batch's images (only those) out first
            pixels, rows = np.ascontiguousarray(pixels[rows]), np.arange(len(rows), dtype=np.int64)
        flat = out.numpy().reshape(len(rows), h * w)
        _warp_kernel(
            pixels.reshape(pixels.shape[0], h * w), rows, pixel_coefficients(params, h, w),
            intensity_coefficients(params, mean, std), flat, h, w,
        )
    return out
