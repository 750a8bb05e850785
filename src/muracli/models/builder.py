"""Build a :class:`Classifier` from a :class:`ModelSpec`.

Every torchvision classifier is adapted the same way (the timm habit: one
builder adapts the classifier and the input channels instead of key surgery
per model file):

1. build torchvision's model and, for pretrained weights, load the full
   1000-class ImageNet state dict into it first;
2. swap the first 3-channel convolution for one with ``in_channels`` inputs;
   pretrained RGB weights are summed for greyscale, which is what
   the network computed for a grey image copied into three channels;
3. replace the last Linear of ``fc`` / ``classifier`` / ``head`` / ``heads``
   by Identity (for VGG16 the 4096-d fc layers stay) and the dropout right
   before it, so the backbone ends in features; the new head supplies the
   configured dropout.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import os
import pickle
import re
import urllib.error
import urllib.request
import uuid
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from muracli.errors import CheckpointError, ChecksumError, ConfigError, DownloadError
from muracli.models.classifier import Classifier
from muracli.models.cnn import build_cnn
from muracli.models.spec import ModelSpec
from muracli.progress import ProgressFn

HEAD_ATTRIBUTES = ("fc", "classifier", "head", "heads")
AUX_MODULES = ("aux1", "aux2", "AuxLogits")  # GoogLeNet / Inception v3 side classifiers
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20
# DenseNet's published weight files still use the old 'norm.1' style names;
# torchvision renames them on load and so must we.
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
# Checkpoint wrappers and prefixes others add around a plain state dict.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_KEY_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def available_models() -> list[str]:
    """``cnn`` followed by every torchvision classification model name."""
    return ["cnn", *torchvision.models.list_models(module=torchvision.models)]


def build_model(spec: ModelSpec, *, progress: ProgressFn | None = None) -> Classifier:
    """The model ``spec`` describes, with its starting weights loaded.

    ``progress`` reports the download of ImageNet weights (``pretrained=True``
    with nothing cached yet). Raises ConfigError for an unknown name or a
    weights file that does not fit, CheckpointError for an unreadable or
    unsafe weights file, DownloadError when the weights cannot be fetched.
    """
    if spec.name == "cnn":
        model = _build_cnn_model(spec)
    else:
        model = _build_torchvision_model(spec, progress)
    model.set_backbone_frozen(spec.freeze_backbone)
    model.spec = spec
    return model


def _build_cnn_model(spec: ModelSpec) -> Classifier:
    if spec.pretrained and spec.weights is None:
        raise ConfigError(
            "the cnn has no ImageNet weights",
            "train it from scratch (--no-pretrained), or pass --weights with a mura checkpoint of a cnn",
        )
    model = build_cnn(spec)
    if spec.weights is not None:
        state = read_state_dict(spec.weights)
        if not _is_classifier_state(state):
            raise ConfigError(
                f"{spec.weights} is not a mura cnn checkpoint (no 'backbone.' keys)",
                "the cnn only takes weights from a checkpoint that mura wrote (best.pt / last.pt)",
            )
        _load_classifier_state(model, state, spec.weights, spec.name)
        model.weights_source = f"file:{spec.weights}"
    return model


def _build_torchvision_model(spec: ModelSpec, progress: ProgressFn | None) -> Classifier:
    names = available_models()
    if spec.name not in names:
        close = difflib.get_close_matches(spec.name, names, n=5, cutoff=0.5)
        suggestion = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown model '{spec.name}'{suggestion}",
            "use cnn or a torchvision classifier name, e.g. resnet18, vgg16, densenet169, efficientnet_b0",
        )

    state: dict[str, torch.Tensor] | None = None
    source = None
    arch_kwargs: dict = {}
    if spec.weights is not None:
        state = read_state_dict(spec.weights)
        source = f"file:{spec.weights}"
    elif spec.pretrained:
        weights = torchvision.models.get_model_weights(spec.name).DEFAULT
        state = _imagenet_state_dict(spec.name, weights, progress)
        source = f"imagenet:{weights}"
        if spec.name.startswith("vit_"):
            # Some ViT weights were trained at another resolution (vit_h_14: 518 px).
            arch_kwargs["image_size"] = weights.meta["min_size"][0]
    own_checkpoint = state is not None and _is_classifier_state(state)

    net = _torchvision_network(spec.name, **arch_kwargs)
    if state is not None and not own_checkpoint:
        _load_torchvision_state(net, state, spec.name, spec.weights or source)
    _adapt_first_conv(net, spec.in_channels, pretrained=state is not None and not own_checkpoint, name=spec.name)
    head_attribute, feature_dim = _remove_classifier(net, spec.name)
    model = Classifier(
        net,
        feature_dim,
        num_classes=spec.num_classes,
        dropout=spec.dropout,
        cam_layer_name=_find_cam_layer(net, head_attribute),
        init=spec.init,
    )
    if own_checkpoint:
        _load_classifier_state(model, state, spec.weights or "", spec.name)
    model.weights_source = source
    return model


def _torchvision_network(name: str, **kwargs) -> nn.Module:
    if name in ("googlenet", "inception_v3"):
        kwargs.setdefault("init_weights", True)  # torchvision warns when it is left unset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = torchvision.models.get_model(name, weights=None, **kwargs)
    if getattr(net, "aux_logits", False):
        # Auxiliary classifiers only return extra ImageNet logits in training mode.
        net.aux_logits = False
        for attribute in AUX_MODULES:
            if getattr(net, attribute, None) is not None:
                setattr(net, attribute, None)
    if getattr(net, "transform_input", False):
        net.transform_input = False  # RGB-specific re-normalisation; we normalise greyscale ourselves
    return net


# ---------------------------------------------------------------------------
# Adaptation


def _adapt_first_conv(net: nn.Module, in_channels: int, *, pretrained: bool, name: str) -> None:
    """Replace the first 3-channel Conv2d by one with ``in_channels`` inputs."""
    if in_channels == 3:
        return
    for path, conv in net.named_modules():
        if isinstance(conv, nn.Conv2d) and conv.in_channels == 3:
            break
    else:
        raise ConfigError(f"cannot find the first 3-channel convolution of {name} to adapt it to {in_channels} channel(s)")
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, conv.bias is not None, conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )
    rgb = conv.weight.detach()
    channels = torch.arange(in_channels) % 3
    with torch.no_grad():
        if pretrained and in_channels == 1:
            new.weight.copy_(rgb.sum(dim=1, keepdim=True))
        elif pretrained:
            # Cycle R, G, B and rescale so that the response to a uniform image is kept (as timm does).
            new.weight.copy_(rgb[:, channels] * (3.0 / in_channels))
        else:
            # Random weights: reuse torchvision's own initialisation of this layer.
            new.weight.copy_(rgb[:, channels])
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach())
    net.set_submodule(path, new)


def _remove_classifier(net: nn.Module, name: str) -> tuple[str, int]:
    """Turn ``net`` into a feature extractor; return (head attribute, feature dim)."""
    for attribute in HEAD_ATTRIBUTES:
        container = getattr(net, attribute, None)
        if isinstance(container, nn.Module):
            break
    else:
        raise ConfigError(f"cannot find the classifier of {name} (none of {', '.join(HEAD_ATTRIBUTES)})")

    linears = [(path, m) for path, m in container.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        path, linear = linears[-1]
        full_path = f"{attribute}.{path}" if path else attribute
        net.set_submodule(full_path, nn.Identity())
        # The model's own dropout just before that layer gives way to the head's
        # configured dropout (VGG, EfficientNet, MobileNet, GoogLeNet, ...).
        parent_path, _, child = full_path.rpartition(".")
        parent = net.get_submodule(parent_path) if parent_path else net
        order = list(parent._modules)
        position = order.index(child)
        if position > 0 and isinstance(parent._modules[order[position - 1]], nn.Dropout):
            parent._modules[order[position - 1]] = nn.Identity()
        return attribute, linear.in_features

    convs = [m for m in container.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        # SqueezeNet classifies with a 1x1 convolution before its global pooling.
        setattr(net, attribute, nn.AdaptiveAvgPool2d(1))
        return attribute, convs[-1].in_channels
    raise ConfigError(f"cannot find the final Linear layer of {name}")


_NOT_FEATURE_MAPS = (
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Identity,
)


def _find_cam_layer(net: nn.Module, head_attribute: str) -> str | None:
    """The last top-level stage before pooling and the head (layer4, features, ...)."""
    if isinstance(net, torchvision.models.VisionTransformer):
        return None  # a token sequence, no spatial feature map
    candidates = [
        (path, module)
        for path, module in net.named_children()
        if path != head_attribute and not isinstance(module, _NOT_FEATURE_MAPS)
    ]
    if not candidates:
        return None
    path, module = candidates[-1]
    # A ModuleList is never called itself (MaxViT's blocks): take its last element.
    while isinstance(module, (nn.ModuleList, nn.ModuleDict)) and len(module) > 0:
        last = list(module._modules)[-1]
        path, module = f"{path}.{last}", module._modules[last]
    # VGG and AlexNet end their features with a max-pool: the activation before
    # it is the same evidence at twice the resolution.
    if isinstance(module, nn.Sequential) and len(module) > 1 and isinstance(module[-1], nn.MaxPool2d):
        path = f"{path}.{len(module) - 2}"
    return path


# ---------------------------------------------------------------------------
# Weights


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict without executing code (``weights_only=True``).

    Accepts a plain state dict or one wrapped under ``state_dict`` / ``model``
    (our checkpoints, Lightning, many training scripts); strips DDP's
    ``module.`` and torch.compile's ``_orig_mod.`` prefixes.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(f"weights file {file} does not exist", "check the path given to --weights")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. "pickle protocol 4" notes: the core never prints
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"refusing to load {file}: it holds Python objects other than tensors, which could run code",
            "pass a plain state dict, e.g. torch.save(model.state_dict(), FILE)",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"cannot read weights file {file}: {_first_sentence(exc)}",
            "the file is corrupt or not a PyTorch file; download or save it again",
        ) from None

    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{file} does not hold a state dict (a mapping of names to tensors)")
    return _rekey(obj, _strip_wrapper_prefixes)


def _first_sentence(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    sentence = text.split(". ", 1)[0].rstrip(".")
    # Some loaders raise bare codes (KeyError('101')): name the exception instead.
    return sentence if len(sentence) >= 12 else f"not a PyTorch file ({type(exc).__name__} {sentence})".replace(" )", ")")


def _strip_wrapper_prefixes(key: str) -> str:
    for prefix in _KEY_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def _rekey(state: Mapping[str, torch.Tensor], rename) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with keys renamed (None drops one), keeping ``_metadata``.

    load_state_dict hands each module its version from ``_metadata``; some
    modules (MNASNet, old BatchNorm files) refuse or misread a state without it.
    """
    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        new_key = rename(key)
        if new_key is not None:
            out[new_key] = value
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        renamed = OrderedDict()
        for module_path, data in metadata.items():
            # Module paths have no trailing parameter name; rename "path.x" and strip the ".x" again.
            new_path = rename(f"{module_path}.x" if module_path else "x")
            if new_path is not None:
                renamed[new_path[:-2] if new_path.endswith(".x") else ""] = data
        out._metadata = renamed  # type: ignore[attr-defined]
    return out


