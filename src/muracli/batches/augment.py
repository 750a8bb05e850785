"""Batched tensor augmentation and normalisation.

On a GPU the training path is: uint8 pixels in the cache -> uint8 batch
from the loader -> the device (a quarter of the traffic of float32) ->
float -> augmentation -> normalisation, all on whole batches, here. On the
CPU the loader's threads make the same batches with ``muracli.batches.warp``
(the same parameters and arithmetic in one compiled pass per image), which
is several times faster there than these tensor operations.

The augmentation follows the MURA paper (random lateral flips and small
rotations) plus mild scale, translation, brightness and contrast jitter. The
geometric part is one affine warp per sample (a bilinear ``grid_sample``
with zero padding: zero is black, the colour the cache pads with), so a
rotated image is resampled once, not once per transform.

Random parameters are always drawn on the CPU from a ``torch.Generator`` and
only then moved to the batch's device, so one seed gives the same
parameters, and thus the same batch up to float rounding, on CPU and GPU.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from muracli.batches.augment_options import AugmentConfig

# The mean of ImageNet's per-channel statistics (R, G, B means 0.485, 0.456,
# 0.406; stds 0.229, 0.224, 0.225). A pretrained model gets one input
# channel whose first convolution holds the sum of its RGB weights;
# a grey image normalised with these averages is then on the scale that the
# model saw during ImageNet training, and from-scratch models lose nothing.
GREY_MEAN = 0.449
GREY_STD = 0.226

# Columns of the uniform draws made per sample, in this order. Every batch
# draws all of them, whatever the config, so a given generator state always
# maps to the same parameters.
_DRAWS = ("flip", "rotate", "scale", "translate_x", "translate_y", "brightness", "contrast")


@dataclass(frozen=True)
class AugmentParams:
    """The random draws for one batch, one entry per sample (CPU tensors).

    ``flip`` is bool; ``angle`` in degrees (counter-clockwise as displayed);
    ``scale`` a zoom factor (> 1 enlarges the content); ``translate`` a
    (B, 2) shift in fractions of the image width and height; ``brightness`` an
    additive shift in [0, 1] units; ``contrast`` a factor around each image's
    mean.
    """

    flip: torch.Tensor
    angle: torch.Tensor
    scale: torch.Tensor
    translate: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor

    @classmethod
    def identity(cls, batch_size: int) -> "AugmentParams":
        zeros = torch.zeros(batch_size, dtype=torch.float64)
        return cls(
            flip=torch.zeros(batch_size, dtype=torch.bool),
            angle=zeros.clone(),
            scale=torch.ones(batch_size, dtype=torch.float64),
            translate=torch.zeros(batch_size, 2, dtype=torch.float64),
            brightness=zeros.clone(),
            contrast=torch.ones(batch_size, dtype=torch.float64),
        )

    def __len__(self) -> int:
        return int(self.flip.shape[0])

    @property
    def warps(self) -> bool:
        """True when some sample needs more than a flip (rotation, zoom, shift)."""
        return bool(
            (self.angle != 0).any() or (self.scale != 1).any() or (self.translate != 0).any()
        )

    @property
    def flips(self) -> bool:
        return bool(self.flip.any())

    @property
    def jitters(self) -> bool:
        return bool((self.brightness != 0).any() or (self.contrast != 1).any())

    def theta(self, height: int, width: int) -> torch.Tensor:
        """(B, 2, 3) float64 matrices in ``F.affine_grid``'s convention: they map
        each output location (normalised to [-1, 1]) to where it samples the input.

        Forward, the content is flipped, rotated, zoomed and shifted:
        ``p_out = s R(a) Fl p_in + t`` about the image centre, with x to the
        right and y down, so ``R(a) = [[cos a, sin a], [-sin a, cos a]]`` turns
        counter-clockwise as displayed (as torchvision's ``rotate`` does). The
        sampling map is ``p_in = Fl R(-a) (p_out - t) / s``. The H/W factors
        keep a rotation a rotation on non-square images, whose normalised
        axes have different pixel lengths.
        """
        a = torch.deg2rad(self.angle.to(torch.float64))
        cos, sin = torch.cos(a), torch.sin(a)
        s = self.scale.to(torch.float64)
        f = torch.where(self.flip, -1.0, 1.0).to(torch.float64)
        aspect = height / width
        m = torch.empty(len(self), 2, 3, dtype=torch.float64)
        m[:, 0, 0] = f * cos / s
        m[:, 0, 1] = -f * sin * aspect / s
        m[:, 1, 0] = sin / aspect / s
        m[:, 1, 1] = cos / s
        t = 2.0 * self.translate.to(torch.float64)  # fractions of the side -> normalised units
        m[:, :, 2] = -(m[:, :, :2] @ t.unsqueeze(-1)).squeeze(-1)
        return m


def sample_params(batch_size: int, cfg: AugmentConfig, generator: torch.Generator | None = None) -> AugmentParams:
    """Draw one batch's augmentation parameters on the CPU.

    Always draws ``batch_size x 7`` uniforms from ``generator`` (the global CPU
    generator when ``None``), so the generator advances the same way whatever
    the config.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch_size, len(_DRAWS), generator=generator, device=device, dtype=torch.float64).cpu()
    sym = 2.0 * u - 1.0  # uniform in [-1, 1)
    return AugmentParams(
        flip=u[:, 0] < cfg.flip,
        angle=sym[:, 1] * cfg.rotate,
        scale=1.0 + sym[:, 2] * cfg.scale,
        translate=sym[:, 3:5] * cfg.translate,
        brightness=sym[:, 5] * cfg.brightness,
        contrast=1.0 + sym[:, 6] * cfg.contrast,
    )


