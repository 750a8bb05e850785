"""``mura predict --checkpoint A --checkpoint B ...``: an ensemble's predictions on new studies.

Each member predicts every study on its own (``infer.predict_studies``:
each decodes the files and resizes them its own way, at its image size and
fit, with TTA when asked); the ensemble's image probabilities are the mean
of the members', image by image (``metrics.ensemble.mean_probabilities``,
aligned by path), and its study probability and label follow the first
member's aggregation and threshold. The members run one after the other
over the study list, so the list is held (paths and small records, never
pixels) until the last member is done.

Grad-CAM explains one model's decision, not a mean of several: with more
than one member ``--cam`` is refused (run it with one ``--checkpoint``).
Study models (which pool views themselves) cannot be averaged image by
image and are refused too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from muracli.errors import ConfigError
from muracli.metrics.aggregate import decision_threshold, study_probability
from muracli.predict.infer import ImageResult, StudyResult, predict_studies
from muracli.predict.output import calibration_fields, member_header
from muracli.progress import ProgressFn

if TYPE_CHECKING:
    from muracli.predict.discover import Study
    from muracli.runtime.checkpoint import LoadedModel


def predict_ensemble(
    members: list[LoadedModel],
    studies: Iterable[Study],
    *,
    progress: ProgressFn | None = None,
    **options: Any,
) -> Iterator[StudyResult]:
    """One ``StudyResult`` per study, in order: of the one member's ``predict_studies``, or of the
    ensemble of several. ``options`` are ``predict_studies``'s (batch_images, tta, cam, precision,
    any_modality); ``cam`` must be None with several members."""
    if not members:
        raise ConfigError("an ensemble needs at least one checkpoint")
    if len(members) == 1:
        return predict_studies(members[0], studies, progress=progress, **options)
    refuse_cam(len(members), options.get("cam"))
    for member in members:
        if member.study_model:
            raise ConfigError(
                f"{member.path} holds a study model (it scores whole studies); an ensemble averages image probabilities",
                "ensemble per-image runs, or predict with the study model on its own",
            )
    studies = list(studies)
    names = [str(member.path) for member in members]
    results = []
    for i, member in enumerate(members):
        task = f"predict, member {i + 1}/{len(members)}"
        member_progress = None if progress is None else (lambda _task, *a, _name=task, **k: progress(_name, *a, **k))
        results.append(list(predict_studies(member, studies, progress=member_progress, **options)))
    first = members[0]
    return (_combine(per_study, first, names) for per_study in zip(*results))


def refuse_cam(n_members: int, cam: object | None) -> None:
    """``ConfigError`` for Grad-CAM with more than one member: it explains one model's decision."""
    if cam is not None and n_members > 1:
        raise ConfigError(
            f"--cam explains one model, and {n_members} checkpoints were given",
            "run --cam with one --checkpoint (e.g. the ensemble's first member)",
        )


def _combine(results: tuple[StudyResult, ...], first: LoadedModel, names: list[str]) -> StudyResult:
    """One study's ensemble result from each member's: the image probabilities averaged by path,
    the study probability and label by the first member's rule."""
    import pandas as pd

    from muracli.metrics.ensemble import mean_probabilities

    lead = results[0]
    combined = StudyResult(study=lead.study, key=lead.key, skipped=lead.skipped, error=lead.error,
                           body_part=lead.body_part, study_uid=lead.study_uid, accession_number=lead.accession_number)
    if not lead.ok:
        return combined
    tables = [pd.DataFrame({"path": [i.path for i in r.images], "probability": [i.probability for i in r.images]})
              for r in results]
    images = mean_probabilities(tables, on=("path",), names=names)
    combined.images = [ImageResult(path, float(p)) for path, p in zip(images["path"], images["probability"])]
    combined.probability = study_probability(images["probability"].to_numpy(), first.aggregate, first.threshold)
    combined.prediction = int(combined.probability >= decision_threshold(first.aggregate, first.threshold))
    classes = first.class_names
    combined.label = classes[combined.prediction] if combined.prediction < len(classes) else str(combined.prediction)
    return combined


def ensemble_header(members: list[LoadedModel], *, tta: bool = False) -> dict[str, Any]:
    """The run-level fields of the predict JSON for several members: ``model`` "ensemble", no one
    checkpoint, image size or fit (each member has its own, in ``members``), the first member's rule."""
    first = members[0]
    return {
        "checkpoint": None,
        "model": "ensemble",
        "image_size": None,
        "fit": None,
        "aggregate": first.aggregate,
        "threshold": first.threshold,
        "decision_threshold": decision_threshold(first.aggregate, first.threshold),
        **calibration_fields(first),
        "class_names": list(first.class_names),
        "tta": bool(tta),
        "members": [member_header(member) for member in members],
    }
