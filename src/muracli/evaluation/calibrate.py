"""Calibration and operating points of a run, fitted where the report does not look.

``mura evaluate RUN --calibrate temperature`` fits one temperature, and
``--operating-point RULE`` chooses the study threshold, on the split that chose
the checkpoint: the run's selection split (``mura train --select-on
train:FRACTION``, the studies its selection.csv lists), never valid unless
asked (``--calibrate-on valid``), so the valid numbers stay honest.

The temperature divides each image's log-odds (``z1 - z0``) *before* the views
are aggregated to a study: it is a property of the image model, fitted where
the model's softmax is (the image NLL, each image with its study's label), and
every aggregation (mean, max, vote) then combines calibrated image
probabilities. The image ranking (image AUC) never changes; max aggregation
keeps the study ranking too; mean aggregation of views can reorder studies
whose views disagree, a little. A study model's temperature divides its study
log-odds.

The metrics themselves are pure functions in ``metrics.calibration``; the file
is ``runtime.calibration``. This module scores the choosing split and puts
them together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli.choices import CALIBRATION_SPLITS, CALIBRATIONS, check_choice
from muracli.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from muracli.runtime.checkpoint import LoadedModel


@dataclass
class Tuning:
    """What ``tune`` fitted: the ``split`` it used (``select`` or ``valid``), the fitted
    temperature's record, the chosen operating point and the calibration.json written, if any."""

    split: str
    temperature_fit: dict[str, Any] | None = None
    operating_point: dict[str, Any] | None = None
    written: Path | None = None
    notes: list[str] = field(default_factory=list)


def check_tuning(*, calibrate: str | None, calibrate_on: str | None, operating_point: str | None, save: bool,
                 threshold: float | None) -> None:
    """The cheap checks of the calibration options, before a model is loaded."""
    from muracli.metrics.calibration import parse_operating_point

    if calibrate is not None:
        check_choice(calibrate, CALIBRATIONS, "calibration")
    if calibrate_on is not None:
        check_choice(calibrate_on, CALIBRATION_SPLITS, "--calibrate-on split")
        if calibrate is None and operating_point is None:
            raise ConfigError("--calibrate-on says where to fit --calibrate or --operating-point; neither is given",
                              "add --calibrate temperature or --operating-point youden")
    if operating_point is not None:
        parse_operating_point(operating_point)
        if threshold is not None:
            raise ConfigError("--threshold and --operating-point both set the threshold", "pass one of them")
    if save and operating_point is None:
        raise ConfigError("--save records the threshold of --operating-point, which is not given",
                          "add --operating-point youden|sensitivity=S|specificity=S")


def prepare(loaded: "LoadedModel", *, aggregate: str | None, notes: list[str]) -> None:
    """Apply the checkpoint's calibration.json (its temperature and threshold), noting it;
    a saved threshold chosen for another aggregation than ``aggregate`` is not used."""
    from muracli.runtime.calibration import apply_calibration

    notes.extend(apply_calibration(loaded))
    if aggregate is not None and aggregate != loaded.aggregate and loaded.threshold_source != "checkpoint":
        loaded.threshold = float(loaded.checkpoint.get("threshold", 0.5))
        loaded.threshold_source = "checkpoint"
        notes.append(f"the saved threshold was chosen for {loaded.aggregate} aggregation, not {aggregate}: "
                     "the checkpoint's threshold is used")


def choosing_split(loaded: "LoadedModel", opened, *, body_parts: list[str] | None, calibrate_on: str | None):
    """``(name, CacheSplit)`` of the split that chose the checkpoint: the run's selection
    split, or valid when ``calibrate_on`` says so; a ConfigError for a run chosen on valid."""
    config = loaded.checkpoint.get("config") if isinstance(loaded.checkpoint.get("config"), dict) else {}
    selected_on = config.get("select_on", "valid")
    if calibrate_on == "valid":
        return "valid", opened.split("valid", body_parts)
    if selected_on == "valid":
        raise ConfigError(
            f"{loaded.path} was chosen on valid and has no selection split: calibrating on valid too would "
            "make every valid number optimistic",
            "pass --calibrate-on valid to do it anyway (every report then says so), or train with "
            "--select-on train:0.1",
        )
    from muracli.runtime.rundir import RunDir

    run = RunDir(loaded.path.parent)
    if not run.selection_path.is_file():
        raise DataError(f"{run.selection_path} is missing: the run's selection split ({selected_on}) is unknown",
                        "restore it from the run, or pass --calibrate-on valid")
    studies = set(run.read_selection()["study"])
    train = opened.split("train", body_parts)
    split = train.subset(train.index["study"].isin(studies).to_numpy(), name="select")
    if len(split.index) == 0:
        raise DataError(f"none of the {len(studies)} studies of {run.selection_path} is in the cache at {opened.path}",
                        "evaluate with the data the run was trained on (--data or --manifest)")
    return "select", split


