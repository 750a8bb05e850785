"""One wrapper for every architecture: a backbone that yields features, and a head.

The split lets one builder adapt any network the same way (new head, new
first convolution), lets ``--freeze-backbone`` mean one thing everywhere, and
lets a later multi-view study model reuse ``backbone`` and ``feature_dim``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from muracli.models.spec import ModelSpec


def abnormal_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(abnormal) for each row of two-class logits: the softmax's second column, in fp32."""
    return torch.softmax(logits.float(), dim=1)[:, 1]


def abnormal_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """log(P(abnormal) / P(normal)) for each row of two-class logits: ``z1 - z0``, in fp32.
    ``sigmoid(abnormal_log_odds(z) / T)`` is the softmax of ``z / T``: temperature scaling."""
    logits = logits.float()
    return logits[:, 1] - logits[:, 0]


def init_layer(module: nn.Module, init: str) -> None:
    """Initialise one conv, linear or norm layer with ``init`` (kaiming | xavier)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        if init == "xavier":
            nn.init.xavier_uniform_(module.weight)
        elif isinstance(module, nn.Conv2d):
            # He et al. for ReLU networks, fan_out as torchvision's VGG and ResNet do.
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        else:
            # The head feeds a softmax, not a ReLU: unit gain keeps the first logits near 0.
            nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
        if module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class Classifier(nn.Module):
    """``head(backbone(x))``: images (B, C, H, W) -> logits (B, num_classes).

    ``backbone`` maps images to features (B, feature_dim); ``head`` is
    Dropout(p) + Linear(feature_dim, num_classes). ``cam_layer_name`` is the
    path (inside the backbone) of the module whose 4-D output is the last
    spatial feature map, used by Grad-CAM; ``None`` when there is none (ViT).

    With a frozen backbone, ``train()`` keeps the backbone in eval mode, so its
    BatchNorm statistics and dropout stay as they were while the head learns.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        *,
        num_classes: int = 2,
        dropout: float = 0.5,
        cam_layer_name: str | None = None,
        init: str = "kaiming",
        freeze_backbone: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))
        init_layer(self.head[1], init)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        # A name, not a module attribute: assigning the module would register it
        # twice and duplicate its weights in the state dict.
        self.cam_layer_name = cam_layer_name
        if cam_layer_name is not None:
            self.backbone.get_submodule(cam_layer_name)  # fail early on a wrong path
        self.frozen_backbone = False
        self.spec: ModelSpec | None = None
        self.weights_source: str | None = None  # e.g. "imagenet:ResNet18_Weights.IMAGENET1K_V1" or "file:/path"
        self.set_backbone_frozen(freeze_backbone)

    @property
    def cam_layer(self) -> nn.Module | None:
        """The module whose output Grad-CAM uses (last spatial map before pooling)."""
        if self.cam_layer_name is None:
            return None
        return self.backbone.get_submodule(self.cam_layer_name)

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Freeze (or unfreeze) the backbone's parameters; the head stays trainable."""
        self.frozen_backbone = bool(frozen)
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if mode and self.frozen_backbone:
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, cam_layer={self.cam_layer_name!r}, frozen_backbone={self.frozen_backbone}"
