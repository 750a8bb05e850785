"""Checkpoints: written atomically, loaded without executing code.

A checkpoint is a plain dict of tensors and JSON-like values, saved with
``torch.save`` to a temporary file in the same folder and renamed into
place, so a crash or a kill mid-write leaves the previous file intact. It is
read back with ``torch.load(weights_only=True)``, whose unpickler refuses
anything but tensors and plain containers: a checkpoint from a stranger
cannot run code.
"""

from __future__ import annotations

import dataclasses
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from muracli.errors import CheckpointError
from muracli.files import atomic_output

FORMAT = "mura-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model", "state_dict", "image_size", "mean", "std")


def save_checkpoint(payload: dict[str, Any], path: Path | str) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    with atomic_output(path) as handle:
        torch.save(payload, handle)
    return path


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a mura checkpoint; every failure is a ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist", "pass a run directory or a .pt file written by `mura train`")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty", "it was probably cut off while being copied; use best.pt or last.pt of a finished run")
    try:
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4": noise for a file we refuse or accept anyway
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain data",
            "only checkpoints written by `mura train` are loaded; a pickle with code could run it",
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({_first_line(exc)})",
            "re-copy the file, or use the run's other checkpoint (best.pt / last.pt)",
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a mura checkpoint",
            "for torchvision ImageNet weights use `mura train --weights FILE`",
        )
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this mura reads version {FORMAT_VERSION}",
            "use the mura version that wrote it, or retrain",
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}", "it was not written by `mura train`")
    return payload


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, in eval mode, plus how to feed it."""

    model: torch.nn.Module
    path: Path
    image_size: int
    fit: str
    mean: float
    std: float
    aggregate: str
    threshold: float
    class_names: list[str]
    model_name: str
    study_model: dict[str, Any] | None
    checkpoint: dict[str, Any]
    #: Divides the abnormal log-odds before the softmax (``runtime.calibration``); 1: none.
    temperature: float = 1.0
    #: The calibration.json applied (``runtime.calibration.apply_calibration``), else None.
    calibration: dict[str, Any] | None = None
    #: Where ``threshold`` comes from: ``checkpoint`` or ``calibration.json``.
    threshold_source: str = "checkpoint"


def resolve_checkpoint(target: Path | str | None = None) -> Path:
    """A checkpoint file from ``target``: a .pt file, a run directory (its best.pt,
    else last.pt) or nothing (the latest run)."""
    if target is None:
        from muracli.runtime.rundir import latest_run

        run = latest_run()
        if run is None:
            raise CheckpointError(
                "no run given and no earlier run found",
                "train one first (e.g. `mura train --model cnn --image-size 64 --epochs 3 --cpu`), or pass RUN_DIR or --checkpoint FILE",
            )
        target = run
    path = Path(target)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds no best.pt or last.pt", "pass a run directory written by `mura train`, or a .pt file")
    if not path.exists():
        raise CheckpointError(f"{path} does not exist", "pass a run directory written by `mura train`, or a .pt file")
    return path


def load_model(target: Path | str | None = None, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model stored in a checkpoint (see ``resolve_checkpoint``) for inference."""
    path = resolve_checkpoint(target)
    checkpoint = load_checkpoint(path)
    model = rebuild_model(checkpoint, path)
    model.to(device).eval()
    study = checkpoint.get("study_model")
    from muracli.models import ModelSpec

    return LoadedModel(
        model=model,
        path=path,
        image_size=int(checkpoint["image_size"]),
        fit=str(checkpoint.get("fit", "pad")),
        mean=float(checkpoint["mean"]),
        std=float(checkpoint["std"]),
        # A study model pools its views itself: "study" stands for that in reports.
        aggregate="study" if study else str(checkpoint.get("aggregate", "mean")),
        threshold=float(checkpoint.get("threshold", 0.5)),
        class_names=list(checkpoint.get("class_names", ["normal", "abnormal"])),
        model_name=ModelSpec.from_dict(checkpoint["model"]).name,
        study_model=study or None,
        checkpoint=checkpoint,
    )


def rebuild_model(checkpoint: dict[str, Any], path: Path | str) -> torch.nn.Module:
    """The model a loaded checkpoint (from ``path``) holds, with its weights, on the CPU."""
    from muracli.errors import ConfigError
    from muracli.models import ModelSpec, build_model

    try:
        spec = ModelSpec.from_dict(checkpoint["model"])
        spec = dataclasses.replace(spec, pretrained=False, weights=None, freeze_backbone=False)
        study = checkpoint.get("study_model")
        model = build_model(spec) if not study else _build_study_model(spec, study)
        model.load_state_dict(checkpoint["state_dict"])
    except (ConfigError, KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"cannot rebuild the model in {path}: {_first_line(exc)}",
            "the checkpoint may come from another mura version",
        ) from exc
    return model


def _build_study_model(spec, study: dict[str, Any]):
    from muracli.models import build_model
    from muracli.models.multiview import build_study_model

    return build_study_model(build_model(spec), str(study.get("view_pool", "mean")))
