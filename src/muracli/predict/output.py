"""What ``mura predict`` reports, as plain records with stable field names.

JSON (``mura predict --json``) is one object::

    {
      "checkpoint": "runs/cnn-.../best.pt",   # the checkpoint file used
      "model": "cnn",                          # architecture
      "image_size": 320,                       # model input, pixels
      "fit": "pad",                            # how images were made square: pad | stretch | crop
      "aggregate": "mean",                     # image -> study probability: mean | max | vote
      "threshold": 0.5,                        # the checkpoint's threshold
      "decision_threshold": 0.5,               # what a study probability is compared with
                                               #   (the threshold; 0.5, a fraction of views, for vote)
      "threshold_source": "checkpoint",        # checkpoint | calibration.json (mura evaluate --save)
      "temperature": 1.0,                      # divides the image log-odds (calibration.json); 1: none
      "calibration": null,                     # the calibration.json applied: {"file", "temperature_fit",
                                               #   "operating_point"}, else null
      "class_names": ["normal", "abnormal"],   # label of prediction 0 and 1
      "tta": false,                            # flip test-time augmentation used
      "members": [{"checkpoint": ..., "model": "cnn", "image_size": 320, "fit": "pad",
                   "aggregate": "mean", "threshold": 0.5}],
                                               # the checkpoints used: one, or an ensemble's members
                                               #   (then "checkpoint", "image_size" and "fit" above are
                                               #   null, "model" is "ensemble")
      "n_studies": 3, "n_predicted": 2, "n_failed": 1,
      "studies": [                             # discovery order, or highest probability first (--sort)
        {
          "study": "data/valid/XR_WRIST/patient11185/study1_positive",  # folder (or image) as given
          "body_part": "XR_WRIST",             # the XR_* part of the path, else the DICOM body part
                                               #   (BodyPartExamined / StudyDescription: XR_* or as
                                               #   written, e.g. "CSPINE"), else "unknown"
          "probability": 0.87,                 # of abnormality; null when "error" is set
          "prediction": 1,                     # 0 / 1; null when "error" is set
          "label": "abnormal",                 # class_names[prediction]; null when "error" is set
          "n_images": 2,                       # images that went through the model
          "images": [{"path": ".../image1.png", "probability": 0.91, "cam": null}, ...],
                                               # "cam": the overlay PNG with --cam, else null
          "skipped": [{"path": ".../image3.png", "reason": "truncated", "detail": "..."}],
                                               # reason: empty | truncated | not_an_image |
                                               #   not_a_radiograph | junk | too_large | unsupported |
                                               #   missing | unreadable
          "error": null,                       # why the study has no prediction, else null
          "study_uid": "1.2.840...",           # only with --with-ids: StudyInstanceUID ("" if none)
          "accession_number": "A123"           # only with --with-ids: AccessionNumber ("" if none)
        }
      ],
      "disclaimer": "..."                      # not a medical device
    }

Every key is always present (``null`` when it does not apply), so scripts
can index without checks; ``study_uid`` and ``accession_number`` are there
exactly when ``--with-ids`` is given (empty strings for non-DICOM studies).
No other identifier from the files is written, and no patient tag ever.

CSV (``mura predict --csv FILE``): one row per study with the columns
``CSV_COLUMNS``: study, body_part, probability, prediction, label, n_images,
skipped (the number of files skipped), error (empty when predicted), and
with ``--with-ids`` also study_uid and accession_number (``ID_FIELDS``). The
file holds data only; the disclaimer goes to stderr.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from muracli.metrics.aggregate import UNKNOWN_BODY_PART, body_part_of, decision_threshold

if TYPE_CHECKING:
    from muracli.predict.infer import StudyResult
    from muracli.runtime.checkpoint import LoadedModel

DISCLAIMER = (
    "Research software, not a medical device: do not use these predictions to diagnose or treat anyone."
)

REPORT_FIELDS = (
    "checkpoint", "model", "image_size", "fit", "aggregate", "threshold", "decision_threshold",
    "threshold_source", "temperature", "calibration", "class_names", "tta", "members", "n_studies", "n_predicted",
    "n_failed", "studies", "disclaimer",
)
STUDY_FIELDS = ("study", "body_part", "probability", "prediction", "label", "n_images", "images", "skipped", "error")
IMAGE_FIELDS = ("path", "probability", "cam")
SKIPPED_FIELDS = ("path", "reason", "detail")
CSV_COLUMNS = ("study", "body_part", "probability", "prediction", "label", "n_images", "skipped", "error")
#: Added to each study's record and CSV row by ``--with-ids``, to link back to the PACS.
ID_FIELDS = ("study_uid", "accession_number")


def study_record(result: "StudyResult", *, with_ids: bool = False) -> dict[str, Any]:
    """The JSON record of one study (``STUDY_FIELDS``, then ``ID_FIELDS`` when ``with_ids``)."""
    from_path = body_part_of(result.study)
    record = {
        "study": result.study,
        "body_part": from_path if from_path != UNKNOWN_BODY_PART else (result.body_part or UNKNOWN_BODY_PART),
        "probability": result.probability,
        "prediction": result.prediction,
        "label": result.label,
        "n_images": result.n_images,
        "images": [{"path": i.path, "probability": i.probability, "cam": i.cam} for i in result.images],
        "skipped": [{"path": s.path, "reason": s.reason, "detail": s.detail} for s in result.skipped],
        "error": result.error,
    }
    if with_ids:
        record.update(study_uid=result.study_uid, accession_number=result.accession_number)
    return record


def report_header(loaded: "LoadedModel", *, tta: bool = False) -> dict[str, Any]:
    """The run-level fields of the JSON report (everything but the studies and counts)."""
    return {
        **member_header(loaded),
        "decision_threshold": loaded.threshold if loaded.study_model else decision_threshold(loaded.aggregate, loaded.threshold),
        **calibration_fields(loaded),
        "class_names": list(loaded.class_names),
        "tta": bool(tta),
        "members": [member_header(loaded)],
    }


def calibration_fields(loaded: "LoadedModel") -> dict[str, Any]:
    """Where the threshold came from, the temperature, and the calibration.json applied (else None)."""
    calibration = loaded.calibration
    return {
        "threshold_source": loaded.threshold_source,
        "temperature": loaded.temperature,
        "calibration": None if calibration is None else {
            "file": calibration.get("path"), "temperature_fit": calibration.get("temperature_fit"),
            "operating_point": calibration.get("operating_point") if calibration.get("threshold") is not None else None,
        },
    }


def member_header(loaded: "LoadedModel") -> dict[str, Any]:
    """One checkpoint of the JSON report's ``members``: what it is and how it reads images and decides."""
    return {
        "checkpoint": str(loaded.path),
        "model": loaded.model_name,
        "image_size": loaded.image_size,
        "fit": loaded.fit,
        "aggregate": loaded.aggregate,
        "threshold": loaded.threshold,
    }


