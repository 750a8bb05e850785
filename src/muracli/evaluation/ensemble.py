"""An ensemble on a split: ``evaluate_ensemble``, what ``mura evaluate RUN RUN ...`` calls.

Each member is evaluated on its own (``evaluate.evaluate_run``: its model,
its cache at its image size and fit, its probabilities), all under one
decision rule: ``aggregate`` and ``threshold`` as asked, else the first
member's. The ensemble's image probabilities are the mean of the members',
image by image (``metrics.ensemble.mean_probabilities``, aligned by path);
its studies are aggregated from them with the same rule and reported with
the same metrics and bootstrap (same resamples for the same ``seed``) as a
single run. metrics.json is a single run's plus ``ensemble`` (how, and for
``--ensemble-top`` which runs were picked and why) and ``members`` (each
member's checkpoint, model, image size and metrics); at the top level the
ensemble's ``model`` is ``"ensemble"``, ``checkpoint`` and ``epoch`` are
``None``, and ``image_size``, ``fit``, ``cache``, ``selected_on``, ... are
the members' common value, else ``None``.

Files always go somewhere, since an ensemble has no folder of its own:
``out``, else a new ``runs/ensemble-<timestamp>/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli.errors import ConfigError
from muracli.evaluation.evaluate import Evaluation, evaluate_run, write_outputs
from muracli.progress import ProgressFn

if TYPE_CHECKING:
    import pandas as pd

    from muracli.evaluation.members import TopRuns

#: The per-member keys of metrics.json's ``members`` (after ``name``), from the member's own report.
MEMBER_FIELDS = ("checkpoint", "model", "epoch", "image_size", "fit", "cache", "data_fingerprint", "selected_on",
                 "overall", "by_body_part", "image_level")
#: Top-level keys of a single run's report that are the members' common value (``None`` when they differ).
PER_MEMBER = ("image_size", "fit", "cache", "data_fingerprint", "selected_on", "study_model")


@dataclass
class EnsembleEvaluation:
    """The result of ``evaluate_ensemble``: ``report`` is metrics.json, ``studies`` and ``images``
    the ensemble's predictions.csv and image_predictions.csv, ``members`` each member's evaluation."""

    report: dict[str, Any]
    studies: pd.DataFrame
    images: pd.DataFrame
    members: list[Evaluation]
    names: list[str]
    device: str
    picked: TopRuns | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def evaluate_ensemble(
    targets: list[Path | str],
    *,
    aggregate: str | None = None,
    threshold: float | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
    out: Path | str | None = None,
    picked: TopRuns | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> EnsembleEvaluation:
    """Evaluate the ensemble of ``targets`` (run directories or checkpoint files; the same one
    twice is allowed). ``options`` are ``evaluate_run``'s (data, manifest, cache, split, device,
    amp, batch_images, body_parts), given to every member; ``picked`` records an
    ``--ensemble-top`` choice. Members must be image models that scored the same images."""
    from muracli.metrics.ensemble import METHOD, mean_probabilities
    from muracli.metrics.report import evaluation_report, study_predictions

    started = time.monotonic()
    if not targets:
        raise ConfigError("an ensemble needs at least one run")
    names = [_member_name(target) for target in targets]
    for target, name in zip(targets, names):
        _refuse_study_model(target, name)
    rule: dict[str, Any] = {"aggregate": aggregate, "threshold": threshold}
    members: list[Evaluation] = []
    for target, name in zip(targets, names):
        if progress is not None:
            progress("members", len(members), len(targets))
        member = evaluate_run(target, **rule, bootstrap=bootstrap, seed=seed, level=level, out=None,
                              progress=progress, **options)
        if member.images is None:
            _refuse_study_model(None, name)
        rule = {"aggregate": member.report["aggregate"], "threshold": member.report["threshold"]}
        members.append(member)
    if progress is not None:
        progress("members", len(members), len(targets))

    images = mean_probabilities([m.images for m in members], on=("path",), names=names)
    studies = study_predictions(images, rule["aggregate"], rule["threshold"])
    split = members[0].report["split"]
    report = evaluation_report(images, split=split, **rule, bootstrap=bootstrap, seed=seed, level=level,
                               studies=studies)
    report.update(_top_level(members))
    report.update(
        ensemble={"method": METHOD, "n_members": len(members), "picked": picked.to_dict() if picked else None},
        members=[{"name": name, **{key: m.report.get(key) for key in MEMBER_FIELDS}} for name, m in zip(names, members)],
    )
    evaluation = EnsembleEvaluation(
        report=report, studies=studies, images=images, members=members, names=names, device=members[0].device,
        picked=picked, notes=[f"{name}: {note}" for name, m in zip(names, members) for note in m.notes],
    )
    evaluation.files = write_outputs(evaluation, out if out is not None else _default_out())  # type: ignore[arg-type]
    evaluation.seconds = time.monotonic() - started
    return evaluation


def _top_level(members: list[Evaluation]) -> dict[str, Any]:
    """The single-run keys of metrics.json for an ensemble: ``model`` "ensemble", the others the members'
    common value, else ``None``."""
    first = members[0].report
    # No one checkpoint or epoch, even for a run with itself.
    values: dict[str, Any] = {"model": "ensemble", "checkpoint": None, "epoch": None, "device": first.get("device"),
                              "body_parts": first.get("body_parts")}
    for key in PER_MEMBER:
        seen = [m.report.get(key) for m in members]
        values[key] = seen[0] if all(value == seen[0] for value in seen) else None
    return values


def _member_name(target: Path | str) -> str:
    """A member as the tables name it: its run folder, with the file when it is not best.pt."""
    from muracli.runtime.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(target).resolve()
    return path.parent.name if path.name == "best.pt" else f"{path.parent.name}/{path.name}"


def _refuse_study_model(target: Path | str | None, name: str) -> None:
    """``ConfigError`` for a study model (known from the run's config.json when there is one, or ``target`` None)."""
    if target is not None:
        from muracli.runtime.checkpoint import resolve_checkpoint

        try:
            record = json.loads((resolve_checkpoint(target).parent / "config.json").read_text(encoding="utf-8"))
            study_model = bool(record["config"]["study_model"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # no run record: evaluate_run tells after scoring it
        if not study_model:
            return
    raise ConfigError(
        f"{name} is a study model (it scores whole studies, not images); an ensemble averages image probabilities",
        "ensemble per-image runs, or evaluate the study model on its own",
    )


def _default_out() -> Path:
    from muracli.runtime.rundir import default_run_dir

    return default_run_dir("ensemble")