def _is_classifier_state(state: Mapping[str, torch.Tensor]) -> bool:
    return any(key.startswith("backbone.") for key in state)


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str | None:
    """A one-line description of how ``given`` fails to fit ``expected``, or None."""
    # Older torchvision files predate BatchNorm's num_batches_tracked; load_state_dict fills it in.
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    wrong_shape = [
        f"{k} {tuple(given[k].shape)} instead of {tuple(expected[k].shape)}"
        for k in expected
        if k in given and given[k].shape != expected[k].shape
    ]
    problems = []
    if wrong_shape:
        problems.append("wrong shape: " + _few(wrong_shape, 2))
    if missing:
        problems.append("missing: " + _few(missing))
    if unexpected:
        problems.append("unexpected: " + _few(unexpected))
    return "; ".join(problems) or None


def _load_torchvision_state(net: nn.Module, state: Mapping[str, torch.Tensor], name: str, source: str) -> None:
    """Load a torchvision-format (ImageNet, 1000-class) state dict into the full network."""
    def rename(key: str) -> str | None:
        if key.split(".", 1)[0] in AUX_MODULES:
            return None  # we dropped the auxiliary classifiers
        match = _DENSENET_OLD_KEY.match(key)
        return match.group(1) + match.group(2) if match else key

    fixed = _rekey(state, rename)
    problem = _mismatch(net.state_dict(), fixed)
    if problem:
        raise ConfigError(
            f"weights {source} do not fit torchvision's {name}: {problem}",
            f"pass the state dict of torchvision's {name} with its 1000-class ImageNet head, "
            f"e.g. torchvision.models.{name}(weights='DEFAULT').state_dict()",
        )
    net.load_state_dict(fixed, strict=False)  # strict in all but num_batches_tracked, checked above