def prediction_report(header: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole JSON object (``REPORT_FIELDS``) from ``report_header`` and study records."""
    failed = sum(1 for r in records if r["error"] is not None)
    report = {
        **header,
        "n_studies": len(records),
        "n_predicted": len(records) - failed,
        "n_failed": failed,
        "studies": records,
        "disclaimer": DISCLAIMER,
    }
    return {key: report[key] for key in REPORT_FIELDS}


def csv_columns(*, with_ids: bool = False) -> tuple[str, ...]:
    """The CSV header: ``CSV_COLUMNS``, plus ``ID_FIELDS`` with ``--with-ids``."""
    return CSV_COLUMNS + (ID_FIELDS if with_ids else ())


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """One CSV row (``CSV_COLUMNS``, and ``ID_FIELDS`` when the record has them); missing values are empty cells."""
    ids = {key: record[key] for key in ID_FIELDS if key in record}
    return {
        "study": record["study"],
        "body_part": record["body_part"],
        "probability": "" if record["probability"] is None else repr(float(record["probability"])),
        "prediction": "" if record["prediction"] is None else int(record["prediction"]),
        "label": record["label"] or "",
        "n_images": record["n_images"],
        "skipped": len(record["skipped"]),
        "error": record["error"] or "",
        **ids,
    }


def sort_by_probability(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Highest probability first (a triage worklist); studies without one last; ties keep their order."""
    return sorted(records, key=lambda r: (r["probability"] is None, -(r["probability"] or 0.0)))