def affine_grid(theta: torch.Tensor, height: int, width: int, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, H, W), align_corners=False)``, computed
    as two broadcast multiply-adds (into ``out`` when given).

    On the CPU, ``F.affine_grid`` multiplies a (B, H*W, 3) base grid by theta
    and costs several times the ``grid_sample`` it feeds; this gives the same
    grid (to float rounding) for a fraction of that, on any device.
    """
    b = theta.shape[0]
    device, dtype = theta.device, theta.dtype
    # Pixel centres in normalised coordinates with align_corners=False:
    # pixel j sits at (2j + 1) / W - 1, which grid_sample maps back to j.
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    t = theta.view(b, 2, 3, 1, 1)
    grid = torch.empty(b, height, width, 2, device=device, dtype=dtype) if out is None else out
    for k in range(2):
        row = torch.addcmul(t[:, k, 2], t[:, k, 1], ys.view(1, height, 1))  # (B, H, 1)
        torch.addcmul(row, t[:, k, 0], xs.view(1, 1, width), out=grid[..., k])
    return grid


def apply_params(
    x: torch.Tensor,
    params: AugmentParams,
    *,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply drawn parameters to a batch: warp, jitter, clamp to [0, 1].

    ``x`` is (B, C, H, W) uint8 (0..255) or float (0..1) on any device; the
    result is float32 on the same device (written into ``out`` when given,
    a float32 tensor of x's shape). With ``mean``/``std`` the result is also
    normalised, in the same passes over the data.
    """
    _check_batch(x)
    if len(params) != x.shape[0]:
        raise ValueError(f"{len(params)} sets of parameters for a batch of {x.shape[0]}")
    b, _, h, w = x.shape
    device = x.device
    unit = 1.0 / 255.0 if x.dtype == torch.uint8 else 1.0  # raw values -> [0, 1]

    if params.warps:
        theta = params.theta(h, w).to(torch.float32).to(device, non_blocking=True)
        if device.type == "cpu":
            # Reused buffers: a fresh tens-of-MB tensor per batch is fresh
            # pages from the kernel, and those page faults (dearer still in
            # a VM) cost as much as the warp itself.
            src = x if x.dtype == torch.float32 else _scratch.get("src", x.shape).copy_(x)
            grid = affine_grid(theta, h, w, out=_scratch.get("grid", (b, h, w, 2)))
        else:
            src = x.to(torch.float32)
            grid = affine_grid(theta, h, w)
        y = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    elif params.flips:
        # A flip alone is an exact permutation of columns: no resampling.
        y = x.to(torch.float32, copy=True)
        flip = params.flip.to(device, non_blocking=True)
        y[flip] = y[flip].flip(-1)
    else:
        y = x.to(torch.float32, copy=True)

    if not params.jitters and mean is None and std is None:
        y = (y.div_(255.0) if x.dtype == torch.uint8 else y).clamp_(0.0, 1.0)
        return y if out is None else out.copy_(y)

    # Per sample y01 = y * unit, then jitter y01 * c + m (1 - c) + b with m the
    # image's mean, clamp to [0, 1], then normalise (v - mu) / sigma: folded
    # into one multiply-add per pixel and one clamp with moved bounds.
    c = params.contrast.to(torch.float64)
    gain = (c * unit).to(torch.float32).to(device, non_blocking=True).view(b, 1, 1, 1)
    offset = params.brightness.to(torch.float32).to(device, non_blocking=True).view(b, 1, 1, 1)
    if (params.contrast != 1).any():
        image_mean = y.mean(dim=(1, 2, 3), keepdim=True) * unit
        offset = offset + image_mean * (1.0 - c.to(torch.float32)).to(device, non_blocking=True).view(b, 1, 1, 1)
    lo: float | torch.Tensor = 0.0
    hi: float | torch.Tensor = 1.0
    if mean is not None or std is not None:
        mu = _channel_tensor(0.0 if mean is None else mean, x.shape[1], device)
        sigma = _channel_tensor(1.0 if std is None else std, x.shape[1], device)
        gain, offset = gain / sigma, (offset - mu) / sigma
        lo, hi = -mu / sigma, (1.0 - mu) / sigma
    y = torch.addcmul(offset, y, gain, out=y if out is None else out)
    if isinstance(lo, torch.Tensor):
        return torch.clamp(y, min=lo, max=hi, out=y)
    return y.clamp_(lo, hi)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly flip, rotate, zoom, shift, then jitter brightness and contrast.

    ``x`` is a (B, C, H, W) batch, uint8 (divided by 255) or float in [0, 1],
    on any device; returns float32 in [0, 1], same shape and device. Each
    sample gets its own parameters, drawn from ``generator`` (a CPU
    generator, so a seed gives the same batch on CPU and GPU). With nothing
    configured the batch is only converted, and the generator is not used.
    """
    _check_batch(x)
    if cfg.is_identity:
        return _to_unit_float(x)
    return apply_params(x, sample_params(x.shape[0], cfg, generator))


def normalize(
    x: torch.Tensor, mean: float | Sequence[float] = GREY_MEAN, std: float | Sequence[float] = GREY_STD
) -> torch.Tensor:
    """``(x - mean) / std`` per channel, out of place."""
    c = x.shape[1] if x.dim() == 4 else x.shape[0]
    mu = _channel_tensor(mean, c, x.device, x.dim())
    sigma = _channel_tensor(std, c, x.device, x.dim())
    return (x - mu) / sigma


def denormalize(
    x: torch.Tensor, mean: float | Sequence[float] = GREY_MEAN, std: float | Sequence[float] = GREY_STD
) -> torch.Tensor:
    """The inverse of :func:`normalize`: ``x * std + mean``."""
    c = x.shape[1] if x.dim() == 4 else x.shape[0]
    mu = _channel_tensor(mean, c, x.device, x.dim())
    sigma = _channel_tensor(std, c, x.device, x.dim())
    return x * sigma + mu


def prepare_batch(
    x: torch.Tensor,
    *,
    device: torch.device | str,
    mean: float | Sequence[float] = GREY_MEAN,
    std: float | Sequence[float] = GREY_STD,
    augment: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
    non_blocking: bool = True,
) -> torch.Tensor:
    """Turn a uint8 batch from the loader into the model's float input.

    Copies ``x`` to ``device`` while still uint8 (non-blocking from pinned
    memory), converts to float, augments when ``augment`` asks for anything,
    normalises with ``mean``/``std``, and optionally converts to channels_last.
    """
    _check_batch(x)
    x = x.to(device, non_blocking=non_blocking)
    if augment is None or augment.is_identity:
        y = _to_unit_float(x)
        mu = _channel_tensor(mean, y.shape[1], y.device)
        sigma = _channel_tensor(std, y.shape[1], y.device)
        y = y.sub_(mu).div_(sigma)
    else:
        y = apply_params(x, sample_params(x.shape[0], augment, generator), mean=mean, std=std)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    return y


class _Scratch(threading.local):
    """Per-thread float32 CPU buffers for a batch's temporaries (never returned to callers).

    Each grows to the largest batch seen and is then reused, smaller batches
    taking a view of it; ``release_workspace()`` frees them. CUDA needs none
    of this: its caching allocator already reuses memory.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: Sequence[int]) -> torch.Tensor:
        numel = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = self.buffers[name] = torch.empty(numel, dtype=torch.float32)
        return buf[:numel].view(*shape)


_scratch = _Scratch()


def release_workspace() -> None:
    """Free this thread's reusable CPU buffers (a few tens of MB at batch 32, 320 px)."""
    _scratch.buffers.clear()


def _to_unit_float(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32, copy=True)


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected a (B, C, H, W) tensor, got {shape}")
    if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
        raise TypeError(f"expected uint8 or floating-point pixels, got {x.dtype}")


def _channel_tensor(
    value: float | Sequence[float] | torch.Tensor, channels: int, device: torch.device, dim: int = 4
) -> float | torch.Tensor:
    """A scalar stays a Python float (cheapest to broadcast); a per-channel
    sequence becomes a tensor shaped to broadcast over (B, C, H, W) or (C, H, W)."""
    if isinstance(value, (int, float)):
        return float(value)
    t = torch.as_tensor(value, dtype=torch.float32, device=device).flatten()
    if t.numel() == 1:
        return float(t.item())
    if t.numel() != channels:
        raise ValueError(f"{t.numel()} normalisation values for {channels} channels")
    return t.view(1, channels, 1, 1) if dim == 4 else t.view(channels, 1, 1)