def tune(loaded: "LoadedModel", opened, *, body_parts: list[str] | None, calibrate: str | None,
         calibrate_on: str | None, operating_point: str | None, save: bool, aggregate: str,
         score: Callable[[Any], Any]) -> Tuning:
    """Fit the temperature and/or choose the operating point on the choosing split, set them on
    ``loaded`` and write calibration.json when asked. ``score(split)`` gives the split's
    ``SplitScores`` with log-odds."""
    from muracli.metrics.calibration import fit_temperature, operating_threshold

    name, split = choosing_split(loaded, opened, body_parts=body_parts, calibrate_on=calibrate_on)
    scores = score(split)
    table = scores.images if scores.images is not None else scores.studies
    tuning = Tuning(split=name)
    record = _start_record(loaded, fresh=calibrate is not None, tuning=tuning,
                           keep_threshold=operating_point is not None and save)
    if calibrate is not None:
        fit = fit_temperature(table["log_odds"].to_numpy(), table["label"].to_numpy())
        loaded.temperature = fit["temperature"]
        tuning.temperature_fit = _fit_record(fit, name, level="image" if scores.images is not None else "study")
        record.update(temperature=fit["temperature"], temperature_fit=tuning.temperature_fit)
        if fit["at_bound"]:
            tuning.notes.append(f"the temperature reached the end of its range ({fit['temperature']:.3g}): "
                                f"the model separates the {name} split (almost) perfectly")
    if operating_point is not None:
        if aggregate == "vote":
            raise ConfigError("vote aggregation decides on a fraction of views at 0.5: an operating point "
                              "does not apply", "use --aggregate mean or max with --operating-point")
        studies = study_table(scores, aggregate=aggregate, temperature=loaded.temperature)
        point = operating_threshold(studies["label"].to_numpy(), studies["probability"].to_numpy(), operating_point)
        point.update(split=name, n_studies=len(studies), aggregate=aggregate, when=_now())
        tuning.operating_point = point
        loaded.threshold = point["threshold"]
        loaded.threshold_source = "operating point"
        if save:
            record.update(threshold=point["threshold"], operating_point=point)
            loaded.threshold_source = "calibration.json"
    if calibrate is not None or save:
        from muracli.runtime.calibration import calibration_path, write_calibration

        tuning.written = write_calibration(loaded.path, record)
        loaded.calibration = {**record, "path": str(calibration_path(loaded.path))}
    return tuning


def _start_record(loaded: "LoadedModel", *, fresh: bool, tuning: Tuning, keep_threshold: bool) -> dict[str, Any]:
    """The calibration.json to fill in: a new one for a new temperature (an old threshold was chosen on
    other probabilities and goes), else the one applied, else a new one."""
    from muracli.runtime.calibration import new_calibration

    old = loaded.calibration
    if old is not None and not fresh:
        return {key: value for key, value in old.items() if key != "path"}
    if old is not None and old.get("threshold") is not None and not keep_threshold:
        tuning.notes.append("the saved operating point was chosen before this temperature: dropped from "
                            "calibration.json (choose it again with --operating-point ... --save)")
    if fresh and loaded.threshold_source == "calibration.json":
        loaded.threshold = float(loaded.checkpoint.get("threshold", 0.5))
        loaded.threshold_source = "checkpoint"
    loaded.temperature = 1.0
    return new_calibration(loaded.path)


def _fit_record(fit: dict[str, Any], split: str, *, level: str) -> dict[str, Any]:
    from muracli.metrics.calibration import TEMPERATURE_METHOD

    return {"split": split, "level": level, "n": fit["n"], "nll_before": fit["nll_before"],
            "nll_after": fit["nll_after"], "method": TEMPERATURE_METHOD, "at_bound": bool(fit["at_bound"]),
            "when": _now()}


def _now() -> str:
    from muracli.runtime.calibration import now

    return now()


def calibrated_table(table: "pd.DataFrame", temperature: float) -> "pd.DataFrame":
    """``table`` (images or studies, with ``log_odds``) with ``probability`` = sigmoid(log_odds / T),
    without the log_odds column. T = 1 keeps the model's own softmax probabilities."""
    from muracli.metrics.calibration import scaled_probabilities

    table = table.copy()
    if temperature != 1.0:
        table["probability"] = scaled_probabilities(table["log_odds"].to_numpy(), temperature)
    return table.drop(columns="log_odds")


def study_table(scores, *, aggregate: str, temperature: float) -> "pd.DataFrame":
    """Study probabilities (label, probability) of ``scores`` under ``temperature`` and ``aggregate``."""
    from muracli.metrics.aggregate import aggregate_studies

    if scores.images is None:
        return calibrated_table(scores.studies, temperature)
    return aggregate_studies(calibrated_table(scores.images, temperature), aggregate)


def operating_point_report(point: dict[str, Any], studies: "pd.DataFrame", *, split: str, bootstrap: int,
                           seed: int, level: float) -> dict[str, Any]:
    """metrics.json's ``operating_point``: the rule, where it was chosen and what it gave there,
    and sensitivity and specificity at its threshold on ``split`` with bootstrap intervals
    (``bootstrap`` resamples, 1000 when 0)."""
    from muracli.metrics.binary import binary_metrics
    from muracli.metrics.bootstrap import bootstrap_intervals

    labels, probabilities = studies["label"].to_numpy(), studies["probability"].to_numpy()
    threshold = point["threshold"]
    here = binary_metrics(labels, probabilities, threshold)
    intervals = bootstrap_intervals(labels, probabilities, threshold, n=bootstrap or 1000, seed=seed, level=level)
    chosen = {key: point[key] for key in ("split", "n_studies", "sensitivity", "specificity")}
    return {
        "rule": point["rule"], "threshold": threshold, "chosen_on": chosen,
        "evaluated_on": {
            "split": split, "n_studies": len(studies), "bootstrap": bootstrap or 1000, "level": level,
            **{name: here[name] for name in ("sensitivity", "specificity")},
            "ci": {name: None if intervals[name] is None else list(intervals[name])
                   for name in ("sensitivity", "specificity")},
        },
    }
