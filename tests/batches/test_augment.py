"""Batched tensor augmentation and normalisation (muracli.batches.augment)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from muracli.batches.augment import (
    GREY_MEAN,
    GREY_STD,
    AugmentConfig,
    AugmentParams,
    affine_grid,
    apply_params,
    augment_batch,
    denormalize,
    normalize,
    prepare_batch,
    sample_params,
)
from muracli.errors import ConfigError

S = 32


def noise_batch(b: int = 6, c: int = 1, s: int = S, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, s, s), generator=g, dtype=torch.uint8)


def blob_batch(b: int = 4, s: int = S, radius: float = 0.25) -> torch.Tensor:
    """A bright disc in the middle of a black square, as uint8."""
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    c = (s - 1) / 2
    disc = ((xx - c) ** 2 + (yy - c) ** 2) <= (radius * s) ** 2
    return (disc.to(torch.uint8) * 200).expand(b, 1, s, s).contiguous()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_config_defaults_none_and_round_trip():
    cfg = AugmentConfig()
    assert (cfg.flip, cfg.rotate, cfg.scale, cfg.translate, cfg.brightness, cfg.contrast) == (
        0.5, 10.0, 0.1, 0.05, 0.1, 0.1,
    )
    assert not cfg.is_identity
    assert AugmentConfig.none().is_identity
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    assert AugmentConfig.from_dict({"rotate": 5}) == AugmentConfig(rotate=5.0)
    with pytest.raises(ConfigError):
        AugmentConfig.from_dict({"rotation": 5})
    with pytest.raises(ConfigError):
        AugmentConfig(flip=1.5)
    with pytest.raises(ConfigError):
        AugmentConfig(scale=-0.1)


def test_grey_constants_are_the_mean_of_imagenet_statistics():
    assert GREY_MEAN == pytest.approx(sum((0.485, 0.456, 0.406)) / 3, abs=1e-3)
    assert GREY_STD == pytest.approx(sum((0.229, 0.224, 0.225)) / 3, abs=1e-3)


def test_affine_grid_matches_torch():
    params = sample_params(5, AugmentConfig(rotate=30, scale=0.3, translate=0.2, flip=0.5), gen(1))
    for h, w in ((S, S), (20, 36)):
        theta = params.theta(h, w).float()
        ours = affine_grid(theta, h, w)
        ref = F.affine_grid(theta, [5, 1, h, w], align_corners=False)
        assert torch.allclose(ours, ref, atol=1e-6)


def test_identity_parameters_are_the_identity():
    x = noise_batch()
    out = apply_params(x, AugmentParams.identity(len(x)))
    assert torch.equal(out, x.float() / 255)
    # The warp itself, with an identity matrix, lands on the pixel centres.
    xf = x.float() / 255
    theta = AugmentParams.identity(len(x)).theta(S, S).float()
    warped = F.grid_sample(xf, affine_grid(theta, S, S), mode="bilinear", padding_mode="zeros", align_corners=False)
    assert (warped - xf).abs().max() < 1e-5


def test_identity_config_is_a_plain_conversion_and_leaves_generator_alone():
    x = noise_batch()
    g = gen(3)
    before = g.get_state()
    out = augment_batch(x, AugmentConfig.none(), g)
    assert torch.equal(out, x.float() / 255)
    assert torch.equal(g.get_state(), before)


def test_flip_twice_is_the_identity():
    x = noise_batch()
    cfg = AugmentConfig.none()
    flip = AugmentConfig(flip=1.0, rotate=0, scale=0, translate=0, brightness=0, contrast=0)
    once = augment_batch(x, flip, gen())
    assert torch.equal(once, x.float().flip(-1) / 255)
    assert torch.equal(augment_batch(once, flip, gen()), augment_batch(x, cfg, gen()))
    # Through the general warp too (a flip folded into a tiny shift's matrix).
    params = AugmentParams.identity(len(x))
    params.flip[:] = True
    warped = apply_params(x, params)
    params.translate[:] = 1e-9  # forces the affine warp path
    warped_twice = apply_params(apply_params(x, params), params)
    assert torch.equal(warped, x.float().flip(-1) / 255)
    assert (warped_twice - x.float() / 255).abs().max() < 1e-4


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_output_shape_dtype_device_and_range(dtype):
    x = noise_batch(b=5, c=1)
    x = x if dtype == torch.uint8 else x.float() / 255
    out = augment_batch(x, AugmentConfig(brightness=0.5, contrast=0.5), gen())
    assert out.shape == x.shape
    assert out.dtype == torch.float32
    assert out.device == x.device
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_multichannel_batches_work():
    x = noise_batch(b=3, c=3)
    out = augment_batch(x, AugmentConfig(), gen())
    assert out.shape == (3, 3, S, S)
    norm = normalize(out, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert torch.allclose(denormalize(norm, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), out, atol=1e-6)


def test_same_seed_same_batch_different_seed_different_batch():
    x = noise_batch()
    cfg = AugmentConfig()
    a = augment_batch(x, cfg, gen(7))
    b = augment_batch(x, cfg, gen(7))
    c = augment_batch(x, cfg, gen(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_samples_get_different_parameters():
    params = sample_params(16, AugmentConfig(), gen(0))
    assert len(torch.unique(params.angle)) == 16
    assert 0 < int(params.flip.sum()) < 16
    assert params.angle.abs().max() <= 10.0
    assert ((params.scale - 1).abs() <= 0.1).all()


def test_uint8_and_float_inputs_agree():
    x = noise_batch()
    cfg = AugmentConfig()
    from_uint8 = augment_batch(x, cfg, gen(5))
    from_float = augment_batch(x.float() / 255, cfg, gen(5))
    assert torch.allclose(from_uint8, from_float, atol=1e-5)


def test_float_input_is_not_modified():
    x = noise_batch().float() / 255
    keep = x.clone()
    augment_batch(x, AugmentConfig(), gen())
    augment_batch(x, AugmentConfig(flip=1.0, rotate=0, scale=0, translate=0), gen())
    prepare_batch(x, device="cpu")
    assert torch.equal(x, keep)


def test_rotation_keeps_mass_centred_and_rotates():
    x = blob_batch()
    cfg = AugmentConfig(flip=0, rotate=30, scale=0, translate=0, brightness=0, contrast=0)
    out = augment_batch(x, cfg, gen(2))
    yy, xx = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32), indexing="ij")
    mass = out.sum(dim=(1, 2, 3))
    cy = (out[:, 0] * yy).sum(dim=(1, 2)) / mass
    cx = (out[:, 0] * xx).sum(dim=(1, 2)) / mass
    centre = (S - 1) / 2
    assert ((cx - centre).abs() < 0.5).all() and ((cy - centre).abs() < 0.5).all()
    # A centred disc is (nearly) rotation invariant: its mass is kept.
    assert torch.allclose(mass, x.float().sum(dim=(1, 2, 3)) / 255, rtol=0.02)


def test_rotation_direction_and_translation_follow_the_parameters():
    x = torch.zeros(1, 1, S, S, dtype=torch.uint8)
    x[0, 0, 4:8, 20:24] = 255  # a dot right of centre, near the top
    params = AugmentParams.identity(1)
    params.translate[0, 0] = 0.25  # a quarter of the width to the right
    moved = apply_params(x, params)
    assert torch.equal(moved[0, 0, 4:8, 28:32], torch.ones(4, 4))
    params = AugmentParams.identity(1)
    params.angle[0] = 90.0
    turned = apply_params(x, params)
    cy, cx = [float(v) for v in torch.nonzero(turned[0, 0] > 0.5).float().mean(0)]
    # Counter-clockwise as displayed: top-right goes to top-left.
    assert cx < S / 2 and cy < S / 2


def test_zoom_pads_with_black():
    x = torch.full((2, 1, S, S), 255, dtype=torch.uint8)
    params = AugmentParams.identity(2)
    params.scale[:] = 0.5
    out = apply_params(x, params)
    assert out[:, :, 0, 0].max() == 0.0  # corners come from outside: zero, black
    assert out[:, :, S // 2, S // 2].min() == 1.0


def test_brightness_and_contrast():
    x = torch.full((2, 1, S, S), 100, dtype=torch.uint8)
    x[:, :, :, : S // 2] = 50
    params = AugmentParams.identity(2)
    params.brightness[0] = 0.1
    params.contrast[1] = 2.0
    out = apply_params(x, params)
    base = x.float() / 255
    assert torch.allclose(out[0], base[0] + 0.1, atol=1e-6)
    mean = base[1].mean()
    assert torch.allclose(out[1], (base[1] - mean) * 2 + mean, atol=1e-6)


def test_normalize_round_trip():
    x = torch.rand(3, 1, 8, 8)
    n = normalize(x, GREY_MEAN, GREY_STD)
    assert torch.allclose(n, (x - GREY_MEAN) / GREY_STD)
    assert torch.allclose(denormalize(n, GREY_MEAN, GREY_STD), x, atol=1e-6)


def test_prepare_batch_without_augmentation():
    x = noise_batch()
    out = prepare_batch(x, device="cpu")
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.allclose(out, normalize(x.float() / 255, GREY_MEAN, GREY_STD), atol=1e-6)
    assert prepare_batch(x, device="cpu", augment=AugmentConfig.none()).equal(out)


def test_prepare_batch_with_augmentation_matches_augment_then_normalize():
    x = noise_batch()
    cfg = AugmentConfig(brightness=0.3, contrast=0.3)
    fused = prepare_batch(x, device="cpu", augment=cfg, generator=gen(4))
    separate = normalize(augment_batch(x, cfg, gen(4)), GREY_MEAN, GREY_STD)
    assert torch.allclose(fused, separate, atol=1e-5)
    lo, hi = (0 - GREY_MEAN) / GREY_STD, (1 - GREY_MEAN) / GREY_STD
    assert fused.min() >= lo - 1e-6 and fused.max() <= hi + 1e-6


def test_prepare_batch_channels_last():
    x = noise_batch(b=2, c=3)
    out = prepare_batch(x, device="cpu", mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), channels_last=True)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_bad_inputs():
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(S, S, dtype=torch.uint8), AugmentConfig(), gen())
    with pytest.raises(TypeError):
        augment_batch(torch.zeros(1, 1, S, S, dtype=torch.int32), AugmentConfig(), gen())


def test_theta_is_inverse_of_forward_transform():
    # Forward: p_out = s R(a) F p + t; theta must map p_out back to p.
    params = AugmentParams.identity(1)
    params.angle[0], params.scale[0], params.flip[0] = 20.0, 1.2, True
    params.translate[0] = torch.tensor([0.1, -0.05], dtype=torch.float64)
    theta = params.theta(S, S)[0]
    p = torch.tensor([0.3, -0.2], dtype=torch.float64)
    a = math.radians(20.0)
    rot = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], dtype=torch.float64)
    fwd = 1.2 * rot @ (torch.tensor([-1.0, 1.0], dtype=torch.float64) * p) + 2 * params.translate[0]
    back = theta[:, :2] @ fwd + theta[:, 2]
    assert torch.allclose(back, p, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_gpu_agree():
    x = noise_batch(b=8, s=64)
    cfg = AugmentConfig()
    cpu = prepare_batch(x, device="cpu", augment=cfg, generator=gen(9))
    gpu = prepare_batch(x.pin_memory(), device="cuda", augment=cfg, generator=gen(9))
    assert gpu.device.type == "cuda"
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-3)
