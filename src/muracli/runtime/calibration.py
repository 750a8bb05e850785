"""calibration.json: the temperature and the operating point fitted for one checkpoint.

``mura evaluate --calibrate temperature`` (and ``--operating-point ... --save``)
write it beside the checkpoint; ``mura evaluate`` and ``mura predict`` apply it
(``apply_calibration``) when it is there, and deleting it returns to the
checkpoint's own behaviour. The checkpoint is never rewritten. The file names
the checkpoint it was fitted for and that file's SHA-256, so a calibration
left beside a retrained or replaced ``best.pt`` is recognised as stale and
not applied. Its fields::

    {
      "format": "mura-calibration", "version": 1,
      "checkpoint": "best.pt", "checkpoint_sha256": "…",
      "temperature": 1.42,            # divides the image log-odds; null: none fitted
      "temperature_fit": {"split": "select", "level": "image", "n": 412, "nll_before": 0.61,
                          "nll_after": 0.55, "method": "…", "at_bound": false, "when": "…"},
      "threshold": 0.31,              # the study decision threshold; null: the checkpoint's
      "operating_point": {"rule": "sensitivity=0.95", "split": "select", "n_studies": 120,
                          "aggregate": "mean", "sensitivity": 0.95, "specificity": 0.7, "when": "…"}
    }

``split`` is ``select`` (the run's held-out part of train, which chose the
checkpoint) or ``valid`` (only when asked: then valid's numbers are optimistic).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli.errors import CheckpointError
from muracli.files import write_atomic

if TYPE_CHECKING:
    from muracli.runtime.checkpoint import LoadedModel

FILE_NAME = "calibration.json"
FORMAT = "mura-calibration"
VERSION = 1


def calibration_path(checkpoint: Path | str) -> Path:
    """Where the calibration of ``checkpoint`` lives: calibration.json in its folder."""
    return Path(checkpoint).parent / FILE_NAME


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def now() -> str:
    """The time stamp of calibration.json's ``when`` fields (UTC, ISO 8601)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def new_calibration(checkpoint: Path | str) -> dict[str, Any]:
    """An empty calibration of ``checkpoint``: no temperature, no threshold."""
    checkpoint = Path(checkpoint)
    return {
        "format": FORMAT, "version": VERSION, "checkpoint": checkpoint.name,
        "checkpoint_sha256": file_sha256(checkpoint),
        "temperature": None, "temperature_fit": None, "threshold": None, "operating_point": None,
    }


def read_calibration(checkpoint: Path | str) -> tuple[dict[str, Any] | None, str | None]:
    """The calibration.json that applies to ``checkpoint`` (else None) and a note when one
    is there but does not apply (fitted for another checkpoint file, or a stale one)."""
    checkpoint = Path(checkpoint)
    path = calibration_path(checkpoint)
    if not path.is_file():
        return None, None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}",
                              "delete it to use the checkpoint's own behaviour, or refit it with "
                              "`mura evaluate RUN --calibrate temperature`") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a mura calibration file", "delete it, or refit it with --calibrate")
    if record.get("checkpoint") != checkpoint.name:
        return None, f"{path} calibrates {record.get('checkpoint')}, not {checkpoint.name}: not applied"
    if record.get("checkpoint_sha256") != file_sha256(checkpoint):
        return None, (f"{path} was fitted for an earlier {checkpoint.name} (its hash differs): not applied; "
                      "refit it with `mura evaluate RUN --calibrate temperature`")
    return record, None


def write_calibration(checkpoint: Path | str, record: dict[str, Any]) -> Path:
    path = calibration_path(checkpoint)
    record = {key: value for key, value in record.items() if key != "path"}
    write_atomic(path, (json.dumps(record, indent=2, allow_nan=False) + "\n").encode())
    return path


def apply_calibration(loaded: "LoadedModel") -> list[str]:
    """Set ``loaded``'s temperature and threshold from its calibration.json, when one applies;
    returns warnings for the user (why one was not applied, or only in part). ``describe(loaded.calibration)``
    says what was applied."""
    record, note = read_calibration(loaded.path)
    if record is None:
        return [note] if note else []
    notes: list[str] = []
    loaded.calibration = {**record, "path": str(calibration_path(loaded.path))}
    if record.get("temperature") is not None:
        loaded.temperature = float(record["temperature"])
    point = record.get("operating_point") or {}
    if record.get("threshold") is not None:
        if point.get("aggregate", loaded.aggregate) != loaded.aggregate:
            notes.append(f"calibration.json's threshold was chosen for {point.get('aggregate')} aggregation, "
                         f"not {loaded.aggregate}: the checkpoint's threshold is used")
        else:
            loaded.threshold = float(record["threshold"])
            loaded.threshold_source = FILE_NAME
    return notes


def describe(record: dict[str, Any]) -> str:
    """One line: what a calibration.json holds and where it was fitted."""
    parts = []
    fit = record.get("temperature_fit") or {}
    if record.get("temperature") is not None:
        parts.append(f"temperature {record['temperature']:.3g} (fitted on {_split_words(fit.get('split'))}, "
                     f"n = {fit.get('n')})")
    point = record.get("operating_point") or {}
    if record.get("threshold") is not None:
        parts.append(f"threshold {record['threshold']:.4g} ({point.get('rule')} on "
                     f"{_split_words(point.get('split'))})")
    return f"{record.get('path', FILE_NAME)}: " + (", ".join(parts) or "nothing")


def _split_words(split: str | None) -> str:
    if split == "valid":
        return "valid, so valid's numbers are optimistic"
    return "select, the held-out part of train" if split == "select" else str(split)
