"""What ``mura compare`` needs from the models themselves: each run's study predictions on valid.

``valid_studies`` evaluates a run's ``best.pt`` on the valid split through
``evaluate_run`` (the path ``mura evaluate`` takes: the same data lookup,
cache, aggregation, threshold and calibration), once per run;
``against_baseline`` pairs every run with the baseline study by study and
bootstraps the differences (``metrics.paired``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli.errors import DataError
from muracli.progress import ProgressFn

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class RunScores:
    """A run's valid studies (``study, body_part, label, probability, prediction``) and its report."""

    path: str
    studies: "pd.DataFrame"
    report: dict[str, Any]
    notes: list[str]

    @property
    def threshold(self) -> float:
        return float(self.report["decision_threshold"])

    def body_part_kappas(self) -> dict[str, float | None]:
        return {part: block.get("kappa") for part, block in self.report["by_body_part"].items()}


def valid_studies(
    runs: list[str], *, data: Path | str | None = None, manifest: Path | str | None = None,
    device: str = "auto", progress: ProgressFn | None = None,
) -> dict[str, RunScores]:
    """Each run directory's ``best.pt`` evaluated on valid, by the run's path as given."""
    from muracli.data.dataset import check_one_source
    from muracli.evaluation.evaluate import evaluate_run

    check_one_source(data, manifest)
    scores = {}
    for run in runs:
        checkpoint = Path(run) / "best.pt"
        if not checkpoint.is_file():
            raise DataError(f"{run} has no best.pt to evaluate", "compare finished runs (or runs with a best epoch)")
        evaluation = evaluate_run(checkpoint, data=data, manifest=manifest, split="valid", device=device,
                                  progress=progress)
        scores[run] = RunScores(path=run, studies=evaluation.studies, report=evaluation.report,
                                notes=evaluation.notes)
    return scores


def against_baseline(
    baseline: str, scores: dict[str, RunScores], *, n: int = 1000, seed: int = 0, level: float = 0.95,
) -> dict[str, dict[str, Any] | None]:
    """Each run's paired differences (run - ``baseline``) of valid kappa and AUC with their intervals
    (``paired_bootstrap``); ``None`` for the baseline itself."""
    from muracli.metrics.paired import paired_bootstrap, paired_studies

    base = scores[baseline]
    result: dict[str, dict[str, Any] | None] = {}
    for path, other in scores.items():
        if path == baseline:
            result[path] = None
            continue
        pairs = paired_studies(base.studies, other.studies, names=(Path(baseline).name, Path(path).name))
        result[path] = paired_bootstrap(
            pairs["label"], pairs["probability_a"], pairs["probability_b"], base.threshold, other.threshold,
            n=n, seed=seed, level=level, predictions_a=pairs["prediction_a"], predictions_b=pairs["prediction_b"],
        )
    return result


def kappa_intervals(scores: dict[str, RunScores], *, n: int = 1000, seed: int = 0,
                    level: float = 0.95) -> dict[str, tuple[float, float, float]]:
    """Each run's valid kappa with its percentile bootstrap interval over studies: ``(kappa, low, high)``
    (runs whose kappa is undefined are left out): the error bars of a single-seed configuration."""
    from muracli.metrics.binary import binary_metrics
    from muracli.metrics.bootstrap import bootstrap_intervals

    intervals = {}
    for path, score in scores.items():
        studies = score.studies
        arrays = (studies["label"], studies["probability"], score.threshold)
        kappa = binary_metrics(*arrays, predictions=studies["prediction"])["kappa"]
        ci = bootstrap_intervals(*arrays, n=n, seed=seed, level=level, predictions=studies["prediction"])["kappa"]
        if kappa is not None and ci is not None:
            intervals[path] = (kappa, *ci)
    return intervals
