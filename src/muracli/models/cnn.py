"""``cnn``: a small VGG-style network trained from scratch.

Five blocks of two conv3x3-BatchNorm-ReLU layers, widths 16-32-64-128-256, a
2x2 max-pool after each block but the last, then global average pooling, so
one network serves every input size from 64 to 512 px (the last feature map is
input/16: 4x4 at 64 px, 20x20 at 320 px, fine enough for Grad-CAM).
The head (dropout + Linear(256, 2)) comes from :class:`Classifier`.

1,179,472 parameters in the backbone, 1,179,986 with the 2-way head (one
input channel). The widths start narrow because the full-resolution layers
dominate the cost: on a 2-core CPU a forward+backward pass takes about 3 ms per
image at 64 px and about 10 ms at 128 px, while most parameters sit in the
256-wide last block, whose units see 140 px of the input before global pooling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from muracli.models.classifier import Classifier, init_layer
from muracli.models.spec import ModelSpec

CNN_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 256)


def _block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        # No conv bias: the BatchNorm right after it has its own.
        layers += [nn.Conv2d(c_in, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class VGGStyleBackbone(nn.Module):
    """Conv blocks + global average pooling: (B, C, H, W) -> (B, widths[-1])."""

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = CNN_WIDTHS):
        super().__init__()
        blocks = []
        for i, width in enumerate(widths):
            blocks.append(_block(in_channels if i == 0 else widths[i - 1], width, pool=i < len(widths) - 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def build_cnn(spec: ModelSpec, widths: Sequence[int] = CNN_WIDTHS) -> Classifier:
    """The ``cnn`` model for ``spec``, freshly initialised with ``spec.init``."""
    backbone = VGGStyleBackbone(spec.in_channels, widths)
    for module in backbone.modules():
        init_layer(module, spec.init)
    return Classifier(
        backbone,
        backbone.out_features,
        num_classes=spec.num_classes,
        dropout=spec.dropout,
        cam_layer_name=f"features.{len(widths) - 1}",
        init=spec.init,
    )
