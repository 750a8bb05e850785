"""The from-scratch cnn: shape, size, initialisation and that it learns."""

from __future__ import annotations

import torch

from muracli.models import ModelSpec, build_model
from muracli.models.cnn import CNN_WIDTHS


def test_cnn_shapes_and_parameter_count():
    model = build_model(ModelSpec("cnn"))
    assert model.feature_dim == CNN_WIDTHS[-1] == 256
    assert sum(p.numel() for p in model.parameters()) == 1_179_986  # as documented in cnn.py
    model.eval()
    for size in (64, 96, 128):
        with torch.no_grad():
            assert model(torch.randn(2, 1, size, size)).shape == (2, 2)
    assert model.cam_layer is model.backbone.features[-1]


def test_cnn_takes_other_channel_and_class_counts():
    model = build_model(ModelSpec("cnn", in_channels=3, num_classes=5)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def _weights(init: str, seed: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    return [p.detach().clone() for p in build_model(ModelSpec("cnn", init=init)).parameters()]


def test_init_is_deterministic_and_selectable():
    kaiming, kaiming_again, xavier = _weights("kaiming", 0), _weights("kaiming", 0), _weights("xavier", 0)
    assert all(torch.equal(a, b) for a, b in zip(kaiming, kaiming_again))
    conv_and_head = [i for i, w in enumerate(kaiming) if w.dim() >= 2]
    assert all(not torch.equal(kaiming[i], xavier[i]) for i in conv_and_head)
    assert not torch.equal(_weights("kaiming", 1)[0], kaiming[0])


def test_cnn_learns_a_bright_square(square_cnn, make_squares):
    assert square_cnn.first_loss > 0.5 and square_cnn.last_loss < 0.1
    x, y, _ = make_squares(64, seed=1)
    with torch.no_grad():
        accuracy = (square_cnn.model(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.85
