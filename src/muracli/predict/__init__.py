"""Predict on new studies: find them, run the model, explain and report.

``discover_studies(paths)`` yields :class:`Study` objects (a folder that
directly holds images, or one image); ``predict_studies(loaded, studies)``
yields one :class:`StudyResult` per study, streaming in batches
(``predict_ensemble(members, studies)`` the same for several checkpoints);
:class:`CamWriter` writes Grad-CAM overlays at original size; ``output``
turns results into the JSON / CSV records whose field names are documented
in ``muracli.predict.output``.

Typical library use::

    from muracli.runtime.checkpoint import load_model
    from muracli.predict import discover_studies, predict_studies, study_record

    loaded = load_model("runs/cnn-20260101-120000")
    for result in predict_studies(loaded, discover_studies(["new_studies/"])):
        print(study_record(result))

Only the torch-free parts load eagerly; ``predict_studies`` and friends pull
in torch on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from muracli.lazy import lazy_attributes
from muracli.predict.discover import Study, check_paths, discover_studies
from muracli.predict.output import (
    CSV_COLUMNS,
    DISCLAIMER,
    ID_FIELDS,
    REPORT_FIELDS,
    STUDY_FIELDS,
    csv_columns,
    csv_row,
    prediction_report,
    report_header,
    sort_by_probability,
    study_record,
)

if TYPE_CHECKING:
    from muracli.predict.cam import CamWriter, heatmap_to_original, overlay
    from muracli.predict.ensemble import ensemble_header, predict_ensemble
    from muracli.predict.infer import (
        ImageResult,
        SkippedImage,
        StudyResult,
        predict_studies,
        study_model_probability,
        study_probability,
    )

__all__ = [
    "CSV_COLUMNS",
    "CamWriter",
    "DISCLAIMER",
    "ID_FIELDS",
    "ImageResult",
    "REPORT_FIELDS",
    "STUDY_FIELDS",
    "SkippedImage",
    "Study",
    "StudyResult",
    "check_paths",
    "csv_columns",
    "csv_row",
    "discover_studies",
    "ensemble_header",
    "heatmap_to_original",
    "overlay",
    "predict_ensemble",
    "predict_studies",
    "prediction_report",
    "report_header",
    "sort_by_probability",
    "study_model_probability",
    "study_probability",
    "study_record",
]

_LAZY = {
    "CamWriter": "muracli.predict.cam",
    "heatmap_to_original": "muracli.predict.cam",
    "overlay": "muracli.predict.cam",
    "ImageResult": "muracli.predict.infer",
    "SkippedImage": "muracli.predict.infer",
    "StudyResult": "muracli.predict.infer",
    "predict_studies": "muracli.predict.infer",
    "predict_ensemble": "muracli.predict.ensemble",
    "ensemble_header": "muracli.predict.ensemble",
    "study_model_probability": "muracli.predict.infer",
    "study_probability": "muracli.metrics.aggregate",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
