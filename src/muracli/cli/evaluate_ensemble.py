"""`mura evaluate RUN RUN ...` and `--ensemble-top K`: the lines and the table of an ensemble's report.

``cli/evaluate.py`` prints these above the ensemble's own headline and
per-body-part table (the same as a single run's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

if TYPE_CHECKING:
    from muracli.evaluation.ensemble import EnsembleEvaluation
    from muracli.evaluation.members import TopRuns

LABELS = {"kappa": "kappa", "auc": "AUC", "accuracy": "accuracy", "f1": "F1", "sensitivity": "sensitivity",
          "specificity": "specificity"}
COLUMNS = ["kappa", "auc", "accuracy", "sensitivity", "specificity"]


def header_lines(evaluation: EnsembleEvaluation) -> list[str]:
    """Ensemble, Picked (with --ensemble-top), Split and Aggregate, as Rich markup."""
    report = evaluation.report
    lines = [f"Ensemble    {len(evaluation.members)} members, {report['ensemble']['method']} (device {evaluation.device})"]
    if evaluation.picked is not None:
        lines.append(f"Picked      {picked_text(evaluation.picked)}")
    lines.append(f"Split       {report['split']}: {report['n_studies']} studies, {report['n_images']} images")
    if report["aggregate"] == "vote":
        rule = (f"vote of views, threshold {report['threshold']:g} per view, abnormal when >= "
                f"{report['decision_threshold']:g} of the views vote abnormal")
    else:
        rule = f"{report['aggregate']} of views, threshold {report['threshold']:g}"
    lines.append(f"Aggregate   {rule} (the ensemble and every member)")
    return lines


def picked_text(picked: TopRuns) -> str:
    """Which runs --ensemble-top picked, by which kappa, and which it left."""
    def runs(ranked) -> str:
        return ", ".join(f"{escape(r.run)} {r.kappa:.3f} (epoch {r.epoch})" for r in ranked)

    total = len(picked.picked) + len(picked.not_picked)
    text = (f"the {picked.k} of {total} runs in {escape(', '.join(picked.folders))} with the best {picked.ranked_by} "
            f"(the kappa of the split that chose their checkpoints, {escape(picked.selected_on)}): {runs(picked.picked)}")
    if picked.not_picked:
        text += f"; not picked: {runs(picked.not_picked)}"
    return text


def members_table(evaluation: EnsembleEvaluation, metric: str):
    """One row per member and one for the ensemble: model, image size, chosen on, studies and metrics."""
    from rich import box
    from rich.table import Table

    report = evaluation.report
    metrics = COLUMNS if metric == "all" else [metric]
    ci = bool(report.get("bootstrap"))
    level = f" ({100 * report['bootstrap']['level']:g}% CI)" if ci else ""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for name, justify in (("member", "left"), ("model", "left"), ("px", "right"), ("chosen on", "left"),
                          ("studies", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name in metrics:
        with_ci = ci and name in ("kappa", "auc")
        table.add_column(LABELS[name] + (level if with_ci else ""), justify="right")
    for member in report["members"]:
        table.add_row(escape(member["name"]), escape(str(member["model"])), str(member["image_size"]),
                      escape(str(member["selected_on"])), str(member["overall"]["n"]),
                      *_cells(member["overall"], metrics, ci))
    table.add_section()
    table.add_row("ensemble", "", "", "", str(report["overall"]["n"]), *_cells(report["overall"], metrics, ci),
                  style="bold")
    return table


def _cells(block: dict[str, Any], metrics: list[str], ci: bool) -> list[str]:
    cells = []
    for name in metrics:
        value = block.get(name)
        text = "n/a" if value is None else f"{value:.3f}"
        interval = (block.get("ci") or {}).get(name) if ci and name in ("kappa", "auc") else None
        if interval:
            text += f" ({interval[0]:.2f}–{interval[1]:.2f})"
        cells.append(text)
    return cells
