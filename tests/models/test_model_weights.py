"""Starting weights: torchvision state dicts from a file, ImageNet downloads, our own checkpoints,
and files that must be refused (wrong shapes, corrupt, or built to run code)."""

from __future__ import annotations

import io
import pathlib
import pickle
import re
import urllib.error
import urllib.request

import pytest
import torch
import torchvision
from torch import nn

from muracli.errors import CheckpointError, ChecksumError, ConfigError, DownloadError, MuraError
from muracli.models import ModelSpec, build_model


@pytest.fixture
def resnet18_file(tmp_path):
    """A torchvision resnet18 state dict with a recognisable first conv and ImageNet-sized fc."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["conv1.weight"] = torch.arange(state["conv1.weight"].numel(), dtype=torch.float32).reshape(64, 3, 7, 7) / 1000
    state["fc.weight"].fill_(0.5)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache and a network that fails at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path / "torch_home" / "hub" / "checkpoints", calls


def test_file_weights_load_before_the_adaptation(resnet18_file):
    path, state = resnet18_file
    model = build_model(ModelSpec("resnet18", weights=str(path)))
    backbone = model.backbone.state_dict()
    torch.testing.assert_close(backbone["conv1.weight"], state["conv1.weight"].sum(dim=1, keepdim=True))
    for key in ("layer1.0.conv1.weight", "layer4.1.bn2.running_var", "bn1.bias"):
        assert torch.equal(backbone[key], state[key])
    assert isinstance(model.backbone.fc, nn.Identity)
    assert model.head[1].out_features == 2 and not torch.all(model.head[1].weight == 0.5)
    assert model.weights_source == f"file:{path}"


def test_file_weights_keep_rgb_for_three_channels(resnet18_file):
    path, state = resnet18_file
    model = build_model(ModelSpec("resnet18", in_channels=3, weights=str(path)))
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])


def test_weights_file_wins_over_pretrained(resnet18_file, offline):
    path, _ = resnet18_file
    _, calls = offline
    build_model(ModelSpec("resnet18", pretrained=True, weights=str(path)))
    assert calls == []


def _legacy_densenet(state):
    # The published DenseNet files use 'norm.1'-style names and lack num_batches_tracked.
    renamed = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()}
    return {k: v for k, v in renamed.items() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize(
    ("name", "make_state"),
    [
        ("densenet121", lambda: _legacy_densenet(torchvision.models.densenet121(weights=None).state_dict())),
        ("googlenet", lambda: torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).state_dict()),
        ("mnasnet0_5", lambda: torchvision.models.mnasnet0_5(weights=None).state_dict()),
    ],
)
def test_file_formats_torchvision_itself_accepts(tmp_path, name, make_state):
    state = make_state()
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    model = build_model(ModelSpec(name, weights=str(path))).eval()
    first = next(m for m in model.backbone.modules() if isinstance(m, nn.Conv2d))
    rgb = next(v for v in state.values() if v.dim() == 4 and v.shape[1] == 3)
    torch.testing.assert_close(first.weight, rgb.sum(dim=1, keepdim=True))
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 2)


def test_wrong_shapes_and_names_are_config_errors(tmp_path, resnet18_file):
    _, state = resnet18_file
    wrong = dict(state)
    wrong["fc.weight"] = torch.zeros(10, 512)
    wrong["fc.bias"] = torch.zeros(10)
    del wrong["layer2.0.bn1.weight"]
    wrong["extra.weight"] = torch.zeros(1)
    path = tmp_path / "wrong.pth"
    torch.save(wrong, path)
    with pytest.raises(ConfigError) as caught:
        build_model(ModelSpec("resnet18", weights=str(path)))
    message = caught.value.message
    assert "fc.weight" in message and "layer2.0.bn1.weight" in message and "extra.weight" in message
    assert "\n" not in message and "--weights" not in message
    assert "state_dict" in caught.value.hint

    # Another architecture's file names its keys too.
    path = tmp_path / "vgg.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    with pytest.raises(ConfigError, match="missing: conv1.weight"):
        build_model(ModelSpec("resnet18", weights=str(path)))


class Payload:
    """Unpickling this would create a marker file: the proof that a load ran code."""

    marker = None

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = Payload()
    payload.marker = str(marker)
    path = tmp_path / "evil.pth"
    obj = {"conv1.weight": torch.zeros(1), "payload": payload}
    if writer == "torch.save":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing"):
        build_model(ModelSpec("resnet18", weights=str(path)))
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"not a pytorch file at all", "truncated", "not tensors"],
)
def test_unreadable_files_are_checkpoint_errors(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content == "truncated":
        buffer = io.BytesIO()
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), buffer)
        path.write_bytes(buffer.getvalue()[: 200_000])
    elif content == "not tensors":
        torch.save({"epoch": 3, "name": "x"}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        build_model(ModelSpec("resnet18", weights=str(path)))
    assert "\n" not in caught.value.message


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build_model(ModelSpec("resnet18", weights=str(tmp_path / "nope.pth")))


def test_own_checkpoints_load_backbone_and_head(tmp_path):
    torch.manual_seed(3)
    trained = build_model(ModelSpec("cnn"))
    path = tmp_path / "best.pt"
    # Wrapped as training checkpoints are, with DDP's prefix for good measure.
    torch.save({"format": "mura", "epoch": 2, "state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, path)
    torch.manual_seed(4)
    model = build_model(ModelSpec("cnn", weights=str(path)))
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    # A checkpoint of ours for a torchvision model works the same way; another head size is left fresh.
    resnet = build_model(ModelSpec("resnet18"))
    torch.save(resnet.state_dict(), path)
    model = build_model(ModelSpec("resnet18", weights=str(path), num_classes=3))
    assert torch.equal(model.backbone.conv1.weight, resnet.backbone.conv1.weight)
    assert model.head[1].out_features == 3


def test_cnn_refuses_torchvision_files(resnet18_file):
    path, _ = resnet18_file
    with pytest.raises(ConfigError, match="not a mura cnn checkpoint"):
        build_model(ModelSpec("cnn", weights=str(path)))


def test_pretrained_without_network_says_to_use_weights_file(offline):
    cache, calls = offline
    with pytest.raises(MuraError) as caught:
        build_model(ModelSpec("resnet18", pretrained=True))
    error = caught.value
    assert isinstance(error, DownloadError)
    assert "resnet18" in error.message and "\n" not in error.message
    assert "--weights FILE" in error.hint and "resnet18-f37072fd.pth" in error.hint
    assert len(calls) == 1
    assert not any(cache.glob("*")), "no partial download may be left behind"


def test_pretrained_uses_torch_hub_cache(offline, resnet18_file):
    cache, calls = offline
    _, state = resnet18_file
    cache.mkdir(parents=True)
    torch.save(state, cache / "resnet18-f37072fd.pth")
    model = build_model(ModelSpec("resnet18", pretrained=True))
    assert calls == []
    torch.testing.assert_close(model.backbone.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert model.weights_source == "imagenet:ResNet18_Weights.IMAGENET1K_V1"


class FakeResponse(io.BytesIO):
    headers = {"Content-Length": "11"}


def test_download_with_a_wrong_hash_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: FakeResponse(b"not weights"))
    seen = []
    with pytest.raises(ChecksumError):
        build_model(ModelSpec("resnet18", pretrained=True), progress=lambda task, done, total, **_: seen.append((done, total)))
    assert seen == [(11, 11)]
    assert not any((tmp_path / "hub" / "checkpoints").glob("*"))
