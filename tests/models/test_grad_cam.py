"""Grad-CAM: shape, range, an exact analytic case, localisation, and no side effects."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from muracli.errors import ConfigError
from muracli.models import Classifier, ModelSpec, build_model, grad_cam

SIDE = 12


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _state(model: nn.Module):
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


def _identity_model() -> Classifier:
    """features = ReLU(x); logit 1 = mean feature, logit 0 = -mean feature."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.ones_(conv.weight)
    backbone = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = Classifier(backbone, 1, dropout=0.0, cam_layer_name="1")
    with torch.no_grad():
        model.head[1].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model.head[1].bias.zero_()
    return model


def test_analytic_case_gives_the_normalised_input():
    # d(mean A)/dA is uniform, so the map is ReLU(A) = the input, min-max scaled.
    x = torch.rand(3, 1, 16, 16)
    x[:, :, 4:8, 10:14] += 3.0
    cam = grad_cam(_identity_model(), x, target_class=1)
    flat = x[:, 0].flatten(1)
    expected = (x[:, 0] - flat.min(1).values[:, None, None]) / (flat.max(1).values - flat.min(1).values)[:, None, None]
    torch.testing.assert_close(cam, expected)
    # Class 0 has only negative evidence: the map is all zero, not NaN.
    assert torch.equal(grad_cam(_identity_model(), x, target_class=0), torch.zeros_like(cam))
    # One target per image.
    mixed = grad_cam(_identity_model(), x, target_class=[1, 0, 1])
    torch.testing.assert_close(mixed[0], expected[0])
    assert mixed[1].abs().sum() == 0


def test_trained_cnn_looks_at_the_square(square_cnn, make_squares):
    x, y, corners = make_squares(32, seed=7)
    positive = y == 1
    cam = grad_cam(square_cnn.model, x[positive])
    assert cam.shape == (int(positive.sum()), 64, 64)
    for heat, (r, c) in zip(cam, corners[positive].tolist()):
        inside = torch.zeros_like(heat, dtype=torch.bool)
        inside[r : r + SIDE, c : c + SIDE] = True
        assert heat[inside].mean() > 1.2 * heat[~inside].mean()
        peak = int(heat.argmax())
        # The last feature map is 4x4 at 64 px (16 px cells): the peak lies within ~1.5 cells.
        distance = ((peak // 64 - (r + SIDE / 2)) ** 2 + (peak % 64 - (c + SIDE / 2)) ** 2) ** 0.5
        assert distance < 24


@pytest.mark.parametrize("name", ["cnn", "resnet18", "vgg16", "densenet169"])
def test_shape_range_and_no_side_effects(name, default_model):
    model = default_model(name).train()
    before = _state(model)
    x = torch.randn(2, 1, 64, 48)
    cam = grad_cam(model, x)
    assert cam.shape == (2, 64, 48)
    assert cam.min() >= 0 and cam.max() <= 1 and torch.isfinite(cam).all()
    assert _hooks(model) == 0
    assert _state(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad


@pytest.mark.parametrize("name", ["cnn", "densenet169"])
def test_works_with_a_frozen_backbone_and_under_inference_mode(name):
    model = build_model(ModelSpec(name, freeze_backbone=True)).train()
    before = _state(model)
    with torch.inference_mode():
        x = torch.randn(2, 1, 64, 64)
        cam = grad_cam(model, x)
    assert cam.shape == (2, 64, 64) and cam.max() <= 1
    assert _state(model) == before and _hooks(model) == 0


def test_models_without_a_feature_map_and_bad_targets_are_config_errors():
    model = _identity_model()
    model.cam_layer_name = None
    with pytest.raises(ConfigError, match="Grad-CAM"):
        grad_cam(model, torch.rand(1, 1, 8, 8))
    with pytest.raises(ConfigError):
        grad_cam(_identity_model(), torch.rand(1, 1, 8, 8), target_class=2)
    with pytest.raises(ConfigError):
        grad_cam(_identity_model(), torch.rand(2, 1, 8, 8), target_class=[1, 0, 1])
    # A failed call leaves no hook behind either.
    model = _identity_model()
    with pytest.raises(ConfigError):
        grad_cam(model, torch.rand(1, 1, 8, 8), target_class=5)
    assert _hooks(model) == 0
