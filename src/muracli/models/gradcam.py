"""Grad-CAM heat maps (Selvaraju et al. 2017) for any :class:`Classifier`.

The map is the ReLU of the feature maps of ``model.cam_layer`` weighted by
the spatially averaged gradient of the target logit, upsampled to the input
size and scaled to [0, 1] per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from muracli.errors import ConfigError
from muracli.models.classifier import Classifier


def grad_cam(model: Classifier, x: torch.Tensor, target_class: int | Sequence[int] | torch.Tensor = 1) -> torch.Tensor:
    """Heat maps (B, H, W) in [0, 1] at the spatial size of ``x`` (B, C, H, W).

    ``target_class`` is one class for all images or one per image. The model
    runs in eval mode; its train/eval modes and ``requires_grad`` flags are left
    as they were, no hooks remain, and no parameter ``.grad`` is touched, so it
    is safe between training steps and with a frozen backbone.
    """
    layer = model.cam_layer
    if layer is None:
        name = model.spec.name if model.spec is not None else type(model.backbone).__name__
        raise ConfigError(f"{name} has no spatial feature map for Grad-CAM", "use a convolutional model for --cam")
    if x.dim() != 4:
        raise ConfigError(f"grad_cam expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")

    captured: dict[str, torch.Tensor] = {}

    def keep_activation(module, inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ConfigError(f"the Grad-CAM layer returns {shape}, not a (B, C, H, W) feature map")
        # A frozen backbone yields activations without a graph: make them a leaf that does.
        activation = output if output.requires_grad else output.detach().requires_grad_(True)
        captured["activation"] = activation
        # Hand a copy downstream so that in-place ops after the layer (DenseNet's
        # F.relu(inplace=True)) cannot modify the tensor we differentiate against.
        return activation.clone()

    modes = {module: module.training for module in model.modules()}
    handle = layer.register_forward_hook(keep_activation)
    try:
        model.eval()
        # Work even when called under no_grad or inference_mode (e.g. from predict).
        with torch.inference_mode(False), torch.enable_grad():
            images = x.clone() if x.is_inference() else x
            logits = model(images)
            activation = captured["activation"]
            targets = _targets(target_class, logits)
            score = logits.gather(1, targets[:, None]).sum()
            # autograd.grad, not backward(): parameters' .grad stay untouched.
            (gradient,) = torch.autograd.grad(score, activation)
        with torch.no_grad():
            weights = gradient.float().mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * activation.float()).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            flat = cam.flatten(1)
            low = flat.min(dim=1).values[:, None, None]
            span = flat.max(dim=1).values[:, None, None] - low
            # An all-zero map (no positive evidence) stays zero instead of dividing by 0.
            cam = torch.where(span > 0, (cam - low) / span.clamp_min(1e-12), torch.zeros_like(cam))
        return cam.clamp_(0.0, 1.0)
    finally:
        handle.remove()
        for module, training in modes.items():
            module.training = training


def _targets(target_class, logits: torch.Tensor) -> torch.Tensor:
    batch, classes = logits.shape
    targets = torch.as_tensor(target_class, dtype=torch.long, device=logits.device).reshape(-1)
    if targets.numel() == 1:
        targets = targets.expand(batch)
    if targets.numel() != batch:
        raise ConfigError(f"target_class has {targets.numel()} entries for a batch of {batch}")
    if bool(((targets < 0) | (targets >= classes)).any()):
        raise ConfigError(f"target_class must be in [0, {classes - 1}]")
    return targets
