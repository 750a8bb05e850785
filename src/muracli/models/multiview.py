"""A study model: one shared backbone over every view, pooled, then one head.

The MURA baseline averages per-image probabilities, which ignores how the
views of a study relate. Here each view is encoded by the same backbone
(weight sharing), the per-view features are pooled over the study's real
views (mean, max, or a learned attention as in Ilse et al. 2018, "Attention-
based deep multiple instance learning") and a 2-way head predicts the study.

Batches are studies padded to the largest number of views, with a boolean
mask marking the real ones; padded views never reach the backbone (only the
real views are encoded, then scattered back), so padding cannot change the
output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from muracli.choices import VIEW_POOLS, check_choice
from muracli.models.classifier import Classifier


class AttentionPool(nn.Module):
    """Gated attention over views: weights sum to 1 over each study's real views."""

    def __init__(self, feature_dim: int, hidden: int = 128):
        super().__init__()
        self.value = nn.Linear(feature_dim, hidden)
        self.gate = nn.Linear(feature_dim, hidden)
        self.score = nn.Linear(hidden, 1)
        for layer in (self.value, self.gate, self.score):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def weights(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, V, D) features and (B, V) mask -> (B, V) weights, 0 on padding."""
        scores = self.score(torch.tanh(self.value(features)) * torch.sigmoid(self.gate(features))).squeeze(-1)
        scores = scores.float().masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = self.weights(features, mask)
        return torch.einsum("bv,bvd->bd", w.to(features.dtype), features)


def pool_views(features: torch.Tensor, mask: torch.Tensor, method: str, attention: AttentionPool | None = None) -> torch.Tensor:
    """Pool (B, V, D) view features over the real views given by the (B, V) mask."""
    if method == "mean":
        weights = mask.to(features.dtype)
        return (features * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True).clamp_min(1)
    if method == "max":
        return features.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    if method == "attention":
        return attention(features, mask)
    check_choice(method, VIEW_POOLS, "view pool")
    raise AssertionError(f"view pool {method!r} is listed but not implemented")


class StudyClassifier(nn.Module):
    """``head(pool(backbone(view) for view in study))``.

    ``forward(x, mask)``: x is (B, V, C, H, W) (padded), mask (B, V) bool;
    returns study logits (B, num_classes). ``as_image_model()`` is the same
    network applied to one view as a one-view study, for Grad-CAM per view:
    every pool of a single view is that view's features.
    """

    def __init__(self, image_model: Classifier, view_pool: str = "mean"):
        super().__init__()
        check_choice(view_pool, VIEW_POOLS, "view pool")
        self.backbone = image_model.backbone
        self.head = image_model.head
        self.feature_dim = image_model.feature_dim
        self.num_classes = image_model.num_classes
        self.cam_layer_name = image_model.cam_layer_name
        self.view_pool = view_pool
        self.attention = AttentionPool(self.feature_dim) if view_pool == "attention" else None
        self.frozen_backbone = image_model.frozen_backbone
        self.spec = image_model.spec

    def train(self, mode: bool = True) -> "StudyClassifier":
        super().train(mode)
        if mode and self.frozen_backbone:
            self.backbone.eval()
        return self

    def view_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, V, C, H, W) -> (B, V, D), encoding only the real views."""
        b, v = mask.shape
        real = self.backbone(x[mask])
        features = real.new_zeros(b, v, real.shape[-1])
        features[mask] = real
        return features

    def pooled(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return pool_views(self.view_features(x, mask), mask, self.view_pool, self.attention)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x, mask))

    def view_weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """How much each view counts in the study's features: attention weights,
        1/n for mean; for max, the share of feature dimensions a view wins."""
        features = self.view_features(x, mask)
        if self.view_pool == "attention":
            return self.attention.weights(features, mask)
        if self.view_pool == "mean":
            w = mask.float()
            return w / w.sum(1, keepdim=True).clamp_min(1)
        winners = features.masked_fill(~mask.unsqueeze(-1), float("-inf")).argmax(1)  # (B, D)
        counts = F.one_hot(winners, mask.shape[1]).sum(1).float()
        return counts / counts.sum(1, keepdim=True)

    def as_image_model(self) -> Classifier:
        """A Classifier sharing this model's weights that scores one view alone."""
        model = Classifier.__new__(Classifier)
        nn.Module.__init__(model)
        model.backbone = self.backbone
        model.head = self.head
        model.feature_dim = self.feature_dim
        model.num_classes = self.num_classes
        model.cam_layer_name = self.cam_layer_name
        model.frozen_backbone = False
        model.spec = self.spec
        model.weights_source = None
        model.train(self.training)
        return model


def build_study_model(image_model: Classifier, view_pool: str = "mean") -> StudyClassifier:
    return StudyClassifier(image_model, view_pool)