def _load_classifier_state(model: Classifier, state: Mapping[str, torch.Tensor], source: str, name: str) -> None:
    """Load a checkpoint of our own Classifier: the backbone must fit; the head is kept if it fits."""
    backbone = _rekey(state, lambda k: k[len("backbone."):] if k.startswith("backbone.") else None)
    problem = _mismatch(model.backbone.state_dict(), backbone)
    if problem:
        raise ConfigError(
            f"weights {source} do not fit the backbone of {name}: {problem}",
            "pass a checkpoint of the same architecture and number of input channels",
        )
    model.backbone.load_state_dict(backbone, strict=False)
    head = _rekey(state, lambda k: k[len("head."):] if k.startswith("head.") else None)
    if head and _mismatch(model.head.state_dict(), head) is None:
        model.head.load_state_dict(head)


def _imagenet_state_dict(name: str, weights, progress: ProgressFn | None) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``name``, from torch hub's cache or downloaded into it."""
    url = weights.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if not cached.is_file():
        _download(url, cached, name, progress)
    try:
        return read_state_dict(cached)
    except CheckpointError as exc:
        raise CheckpointError(exc.message, f"delete {cached} so that it is downloaded again") from None


def _download(url: str, dest: Path, name: str, progress: ProgressFn | None) -> None:
    """Download ``url`` to ``dest`` atomically, checking torch hub's hash prefix in the file name."""
    hint = (
        f"without internet access, download {url} elsewhere and pass --weights FILE "
        f"(or put it in {dest.parent})"
    )
    hash_match = torch.hub.HASH_REGEX.search(dest.name)
    expected_prefix = hash_match.group(1) if hash_match else None
    task = f"download {name} weights"
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.partial")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "mura (torch.hub compatible)"})
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            digest = hashlib.sha256()
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(task, done, total)
        if expected_prefix and not digest.hexdigest().startswith(expected_prefix):
            raise ChecksumError(
                f"the ImageNet weights for {name} downloaded from {url} are corrupt (SHA-256 mismatch)", hint
            )
        os.replace(partial, dest)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        plain_url_error = isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError)
        reason = exc.reason if plain_url_error else exc
        raise DownloadError(f"cannot download the ImageNet weights for {name}: {reason}", hint) from None
    finally:
        partial.unlink(missing_ok=True)
