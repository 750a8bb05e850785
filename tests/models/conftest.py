"""A tiny cnn trained once on images with a bright square, shared by the cnn and Grad-CAM tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

SIDE = 12  # the square's side in pixels


def square_images(n: int, size: int = 64, seed: int = 0, side: int = SIDE):
    """Noise images; odd-numbered ones (label 1) carry a bright square at a random place.

    Returns (images (n, 1, size, size), labels (n,), top-left corners (n, 2)).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g) * 0.3
    y = torch.arange(n) % 2
    corners = torch.randint(0, size - side, (n, 2), generator=g)
    for i in range(n):
        if y[i]:
            r, c = corners[i].tolist()
            x[i, 0, r : r + side, c : c + side] += 2.0
    return x, y, corners


@dataclass
class SquareModel:
    model: nn.Module
    first_loss: float
    last_loss: float


@pytest.fixture(scope="session")
def make_squares():
    return square_images


@pytest.fixture(scope="session")
def square_cnn() -> SquareModel:
    from muracli.models import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec("cnn", dropout=0.0))
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y, _ = square_images(32, seed=0)
    model.train()
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    # Eight steps leave BatchNorm's running averages far from the data: recompute
    # them exactly from one pass (cumulative average) so eval mode sees what training saw.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        model(x)
    model.eval()
    return SquareModel(model, losses[0], losses[-1])


@pytest.fixture(scope="session")
def default_model():
    """``default_model(name)``: one shared ``build_model(ModelSpec(name))`` per name.

    Building VGG16 alone takes a second or more; tests that only read a model
    (and set train/eval themselves) share these instead of building their own.
    """
    from muracli.models import ModelSpec, build_model

    cache: dict = {}

    def get(name: str):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = build_model(ModelSpec(name))
        return cache[name]

    return get
