"""Models: the from-scratch ``cnn`` and any torchvision classifier behind one wrapper.

``ModelSpec`` describes a model; ``build_model(spec)`` returns a
:class:`Classifier` (``backbone`` -> features, ``head`` -> logits, ``cam_layer``
for Grad-CAM); ``grad_cam`` draws heat maps; ``available_models`` lists names.

Only ``ModelSpec`` is imported eagerly: the rest pulls in torch, so it loads on
first use and ``from muracli.models import ModelSpec`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from muracli.lazy import lazy_attributes
from muracli.models.spec import ModelSpec

if TYPE_CHECKING:
    from muracli.models.builder import available_models, build_model, read_state_dict
    from muracli.models.classifier import Classifier
    from muracli.models.cnn import CNN_WIDTHS
    from muracli.models.gradcam import grad_cam

__all__ = [
    "CNN_WIDTHS",
    "Classifier",
    "ModelSpec",
    "available_models",
    "build_model",
    "grad_cam",
    "read_state_dict",
]

_LAZY = {
    "Classifier": "muracli.models.classifier",
    "CNN_WIDTHS": "muracli.models.cnn",
    "available_models": "muracli.models.builder",
    "build_model": "muracli.models.builder",
    "read_state_dict": "muracli.models.builder",
    "grad_cam": "muracli.models.gradcam",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
