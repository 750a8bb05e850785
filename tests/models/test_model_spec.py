"""ModelSpec: validation and the JSON round trip that checkpoints rely on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from muracli.errors import ConfigError
from muracli.models import ModelSpec


def test_defaults_match_the_contract():
    spec = ModelSpec("cnn")
    assert (spec.in_channels, spec.num_classes, spec.dropout, spec.init) == (1, 2, 0.5, "kaiming")
    assert (spec.pretrained, spec.weights, spec.freeze_backbone) == (False, None, False)


def test_round_trips_through_json(tmp_path):
    spec = ModelSpec(
        "DenseNet169 ", dropout=0.2, init="xavier", pretrained=True, weights=tmp_path / "w.pth", freeze_backbone=True
    )
    assert spec.name == "densenet169"
    assert spec.weights == str(tmp_path / "w.pth")
    data = json.loads(json.dumps(spec.to_dict()))
    assert ModelSpec.from_dict(data) == spec


def test_architecture_only_drops_the_weight_sources():
    spec = ModelSpec("vgg16", pretrained=True, weights="x.pth", dropout=0.3)
    assert spec.architecture_only() == ModelSpec("vgg16", dropout=0.3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "cnn", "dropout": 1.0},
        {"name": "cnn", "dropout": -0.1},
        {"name": "cnn", "init": "orthogonal"},
        {"name": "cnn", "in_channels": 0},
        {"name": "cnn", "num_classes": True},
        {"name": "cnn", "pretrained": "yes"},
    ],
)
def test_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        ModelSpec(**kwargs)


def test_from_dict_rejects_unknown_and_missing_fields():
    with pytest.raises(ConfigError, match="colour"):
        ModelSpec.from_dict({"name": "cnn", "colour": "blue"})
    with pytest.raises(ConfigError, match="name"):
        ModelSpec.from_dict({"dropout": 0.1})


def test_importing_the_spec_does_not_import_torch():
    code = "import sys; from muracli.models import ModelSpec; ModelSpec('cnn'); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
