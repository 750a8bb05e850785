"""The train step's regularisation on tiny models: label smoothing, mixup/CutMix, gradient clipping,
gradient accumulation and the EMA of the weights (each against its closed form or hand computation)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from muracli.batches.mix import BatchMix, MixedTargets
from muracli.training.config import TrainConfig
from muracli.training.ema import ema_model
from muracli.training.loss import TrainLoss
from muracli.training.step import train_step
from muracli.training.window import StepWindow, steps_per_epoch, windows

WEIGHTS = torch.tensor([0.3, 0.7])


def tiny_model(seed: int = 0, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)]
    if batchnorm:
        layers.insert(1, nn.BatchNorm2d(3))
    return nn.Sequential(*layers)


def scaler() -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cpu", enabled=False)


def window_for(model, optimizer, **options) -> StepWindow:
    return StepWindow(
        model=model, raw=model, optimizer=optimizer, scaler=scaler(), loss_fn=TrainLoss(WEIGHTS, 0.0),
        autocast=lambda: torch.autocast("cpu", enabled=False), class_weights=WEIGHTS, **options,
    )


def closed_form(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, eps: float) -> float:
    """Class-weighted, label-smoothed cross-entropy, written out: the smoothed target puts
    1 - eps + eps/C on the label and eps/C on each class; each term weighs w_c, and the
    batch is normalised by the labels' total weight."""
    log_p = torch.log_softmax(logits.double(), dim=1)
    classes = logits.shape[1]
    total = 0.0
    for i, y in enumerate(labels.tolist()):
        total += (1 - eps) * weights[y].item() * -log_p[i, y].item()
        total += eps / classes * sum(weights[c].item() * -log_p[i, c].item() for c in range(classes))
    return total / sum(weights[y].item() for y in labels.tolist())


def test_label_smoothing_with_class_weights_is_the_closed_form():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.25], [-1.5, 3.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 0])
    loss = TrainLoss(WEIGHTS, label_smoothing=0.1)(logits, labels)
    assert loss.item() == pytest.approx(closed_form(logits, labels, WEIGHTS, 0.1), rel=1e-6)
    assert TrainLoss(WEIGHTS, 0.1)(logits, labels).item() != pytest.approx(TrainLoss(WEIGHTS, 0.0)(logits, labels).item())
    mixed = TrainLoss(WEIGHTS, 0.1)(logits, MixedTargets(labels, labels.flip(0), 0.3))
    expected = 0.3 * closed_form(logits, labels, WEIGHTS, 0.1) + 0.7 * closed_form(logits, labels.flip(0), WEIGHTS, 0.1)
    assert mixed.item() == pytest.approx(expected, rel=1e-6)


def test_old_configs_load_with_every_new_option_off():
    config = TrainConfig.from_dict({"model": "cnn", "epochs": 3})
    assert (config.label_smoothing, config.mixup, config.cutmix, config.clip_grad) == (0.0, 0.0, 0.0, 0.0)
    assert (config.accumulate, config.ema, config.keep_epochs) == (1, 0.0, 0)


def batch(seed: int = 0, n: int = 8):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=generator), torch.randint(0, 2, (n,), generator=generator)


def test_mixup_alpha_zero_is_the_identity():
    x, y = batch()
    generator = torch.Generator().manual_seed(5)
    before = generator.get_state()
    images, targets = BatchMix(0.0, 0.0, generator)(x, y)
    assert images is x and targets is y
    assert torch.equal(generator.get_state(), before)  # nothing drawn: the other draws stay as they were


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixed_batches_repeat_for_a_seed(mixup, cutmix):
    x, y = batch()

    def draws(seed):
        mix = BatchMix(mixup, cutmix, torch.Generator().manual_seed(seed))
        return [mix(x, y) for _ in range(4)]

    first, again, other = draws(1), draws(1), draws(2)
    for (a, ta), (b, tb) in zip(first, again):
        assert torch.equal(a, b) and torch.equal(ta.b, tb.b) and ta.lam == tb.lam
    assert any(not torch.equal(a, b) for (a, _), (b, _) in zip(first, other))
    for images, targets in first:
        assert isinstance(targets, MixedTargets) and torch.equal(targets.a, y)
        assert sorted(targets.b.tolist()) == sorted(y.tolist())  # a permutation of the batch
        assert 0.0 <= targets.lam <= 1.0


