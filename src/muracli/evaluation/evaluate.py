"""One evaluation run: checkpoint -> cache split -> probabilities -> report -> files.

``evaluate_run`` is what ``mura evaluate`` calls. It loads the model of a run
(or a checkpoint file, or the latest run), finds the data it was trained on
(or the data it is given), scores a split, and returns the metrics.json
report with the study and image tables; given ``out`` it also writes
``metrics.json``, ``predictions.csv``, ``image_predictions.csv``, ``roc.png``,
``confusion.png`` and ``reliability.png`` there. It never prints; notes for the user (e.g. a
cache made with another ``--fit``) come back in ``Evaluation.notes``.

The model's probabilities come from one function, ``score_split``: an image
model gives one probability per image, aggregated to studies here; a study
model (all views of a study at once) would give study probabilities directly.
That branch is the single place to extend when study models arrive.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli.choices import SPLITS, check_choice
from muracli.data.layout import parse_body_parts
from muracli.errors import ConfigError, DataError
from muracli.files import write_atomic
from muracli.progress import ProgressFn

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from muracli.runtime.checkpoint import LoadedModel
    from muracli.runtime.devices import Precision

#: The files ``write_outputs`` puts in the output folder, by role.
OUTPUT_FILES = {
    "metrics": "metrics.json",
    "predictions": "predictions.csv",
    "image_predictions": "image_predictions.csv",
    "roc": "roc.png",
    "confusion": "confusion.png",
    "reliability": "reliability.png",
}


@dataclass
class SplitScores:
    """What a model says about a split: one row per image (image models:
    path, study, body_part, label, view, probability) or, for a study model,
    one row per study (study, body_part, label, probability, n_images)."""

    images: "pd.DataFrame | None" = None
    studies: "pd.DataFrame | None" = None


@dataclass
class Evaluation:
    """The result of ``evaluate_run``.

    ``report`` is the content of metrics.json (and of ``mura evaluate
    --json``); ``studies`` the rows of predictions.csv; ``images`` the rows
    of image_predictions.csv (``None`` for a study model).
    """

    report: dict[str, Any]
    studies: "pd.DataFrame"
    images: "pd.DataFrame | None"
    checkpoint: Path
    model_name: str
    epoch: int | None
    cache_path: Path
    device: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def evaluate_run(
    target: Path | str | None = None, *,
    data: Path | str | None = None, manifest: Path | str | None = None, cache: Path | str | None = None,
    split: str = "valid", aggregate: str | None = None, threshold: float | None = None,
    bootstrap: int = 0, seed: int = 0, level: float = 0.95,
    device: str = "auto", amp: bool | None = None, batch_images: int = 256,
    out: Path | str | None = None, progress: ProgressFn | None = None, body_parts: list[str] | str | None = None,
    calibrate: str | None = None, calibrate_on: str | None = None, operating_point: str | None = None,
    save: bool = False,
) -> Evaluation:
    """Evaluate a run directory, a checkpoint file or (``target=None``) the latest run.

    ``aggregate`` and ``threshold`` default to the checkpoint's (its training config). ``cache`` wins
    over ``data`` (a MURA folder) or ``manifest`` (a CSV manifest); with none, the data the run was
    trained on is used when it is still there, else ``$MURA_DATA`` / ``./data`` - in every case the
    cache at the checkpoint's image size and fit is opened or built. ``device`` is ``auto``, ``cpu`` or
    ``cuda``; ``batch_images`` bounds the images per forward pass. ``bootstrap`` > 0 adds 95%
    (``level``) percentile intervals over studies, reproducible for a ``seed``. ``body_parts``
    restricts the split to those parts; it defaults to the run's own, else every body part.

    A calibration.json beside the checkpoint (``runtime.calibration``) is applied. ``calibrate=
    "temperature"`` fits a new one and ``operating_point`` (``youden``, ``sensitivity=S``,
    ``specificity=S``) chooses the study threshold, both on the split that chose the checkpoint
    (``evaluation.calibrate``; ``calibrate_on="valid"`` to use valid); ``save`` records it.
    """
    started = time.monotonic()
    from muracli.data.dataset import check_one_source
    from muracli.evaluation import calibrate as tuning

    check_one_source(data, manifest)
    _check_options(split=split, batch_images=batch_images, bootstrap=bootstrap, level=level, aggregate=aggregate,
                   threshold=threshold)
    tuning.check_tuning(calibrate=calibrate, calibrate_on=calibrate_on, operating_point=operating_point, save=save,
                        threshold=threshold)
    asked_parts = parse_body_parts(body_parts)

    from muracli.runtime.checkpoint import load_model
    from muracli.runtime.devices import choose_precision, select_device

    torch_device = select_device(device)
    loaded = load_model(target, torch_device)
    notes: list[str] = []
    tuning.prepare(loaded, aggregate=aggregate, notes=notes)
    aggregate, _ = _decision_rule(loaded, aggregate, threshold)
    trained_with = _training_config(loaded)
    body_parts = parse_body_parts(trained_with.get("body_parts")) if asked_parts is None else asked_parts

    opened, cache_split = _split_to_score(loaded, data=data, manifest=manifest, cache=cache, split=split,
                                          body_parts=body_parts, notes=notes, progress=progress)

    def score(part) -> SplitScores:
        return score_split(loaded, part, device=torch_device, precision=choose_precision(torch_device, amp),
                           batch_images=batch_images, progress=progress, log_odds=True)

    tuned = None
    if calibrate is not None or operating_point is not None:
        tuned = tuning.tune(loaded, opened, body_parts=body_parts, calibrate=calibrate, calibrate_on=calibrate_on,
                            operating_point=operating_point, save=save, aggregate=aggregate, score=score)
        notes.extend(tuned.notes)
    given, (_, threshold) = threshold is not None, _decision_rule(loaded, None, threshold)
    scores = calibrated_scores(score(cache_split), loaded.temperature)
    report, studies = _report(scores, split=split, aggregate=aggregate, threshold=threshold,
                              bootstrap=bootstrap, seed=seed, level=level)
    report["calibration"].update(_calibration_in_use(loaded, threshold_given=given,
                                                     tuned_on=None if tuned is None else tuned.split))
    if tuned is not None and tuned.operating_point is not None:
        report["operating_point"] = tuning.operating_point_report(tuned.operating_point, studies, split=split,
                                                                  bootstrap=bootstrap, seed=seed, level=level)
    report.update(_run_fields(loaded, opened, torch_device, trained_with, body_parts))
    evaluation = Evaluation(
        report=report, studies=studies, images=scores.images, checkpoint=loaded.path, model_name=loaded.model_name,
        epoch=_epoch_of(loaded), cache_path=opened.path, device=str(torch_device), seconds=0.0, notes=notes,
    )
    if out is not None:
        evaluation.files = write_outputs(evaluation, out)
    if tuned is not None and tuned.written is not None:
        evaluation.files["calibration"] = tuned.written
    evaluation.seconds = time.monotonic() - started
    return evaluation


def _run_fields(loaded: "LoadedModel", opened, device, trained_with: dict[str, Any], body_parts) -> dict[str, Any]:
    """What metrics.json says of the model, the cache and the device it was evaluated with."""
    return dict(
        checkpoint=os.path.abspath(loaded.path), model=loaded.model_name, study_model=loaded.study_model,
        epoch=_epoch_of(loaded), image_size=loaded.image_size, fit=loaded.fit, cache=os.path.abspath(opened.path),
        data_fingerprint=opened.fingerprint, device=str(device),
        selected_on=trained_with.get("select_on", "valid"), body_parts=body_parts,
    )


def calibrated_scores(scores: SplitScores, temperature: float) -> SplitScores:
    """``scores`` (with log-odds) with the probabilities of ``temperature`` and no log-odds column."""
    from muracli.evaluation.calibrate import calibrated_table

    return SplitScores(
        images=None if scores.images is None else calibrated_table(scores.images, temperature),
        studies=None if scores.studies is None else calibrated_table(scores.studies, temperature),
    )


def _calibration_in_use(loaded: "LoadedModel", *, threshold_given: bool, tuned_on: str | None) -> dict[str, Any]:
    """What metrics.json's ``calibration`` says was applied: the temperature, the threshold's
    source and the calibration.json behind them (None: none); ``tuned_on``: the split this
    evaluation fitted on, if it did."""
    record = loaded.calibration or {}
    fit = record.get("temperature_fit") or {}
    point = (record.get("operating_point") or {}) if record.get("threshold") is not None else {}
    on_valid = "valid" in (fit.get("split") if loaded.temperature != 1.0 else None, point.get("split"), tuned_on)
    return {
        "temperature": loaded.temperature,
        "temperature_fitted_on": fit.get("split") if loaded.temperature != 1.0 else None,
        "threshold_source": "--threshold" if threshold_given else loaded.threshold_source,
        "file": record.get("path"),
        "fitted_on_valid": bool(on_valid),
    }


def _split_to_score(loaded: "LoadedModel", *, data, manifest, cache, split: str, body_parts: list[str] | None,
                    notes: list[str], progress: ProgressFn | None):
    """The cache to evaluate on (``runtime.caches.locate_cache``) and its split, of ``body_parts`` only."""
    from muracli.runtime.caches import locate_cache

    opened = locate_cache(loaded, data=data, manifest=manifest, cache=cache, notes=notes, progress=progress,
                          body_parts=body_parts)
    cache_split = opened.split(split, body_parts)
    if len(cache_split.index) == 0:
        parts = f" of {', '.join(body_parts)}" if body_parts else ""
        raise DataError(
            f"the {split} split of the cache at {opened.path} has no images{parts}",
            "check the dataset with `mura stats`" + (" --body-part ..." if body_parts else ""),
        )
    return opened, cache_split


def _check_options(*, split: str, batch_images: int, bootstrap: int, level: float, aggregate: str | None,
                   threshold: float | None) -> None:
    """The cheap checks, before a model is loaded: a typo fails at once."""
    from muracli.metrics.aggregate import check_method
    from muracli.metrics.binary import check_threshold
    from muracli.metrics.bootstrap import check_bootstrap

    check_choice(split, SPLITS, "split")
    if batch_images < 1:
        raise ConfigError(f"--batch-images must be at least 1, got {batch_images}")
    if bootstrap:
        check_bootstrap(bootstrap, level)
    if aggregate is not None:
        check_method(aggregate)
    if threshold is not None:
        check_threshold(threshold)


def _decision_rule(loaded: "LoadedModel", aggregate: str | None, threshold: float | None) -> tuple[str, float]:
    """The aggregation and threshold to evaluate with: those asked for, else the checkpoint's own."""
    from muracli.metrics.aggregate import check_method
    from muracli.metrics.binary import check_threshold

    threshold = check_threshold(loaded.threshold if threshold is None else threshold)
    if loaded.study_model:
        if aggregate is not None:
            raise ConfigError(
                f"{loaded.path} holds a study model, which pools its views itself: --aggregate does not apply",
                "leave --aggregate out (or evaluate a per-image run to compare mean, max and vote)",
            )
        return loaded.aggregate, threshold
    return check_method(aggregate or loaded.aggregate), threshold


