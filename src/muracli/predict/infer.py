"""Streaming, batched inference over studies: one ``StudyResult`` per study.

The pixels take exactly the path of ``mura preprocess`` + ``mura evaluate``:
``read_greyscale`` -> ``fit_square(image_size, fit)`` (uint8, as the cache
stores it) -> ``prepare_batch`` (normalised with the checkpoint's mean/std)
-> the model -> softmax[:, 1] (with a calibration.json, ``sigmoid(log-odds / T)``).
So a study predicted here gets the same image probabilities that ``evaluate``
computes from the cache.

Memory stays flat however large the tree: studies arrive from a generator,
images are decoded a batch at a time (``batch_images``), and a study's
result is yielded as soon as its last image has been through the model.
Only a batch's pixels (and, with Grad-CAM, the same images at original
size) are held at once.

Files that cannot be decoded are skipped and reported with their
``ImageReadError.reason``; a study left with no readable image gets an
``error`` instead of a probability and the others carry on.

The study probability combines the image probabilities with the
checkpoint's ``aggregate`` method under the rule of
``metrics.aggregate`` (mean / max / fraction of abnormal votes), and the
label compares it with ``decision_threshold(aggregate, threshold)``. A study
model (trained with ``--study-model``) instead pools the backbone features of
the study's views with its own pooling and head; its per-image probabilities
are each view scored as a one-view study.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from muracli.batches.augment import prepare_batch
from muracli.data.decode import read_greyscale
from muracli.data.fit import fit_square
from muracli.errors import ConfigError, ImageReadError
from muracli.machine import usable_cores
from muracli.metrics.aggregate import check_method, decision_threshold, study_probability
from muracli.metrics.calibration import scaled_probabilities
from muracli.models.classifier import abnormal_log_odds, abnormal_probability
from muracli.predict.cam import CamWriter
from muracli.predict.discover import Study
from muracli.models.multiview import pool_views
from muracli.progress import ProgressFn
from muracli.runtime.devices import Precision

if TYPE_CHECKING:
    from muracli.runtime.checkpoint import LoadedModel

DEFAULT_BATCH_IMAGES = 64
CAM_BATCH_IMAGES = 8


@dataclass
class ImageResult:
    """One image that went through the model."""

    path: str
    probability: float
    cam: str | None = None


@dataclass
class SkippedImage:
    """A file of a study that could not be used; ``reason`` is an ``ImageReadError`` reason."""

    path: str
    reason: str
    detail: str = ""


@dataclass
class StudyResult:
    """The prediction for one study; ``error`` is set (and ``probability`` None) when none of its images could be read.

    ``body_part``, ``study_uid`` and ``accession_number`` are the study's DICOM
    header values (``Study``), None / empty for other files.
    """

    study: str
    key: str
    images: list[ImageResult] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)
    probability: float | None = None
    prediction: int | None = None
    label: str | None = None
    error: str | None = None
    body_part: str | None = None
    study_uid: str = ""
    accession_number: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def n_images(self) -> int:
        return len(self.images)


def calibrated_probabilities(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """P(abnormal) per row of two-class logits, as float64: the softmax, or with a temperature
    (calibration.json) ``sigmoid(log-odds / T)`` - the same function ``mura evaluate`` applies."""
    if temperature == 1.0:
        return abnormal_probability(logits).cpu().numpy().astype(np.float64)
    return scaled_probabilities(abnormal_log_odds(logits).cpu().numpy().astype(np.float64), temperature)


def study_model_probability(loaded: "LoadedModel", features: torch.Tensor, flipped: torch.Tensor | None = None) -> float:
    """A study model's probability from its views' backbone features (V, D).

    In eval mode the backbone encodes each view on its own, so pooling the
    features collected image by image gives exactly ``model(views, mask)``.
    With TTA, the probabilities of the plain and the mirrored views average.
    """
    model = loaded.model
    outputs = []
    for views in (features, flipped):
        if views is None:
            continue
        mask = torch.ones(1, len(views), dtype=torch.bool, device=views.device)
        with torch.inference_mode():
            pooled = pool_views(views[None], mask, model.view_pool, model.attention)
            outputs.append(float(calibrated_probabilities(model.head(pooled), loaded.temperature)[0]))
    return float(np.mean(outputs))


def predict_studies(
    loaded: "LoadedModel",
    studies: Iterable[Study],
    *,
    batch_images: int = DEFAULT_BATCH_IMAGES,
    tta: bool = False,
    cam: CamWriter | None = None,
    precision: Precision | None = None,
    decode_threads: int | None = None,
    any_modality: bool = False,
    progress: ProgressFn | None = None,
) -> Iterator[StudyResult]:
    """Yield one ``StudyResult`` per study of ``studies``, in their order, as each completes.

    ``loaded`` comes from ``runtime.checkpoint.load_model`` (its model is
    already on the device to use). ``tta`` averages each image's
    probability with that of its mirror image (left-right flip); ``cam``
    writes a Grad-CAM overlay per image (of the unflipped image, for the
    abnormal class). ``precision`` defaults to plain fp32, which is what
    makes the probabilities equal ``mura evaluate``'s on the CPU.
    DICOM images of another modality than a radiograph's are skipped as
    ``not_a_radiograph`` unless ``any_modality``.
    ``progress("predict", studies_done, None, images=...)`` reports progress.
    """
    if batch_images < 1:
        raise ConfigError(f"--batch-images must be at least 1, got {batch_images}")
    if cam is not None and getattr(_image_model(loaded), "cam_layer", None) is None:
        raise ConfigError(
            f"{loaded.model_name} has no spatial feature map for Grad-CAM",
            "use a convolutional model (cnn, vgg16, densenet169, resnet*) for --cam, or leave --cam out",
        )
    if loaded.study_model:
        cut = loaded.threshold
    else:
        check_method(loaded.aggregate)
        cut = decision_threshold(loaded.aggregate, loaded.threshold)
    threads = decode_threads if decode_threads is not None else min(4, usable_cores())
    # Checks above run at call time; the stream below runs as the caller iterates.
    return _stream(loaded, studies, cut=cut, batch_images=batch_images, tta=tta, cam=cam,
                   precision=precision or Precision(None), threads=threads, any_modality=any_modality,
                   progress=progress)


def _stream(
    loaded: "LoadedModel",
    studies: Iterable[Study],
    *,
    cut: float,
    batch_images: int,
    tta: bool,
    cam: CamWriter | None,
    precision: Precision,
    threads: int,
    any_modality: bool,
    progress: ProgressFn | None,
) -> Iterator[StudyResult]:
    device = _model_device(loaded.model)
    open_studies: deque[_OpenStudy] = deque()
    jobs: list[_Job] = []
    done_studies = done_images = 0

    def finish_ready() -> Iterator[StudyResult]:
        nonlocal done_studies
        while open_studies and open_studies[0].remaining == 0:
            result = open_studies.popleft().finish(loaded, cut)
            done_studies += 1
            if progress is not None:
                progress("predict", done_studies, None, images=done_images)
            yield result

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="mura-decode") as pool:

        def run_jobs() -> None:
            nonlocal done_images
            _run_batch(jobs, loaded, pool, device=device, precision=precision, tta=tta, cam=cam,
                       any_modality=any_modality)
            done_images += len(jobs)
            jobs.clear()

        for study in studies:
            state = _OpenStudy(study)
            open_studies.append(state)
            for path in study.junk:
                state.result.skipped.append(SkippedImage(str(path), "junk", "macOS metadata file (._*), not an image"))
            for index, path in enumerate(study.images):
                jobs.append(_Job(state, index, path))
                if len(jobs) >= batch_images:
                    run_jobs()
                    yield from finish_ready()
            if not study.images:
                yield from finish_ready()
        if jobs:
            run_jobs()
        yield from finish_ready()


# ---------------------------------------------------------------------------


class _OpenStudy:
    """A study whose images are still going through the model."""

    def __init__(self, study: Study):
        self.study = study
        self.remaining = len(study.images)
        self.result = StudyResult(study=study.name, key=study.key, body_part=study.body_part,
                                  study_uid=study.study_uid, accession_number=study.accession_number)
        self._images: list[ImageResult | None] = [None] * len(study.images)
        self._skipped: list[SkippedImage | None] = [None] * len(study.images)
        # A study model's per-view backbone features (plain, mirrored): pooled at the end.
        self._features: list[tuple[torch.Tensor, torch.Tensor | None] | None] = [None] * len(study.images)

    def done(
        self,
        index: int,
        image: ImageResult | None = None,
        skipped: SkippedImage | None = None,
        features: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> None:
        self._images[index] = image
        self._skipped[index] = skipped
        self._features[index] = features
        self.remaining -= 1

    def finish(self, loaded: "LoadedModel", cut: float) -> StudyResult:
        result = self.result
        result.images = [r for r in self._images if r is not None]
        result.skipped = [s for s in self._skipped if s is not None] + result.skipped
        if not result.images:
            if result.skipped:
                reasons = ", ".join(f"{Path(s.path).name}: {s.reason}" for s in result.skipped[:5])
                more = f", +{len(result.skipped) - 5} more" if len(result.skipped) > 5 else ""
                result.error = f"no readable image ({reasons}{more})"
            else:
                result.error = "no images"
            return result
        if loaded.study_model:
            kept = [f for f in self._features if f is not None]
            plain = torch.stack([f[0] for f in kept])
            mirrored = torch.stack([f[1] for f in kept]) if kept[0][1] is not None else None
            result.probability = study_model_probability(loaded, plain, mirrored)
        else:
            probabilities = [r.probability for r in result.images]
            result.probability = study_probability(probabilities, loaded.aggregate, loaded.threshold)
        result.prediction = int(result.probability >= cut)
        names = loaded.class_names
        result.label = names[result.prediction] if result.prediction < len(names) else str(result.prediction)
        return result


@dataclass
class _Job:
    study: _OpenStudy
    index: int
    path: Path


def _decode(
    path: Path, size: int, fit: str, keep_original: bool, any_modality: bool
) -> tuple[np.ndarray, np.ndarray | None] | SkippedImage:
    try:
        image = read_greyscale(path, any_modality=any_modality)
        return fit_square(image, size, fit), (image if keep_original else None)
    except ImageReadError as exc:
        return SkippedImage(str(path), exc.reason, exc.message)
    except Exception as exc:  # a decoder bug must not stop the other studies: report it
        return SkippedImage(str(path), "unreadable", f"{type(exc).__name__}: {exc}")


def _run_batch(
    jobs: list[_Job],
    loaded: "LoadedModel",
    pool: ThreadPoolExecutor,
    *,
    device: torch.device,
    precision: Precision,
    tta: bool,
    cam: CamWriter | None,
    any_modality: bool,
) -> None:
    size, fit = loaded.image_size, loaded.fit
    decoded = list(pool.map(lambda job: _decode(job.path, size, fit, cam is not None, any_modality), jobs))
    ready = [(job, d) for job, d in zip(jobs, decoded) if not isinstance(d, SkippedImage)]
    for job, d in zip(jobs, decoded):
        if isinstance(d, SkippedImage):
            job.study.done(job.index, skipped=d)
    if not ready:
        return
    x = torch.from_numpy(np.stack([fitted for _, (fitted, _) in ready]))[:, None]
    batch = prepare_batch(x, device=device, mean=loaded.mean, std=loaded.std)
    image_model = _image_model(loaded)
    probabilities, features = _forward(image_model, batch, device, precision, loaded.temperature)
    mirrored_features = None
    if tta:
        mirrored, mirrored_features = _forward(image_model, batch.flip(-1), device, precision, loaded.temperature)
        probabilities = (probabilities + mirrored) / 2.0
    heat = None
    if cam is not None:
        from muracli.models.gradcam import grad_cam

        # Grad-CAM keeps every activation for the backward pass: a few images at a time
        # bound that memory (a 64-image DenseNet-169 batch at 320 px would need gigabytes).
        heat = np.concatenate(
            [grad_cam(image_model, part, target_class=1).float().cpu().numpy() for part in batch.split(CAM_BATCH_IMAGES)]
        )
    for i, (job, (_, original)) in enumerate(ready):
        probability = float(probabilities[i])
        cam_path = None
        if heat is not None and original is not None:
            cam_path = str(
                cam.write(
                    original, heat[i], fit=fit, study_key=job.study.study.key, image_path=job.path,
                    probability=probability,
                    metadata={"study": job.study.study.name, "model": loaded.model_name, "checkpoint": str(loaded.path)},
                )
            )
        view_features = None
        if loaded.study_model:
            view_features = (features[i], mirrored_features[i] if mirrored_features is not None else None)
        job.study.done(job.index, image=ImageResult(str(job.path), probability, cam_path), features=view_features)


def _image_model(loaded: "LoadedModel") -> torch.nn.Module:
    """The per-image network: the model itself, or a study model's views scored one at a time."""
    return loaded.model.as_image_model() if loaded.study_model else loaded.model


@torch.inference_mode()
def _forward(model: torch.nn.Module, batch: torch.Tensor, device: torch.device, precision: Precision,
             temperature: float = 1.0):
    """Image probabilities (numpy, under ``temperature``) and the backbone features behind them
    (kept for study models)."""
    with precision.autocast(device):
        features = model.backbone(batch)
        logits = model.head(features)
    return calibrated_probabilities(logits, temperature), features.float()


def _model_device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")