def constant_images(n: int = 6) -> torch.Tensor:
    """Image i is all i: each mixed pixel says where it came from."""
    return torch.arange(float(n)).view(n, 1, 1, 1).expand(n, 1, 6, 6).clone()


def test_cutmix_pastes_one_box_and_lam_is_the_share_left():
    x, (_, y) = constant_images(), batch(n=6)
    pasted = 0
    for seed in range(6):
        images, targets = BatchMix(0.0, 1.0, torch.Generator().manual_seed(seed))(x, y)
        own = (images == x).float().mean(dim=(1, 2, 3))
        changed = own < 1
        pasted += int(changed.any())
        assert torch.allclose(own[changed], torch.tensor(targets.lam))
        assert set(images.unique().tolist()) <= set(range(6))  # pixels are copied, never blended
    assert pasted >= 3


def test_mixup_blends_each_image_with_one_partner():
    x, (_, y) = constant_images(), batch(n=6)
    images, targets = BatchMix(0.4, 0.0, torch.Generator().manual_seed(0))(x, y)
    lam = targets.lam
    assert 0.0 < lam < 1.0
    assert torch.equal(images.amax(dim=(1, 2, 3)), images.amin(dim=(1, 2, 3)))  # whole images blended
    partners = (images[:, 0, 0, 0] - lam * x[:, 0, 0, 0]) / (1 - lam)
    assert torch.allclose(partners, partners.round(), atol=1e-4)
    assert sorted(partners.round().long().tolist()) == list(range(6))  # a permutation of the batch


def test_clip_grad_bounds_the_gradient_norm():
    x, y = batch()
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loss_fn = TrainLoss(WEIGHTS)

    def grad_norm():
        return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))

    scaled = (x * 50, y)  # large inputs: a large gradient
    train_step(model, *scaled, optimizer, scaler(), loss_fn, torch.autocast("cpu", enabled=False))
    unclipped = grad_norm()
    assert unclipped > 1.0
    train_step(model, *scaled, optimizer, scaler(), loss_fn, torch.autocast("cpu", enabled=False), clip_grad=0.5)
    assert grad_norm() == pytest.approx(0.5, rel=1e-5)
    # a bound above the norm leaves the gradients alone
    train_step(model, *scaled, optimizer, scaler(), loss_fn, torch.autocast("cpu", enabled=False), clip_grad=unclipped * 2)
    assert grad_norm() == pytest.approx(unclipped, rel=1e-6)


def test_accumulating_two_batches_gives_the_gradients_of_one_twice_as_large():
    x, _ = batch(n=8)
    y = torch.tensor([1, 1, 1, 0, 0, 0, 0, 1])  # the halves weigh differently under class weights
    grads = []
    for items in ([(x[:4], y[:4]), (x[4:], y[4:])], [(x, y)]):
        model = tiny_model(seed=3)
        window = window_for(model, torch.optim.SGD(model.parameters(), lr=0.0))
        window.step(items, lambda item: item)
        grads.append([p.grad.clone() for p in model.parameters()])
    for accumulated, whole in zip(*grads):
        assert torch.allclose(accumulated, whole, atol=1e-6, rtol=0)
    assert max(float(g.abs().max()) for g in grads[1]) > 1e-3  # real gradients, not zeros


def test_windows_group_the_loader_into_optimiser_steps():
    assert [len(w) for w in windows(range(7), 3)] == [3, 3, 1]
    assert steps_per_epoch(7, 3) == 3 and steps_per_epoch(6, 3) == 2 and steps_per_epoch(5, 1) == 5


def test_ema_after_n_steps_is_the_hand_computed_average():
    decay = 0.8
    model = tiny_model(seed=1, batchnorm=True)
    ema = ema_model(model, decay)
    window = window_for(model, torch.optim.SGD(model.parameters(), lr=0.1), ema=ema)
    expected = None
    for step in range(4):
        window.step([batch(seed=step)], lambda item: item)
        current = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        expected = current if expected is None else {k: decay * expected[k] + (1 - decay) * current[k] for k in current}
    averaged = ema.module.state_dict()
    assert "1.running_mean" in expected  # BatchNorm's buffers are averaged along
    for key, value in expected.items():
        assert torch.allclose(averaged[key], value, atol=1e-6), key
    assert not torch.allclose(averaged["0.weight"], model.state_dict()["0.weight"])