def score_split(
    loaded: "LoadedModel",
    split,
    *,
    device: "torch.device",
    precision: "Precision",
    batch_images: int = 256,
    progress: ProgressFn | None = None,
    log_odds: bool = False,
) -> SplitScores:
    """The model's probabilities of abnormality over a cached split, batched
    (at most ``batch_images`` images per forward pass) and under ``precision``;
    with ``log_odds``, their log-odds too (a ``log_odds`` column).

    Image models give ``SplitScores(images=...)``; a study model (the
    checkpoint's ``study_model`` field) gives ``SplitScores(studies=...)``,
    one probability per study straight from the model.
    """
    from muracli.runtime.inference import image_probabilities, study_probabilities

    options = dict(
        device=device, mean=loaded.mean, std=loaded.std, precision=precision, max_images=batch_images,
        channels_last=device.type == "cuda", progress=progress, task="evaluate", log_odds=log_odds,
    )
    if loaded.study_model:
        return SplitScores(studies=study_probabilities(loaded.model, split, **options))
    return SplitScores(images=image_probabilities(loaded.model, split, **options))


def _report(scores: SplitScores, *, split: str, aggregate: str, threshold: float, bootstrap: int, seed: int, level: float):
    from muracli.metrics.report import evaluation_report, study_predictions

    if scores.images is None:
        studies = scores.studies.assign(prediction=(scores.studies["probability"] >= threshold).astype(int))
        studies = studies[["study", "body_part", "label", "probability", "prediction", "n_images"]]
    else:
        studies = study_predictions(scores.images, aggregate, threshold)
    report = evaluation_report(
        scores.images, split=split, aggregate=aggregate, threshold=threshold,
        bootstrap=bootstrap, seed=seed, level=level, studies=studies,
    )
    return report, studies


