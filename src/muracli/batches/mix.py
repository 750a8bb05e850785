"""Mixup and CutMix on a training batch, after augmentation, on the device the batch is on.

Each batch is mixed with a permutation of itself: mixup blends whole images
(``lam * x + (1 - lam) * x[perm]``), CutMix pastes a box of ``x[perm]`` into
``x`` (``lam``: the share of ``x`` left). With both on, each batch uses one of
the two, chosen at random (timm's ``switch_prob`` 0.5). The targets become
``MixedTargets``; the loss on them is ``lam * loss(a) + (1 - lam) * loss(b)``.

Every draw comes from one ``torch.Generator`` (on the CPU, saved in
``last.pt`` like the augmentation's), so the same seed mixes the same
batches. Beta draws take numpy's ``Generator.beta``, seeded from it: torch's
Beta distribution cannot take a generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MixedTargets:
    """The targets of a mixed batch: ``a`` (the batch's own), ``b`` (the permuted batch's) and ``lam``."""

    a: torch.Tensor
    b: torch.Tensor
    lam: float

    def __len__(self) -> int:
        return len(self.a)


class BatchMix:
    """Mixup (``mixup`` alpha) and/or CutMix (``cutmix`` alpha); both 0 leave batches untouched."""

    def __init__(self, mixup: float, cutmix: float, generator: torch.Generator):
        self.mixup = float(mixup)
        self.cutmix = float(cutmix)
        self.generator = generator

    @property
    def active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def __call__(self, images: torch.Tensor, targets: torch.Tensor):
        """``(images, targets)`` as they are when off, else the mixed images and ``MixedTargets``."""
        if not self.active or len(targets) < 2:
            return images, targets
        use_cutmix = self.cutmix > 0 and (self.mixup <= 0 or self._uniform(1).item() < 0.5)
        lam = self._beta(self.cutmix if use_cutmix else self.mixup)
        perm = torch.randperm(len(targets), generator=self.generator).to(images.device)
        if use_cutmix:
            images, lam = self._paste_box(images, perm, lam)
        else:
            images = images.mul(lam).add_(images[perm], alpha=1.0 - lam)
        return images, MixedTargets(targets, targets[perm.to(targets.device)], lam)

    def _uniform(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.generator)

    def _beta(self, alpha: float) -> float:
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return float(np.random.default_rng(seed).beta(alpha, alpha))

    def _paste_box(self, images: torch.Tensor, perm: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
        """Paste a box of ``1 - lam`` of the area (clipped at the edges) from the permuted batch;
        ``lam`` becomes the share of each image actually left."""
        height, width = images.shape[-2:]
        cut = float(np.sqrt(1.0 - lam))
        cy, cx = (self._uniform(2) * torch.tensor([height, width])).tolist()
        top, bottom = int(np.clip(cy - cut * height / 2, 0, height)), int(np.clip(cy + cut * height / 2, 0, height))
        left, right = int(np.clip(cx - cut * width / 2, 0, width)), int(np.clip(cx + cut * width / 2, 0, width))
        images = images.clone()
        images[..., top:bottom, left:right] = images[perm][..., top:bottom, left:right]
        return images, 1.0 - (bottom - top) * (right - left) / float(height * width)
