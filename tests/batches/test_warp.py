"""The compiled CPU batch pass (muracli.batches.warp) against the tensor path it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from muracli.batches.augment import GREY_MEAN, GREY_STD, AugmentConfig, AugmentParams, apply_params, sample_params
from muracli.batches.warp import warp_rows


def cache_array(tmp_path, n: int = 12, h: int = 24, w: int = 24, seed: int = 0) -> np.ndarray:
    """A read-only memory-mapped uint8 (N, H, W) array, as the cache hands out:
    smooth gradients plus noise, so interpolation errors would show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 7 + yy * 3) % 256
    data = np.clip(base[None] + rng.integers(-40, 40, (n, h, w)), 0, 255).astype(np.uint8)
    path = tmp_path / "pixels.npy"
    np.save(path, data)
    return np.load(path, mmap_mode="r")


def tensor_path(pixels: np.ndarray, rows, params: AugmentParams, mean=GREY_MEAN, std=GREY_STD) -> torch.Tensor:
    batch = torch.from_numpy(np.asarray(pixels[np.asarray(rows)])).unsqueeze(1)
    return apply_params(batch, params, mean=mean, std=std)


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig(),
        AugmentConfig(flip=0.5, rotate=180.0, scale=0.5, translate=0.5, brightness=0.5, contrast=0.5),
        AugmentConfig(flip=1.0, rotate=0.0, scale=0.0, translate=0.0, brightness=0.0, contrast=0.0),
        AugmentConfig(flip=0.0, rotate=0.0, scale=0.0, translate=1.0, brightness=0.0, contrast=0.9),
    ],
    ids=["default", "strong", "flip-only", "shift-and-contrast"],
)
@pytest.mark.parametrize("shape", [(24, 24), (17, 30)], ids=["square", "oblong"])
def test_equals_the_tensor_path(tmp_path, cfg, shape):
    pixels = cache_array(tmp_path, h=shape[0], w=shape[1])
    rows = np.array([3, 0, 11, 3, 7, 5, 9, 1])
    for seed in range(4):
        params = sample_params(len(rows), cfg, torch.Generator().manual_seed(seed))
        got = warp_rows(pixels, rows, params)
        expected = tensor_path(pixels, rows, params)
        assert got.shape == (len(rows), 1, *shape) and got.dtype == torch.float32
        # Same arithmetic; only float32 rounding of the sampling positions differs.
        assert torch.allclose(got, expected, atol=2e-3), (got - expected).abs().max()
        assert (got - expected).abs().mean() < 1e-4


def test_identity_and_flip_are_exact(tmp_path):
    pixels = cache_array(tmp_path)
    rows = [2, 5]
    plain = (torch.from_numpy(np.asarray(pixels[rows])).unsqueeze(1).float() / 255 - GREY_MEAN) / GREY_STD
    assert torch.allclose(warp_rows(pixels, rows, AugmentParams.identity(2)), plain, atol=1e-5)
    flipped = AugmentParams.identity(2)
    flipped.flip[:] = True
    assert torch.allclose(warp_rows(pixels, rows, flipped), plain.flip(-1), atol=1e-5)


def test_a_sample_outside_the_image_is_black(tmp_path):
    pixels = cache_array(tmp_path)
    params = AugmentParams.identity(1)
    params.translate[0] = torch.tensor([1.5, 0.0], dtype=torch.float64)  # moved wholly off the frame
    got = warp_rows(pixels, [0], params, mean=0.0, std=1.0)
    assert torch.count_nonzero(got) == 0


def test_writes_into_out_and_keeps_the_source(tmp_path):
    pixels = cache_array(tmp_path)
    before = np.array(pixels)
    params = sample_params(3, AugmentConfig(), torch.Generator().manual_seed(0))
    out = torch.full((3, 1, 24, 24), float("nan"))
    got = warp_rows(pixels, [1, 2, 3], params, out=out)
    assert got is out and not torch.isnan(out).any()
    assert np.array_equal(np.asarray(pixels), before)
    assert warp_rows(pixels, np.zeros(0, np.int64), AugmentParams.identity(0)).shape == (0, 1, 24, 24)


def test_a_strided_array_gives_the_same_batch(tmp_path):
    pixels = cache_array(tmp_path, w=48)
    strided = pixels[:, :, ::2]  # (N, 24, 24), not contiguous
    params = sample_params(4, AugmentConfig(), torch.Generator().manual_seed(2))
    rows = [5, 1, 5, 0]
    got = warp_rows(strided, rows, params)
    assert torch.equal(got, warp_rows(np.ascontiguousarray(strided), rows, params))


def test_rejects_bad_arguments(tmp_path):
    pixels = cache_array(tmp_path)
    two = AugmentParams.identity(2)
    with pytest.raises(ValueError):
        warp_rows(pixels, [0, 1, 2], two)
    with pytest.raises(IndexError):
        warp_rows(pixels, [0, 12], two)
    with pytest.raises(IndexError):
        warp_rows(pixels, [-1, 0], two)
    with pytest.raises(ValueError):
        warp_rows(np.zeros((4, 24, 24), np.float32), [0, 1], two)
    with pytest.raises(ValueError):
        warp_rows(pixels, [0, 1], two, out=torch.empty(2, 1, 24, 23))