def _training_config(loaded: "LoadedModel") -> dict[str, Any]:
    """The ``mura train`` options stored in the checkpoint ({} for a checkpoint without them)."""
    config = loaded.checkpoint.get("config")
    return config if isinstance(config, dict) else {}


def _epoch_of(loaded: "LoadedModel") -> int | None:
    epoch = loaded.checkpoint.get("epoch")
    return int(epoch) if isinstance(epoch, int) else None


# -- files ---------------------------------------------------------------------


def write_outputs(evaluation: Evaluation, out: Path | str) -> dict[str, Path]:
    """Write metrics.json, predictions.csv, image_predictions.csv, roc.png and
    confusion.png into ``out`` (created); returns their paths by role."""
    from muracli.metrics.plots import confusion_png, reliability_png, roc_curve_png

    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder {folder}: {exc.strerror or exc}", "pass another --out") from exc
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder", "pass a folder to --out")

    report = evaluation.report
    files = {role: folder / name for role, name in OUTPUT_FILES.items()}
    studies = evaluation.studies
    studies.to_csv(files["predictions"], index=False)
    if evaluation.images is not None:
        images = evaluation.images.copy()
        images["prediction"] = (images["probability"] >= report["threshold"]).astype("int64")
        images.to_csv(files["image_predictions"], index=False)
    else:  # a study model has no image table
        del files["image_predictions"]

    study_threshold = report["decision_threshold"]
    how = "study model" if report["aggregate"] == "study" else f"{report['aggregate']} of views"
    title = f"{report['split']} studies ({how}), n = {report['n_studies']}"
    roc_curve_png(studies["label"], studies["probability"], files["roc"], threshold=study_threshold, title=f"ROC: {title}")
    confusion_png(studies["label"], studies["prediction"], files["confusion"], title=f"Confusion: {title}")
    temperature = report["calibration"].get("temperature", 1.0)
    scaled = f", temperature {temperature:.3g}" if temperature != 1.0 else ""
    reliability_png(studies["label"], studies["probability"], files["reliability"],
                    title=f"Reliability: {report['split']} studies{scaled}")
    # metrics.json last: its presence says the folder is complete.
    write_atomic(files["metrics"], (json.dumps(report, indent=2, allow_nan=False) + "\n").encode())
    return {role: files[role] for role in OUTPUT_FILES if role in files}
