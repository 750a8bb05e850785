"""The study model: shared backbone over views, masked pooling, one head."""

from __future__ import annotations

import pytest
import torch

from muracli.batches.datasets import pad_views
from muracli.models import ModelSpec, build_model
from muracli.models.multiview import VIEW_POOLS, build_study_model


def study_model(pool: str):
    torch.manual_seed(0)
    return build_study_model(build_model(ModelSpec(name="cnn", dropout=0.0)), pool).eval()


def studies(*views: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(v, 1, 32, 32, generator=generator) for v in views]


@pytest.mark.parametrize("pool", VIEW_POOLS)
def test_padding_gives_the_same_output_as_each_study_alone(pool):
    model = study_model(pool)
    batch = studies(3, 1, 4, 2)
    x, mask = pad_views(batch)
    assert x.shape == (4, 4, 1, 32, 32) and mask.sum().item() == 10
    with torch.no_grad():
        together = model(x, mask)
        alone = torch.cat([model(s[None], torch.ones(1, len(s), dtype=torch.bool)) for s in batch])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    # padded views must not matter, whatever they hold
    noisy = x.clone()
    noisy[~mask] = 123.0
    with torch.no_grad():
        torch.testing.assert_close(model(noisy, mask), together, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool", VIEW_POOLS)
def test_a_one_view_study_is_the_image_model(pool):
    model = study_model(pool)
    (view,) = studies(1)
    with torch.no_grad():
        as_study = model(view[None], torch.ones(1, 1, dtype=torch.bool))
        as_image = model.as_image_model()(view)
    torch.testing.assert_close(as_study, as_image)
    assert as_study.shape == (1, 2)


def test_attention_weights_sum_to_one_over_real_views():
    model = study_model("attention")
    x, mask = pad_views(studies(3, 1, 5))
    with torch.no_grad():
        weights = model.view_weights(x, mask)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    assert torch.all(weights[~mask] == 0)
    assert torch.all(weights[mask] > 0)


def test_view_order_does_not_matter():
    model = study_model("attention")
    (views,) = studies(4)
    one = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        a = model(views[None], one)
        b = model(views.flip(0)[None], one)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_unknown_pool_is_a_config_error():
    from muracli.errors import ConfigError

    with pytest.raises(ConfigError):
        build_study_model(build_model(ModelSpec(name="cnn")), "median")
