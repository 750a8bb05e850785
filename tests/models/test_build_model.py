"""build_model: every architecture gets the same 2-way head and 1-channel first conv."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from muracli.errors import ConfigError
from muracli.models import Classifier, ModelSpec, available_models, build_model

ARCHITECTURES = [
    ("cnn", 64),
    ("vgg16", 32),
    ("densenet169", 32),
    ("resnet18", 32),
    ("efficientnet_b0", 32),
    ("convnext_tiny", 32),
    ("mobilenet_v3_small", 32),
    ("regnet_y_400mf", 32),
    ("swin_t", 64),
]


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(("name", "size"), ARCHITECTURES)
def test_two_way_head_and_greyscale_input(name, size, default_model):
    model = default_model(name)
    assert isinstance(model, Classifier)
    assert _first_conv(model).in_channels == 1
    assert not any(isinstance(m, nn.Conv2d) and m.in_channels == 3 for m in model.modules())
    dropout, linear = model.head
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.5
    assert (linear.in_features, linear.out_features) == (model.feature_dim, 2)
    # The backbone keeps no ImageNet-sized (1000-way) layer.
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in model.backbone.modules())
    model.eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        features = model.backbone(x)
        assert features.shape == (2, model.feature_dim)
        assert model(x).shape == (2, 2)
    assert model.cam_layer is not None


def test_vgg16_keeps_its_4096_wide_fc_layers(default_model):
    model = default_model("vgg16")
    assert model.feature_dim == 4096
    classifier = model.backbone.classifier
    assert [type(m).__name__ for m in classifier] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Identity", "Identity"]
    assert classifier[0].in_features == 512 * 7 * 7
    assert model.cam_layer_name == "features.29"  # the last conv activation, before the final max-pool


def test_head_dropout_replaces_the_models_own():
    # EfficientNet's classifier is Dropout(0.2) + Linear: both give way to the configured head.
    model = build_model(ModelSpec("efficientnet_b0", dropout=0.1))
    assert model.head[0].p == 0.1
    assert not any(isinstance(m, nn.Dropout) for m in model.backbone.classifier.modules())


def test_num_classes_and_channels_are_configurable():
    model = build_model(ModelSpec("resnet18", in_channels=3, num_classes=4)).eval()
    assert _first_conv(model).in_channels == 3
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_available_models_lists_cnn_and_torchvision():
    names = available_models()
    assert names[0] == "cnn"
    assert {"vgg16", "densenet169", "resnet18", "efficientnet_b0", "convnext_tiny"} <= set(names)


def test_unknown_model_suggests_close_names():
    with pytest.raises(ConfigError, match="densenet169") as caught:
        build_model(ModelSpec("densnet169"))
    assert "\n" not in caught.value.message


def test_cnn_has_no_imagenet_weights():
    with pytest.raises(ConfigError, match="ImageNet"):
        build_model(ModelSpec("cnn", pretrained=True))


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_freeze_backbone_trains_only_the_head(name):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name, freeze_backbone=True))
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    # A frozen backbone stays in eval mode: its BatchNorm statistics do not move.
    assert model.head.training and not any(m.training for m in model.backbone.modules())
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    optimiser.step()
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone_before.items())
    assert any(not torch.equal(v, model.head.state_dict()[k]) for k, v in head_before.items())
    model.eval()
    assert not model.training
    model.set_backbone_frozen(False)
    model.train()
    assert all(m.training for m in model.backbone.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_state_dict_has_no_duplicate_cam_entries():
    model = build_model(ModelSpec("cnn"))
    assert all(k.startswith(("backbone.", "head.")) for k in model.state_dict())
    assert model.spec == ModelSpec("cnn")
