"""`mura compare`: many runs side by side - the results table of a thesis."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

from muracli.cli import console
from muracli.cli.options import CompareFormat, DataOption, ManifestOption, SortKey, examples

if TYPE_CHECKING:
    from muracli.metrics.table import Table

EXAMPLES = examples(
    """
  # every run under runs/, seeds of one configuration folded into mean ± sd
  mura compare runs/

  # each run on its own row, smallest images first
  mura compare runs/cnn-size-* --per-run --sort image_size

  # every run against a baseline: paired bootstrap of Δkappa and ΔAUC on valid studies
  mura compare runs/ --against runs/cnn-base --bootstrap 1000

  # the same data from a manifest of your own images
  mura compare runs/ --against runs/cnn-base --manifest mine/manifest.csv

  # the table for the thesis, and kappa against the swept option
  mura compare runs/ --format latex --plot kappa.png

  # kappa per body part, as JSON for a notebook
  mura compare runs/ --by-body-part --json
"""
)


def register(app: typer.Typer) -> None:
    app.command(name="compare", epilog=EXAMPLES)(compare)


def compare(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN_DIR", help="Run directories written by `mura train`, or folders that hold them.", show_default=False),
    ],
    sort: Annotated[SortKey, typer.Option("--sort", help="kappa and auc: best first; name; time and image_size: smallest first.")] = SortKey.kappa,
    output_format: Annotated[CompareFormat, typer.Option("--format", help="table: for the terminal; markdown, latex (a tabular) or csv: to paste into a report.")] = CompareFormat.table,
    json_output: Annotated[bool, typer.Option("--json", help="Print the runs, configurations (and skipped folders) as JSON.")] = False,
    per_run: Annotated[bool, typer.Option("--per-run", help="One row per run instead of one per configuration (runs that differ only in --seed fold into mean ± sd).")] = False,
    against: Annotated[Optional[Path], typer.Option("--against", metavar="RUN", help="A baseline run: every run gets Δkappa and ΔAUC (run - baseline) on valid studies with 95% paired bootstrap intervals. Evaluates each run's best.pt.", show_default=False)] = None,
    data: DataOption = None,
    manifest: ManifestOption = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=1, help="Resamples of studies for the paired intervals (and single-seed error bars of --plot).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resamples.")] = 0,
    by_body_part: Annotated[bool, typer.Option("--by-body-part", help="A valid kappa column per body part (evaluates each run's best.pt).")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", metavar="FILE.png", help="Plot valid kappa against the swept option, one line per model, with error bars.", show_default=False)] = None,
    axis: Annotated[Optional[str], typer.Option("--axis", metavar="NAME", help="The option --plot puts on the x axis (a config.json field, e.g. image_size). Default: the one that varies.", show_default=False)] = None,
) -> None:
    """Compare runs: the options they differ in, best valid kappa and AUC (folded over seeds), and
    with --against, paired differences to a baseline."""
    from muracli.data.dataset import check_one_source
    from muracli.errors import ConfigError
    from muracli.metrics import compare as core
    from muracli.metrics.table import WRITERS, results_table
    from muracli.training.config import EXECUTION_FIELDS

    check_one_source(data, manifest)
    if axis is not None and plot is None:
        raise ConfigError("--axis chooses the x axis of --plot", "add --plot FILE.png, or leave --axis out")
    baseline = core.read_baseline(against) if against is not None else None
    comparison = core.compare_runs(runs, sort=sort.value)
    for skipped in comparison.skipped:
        console.warn(f"skipping {skipped.path}: {skipped.reason}")
    comparison.require_runs()
    if baseline is not None:
        baseline = comparison.include(baseline)
    folded = not per_run and against is None
    groups = core.fold_runs(comparison.runs, EXECUTION_FIELDS) if folded else [core.group_of([r]) for r in comparison.runs]
    groups = core.sort_groups(groups, sort.value)
    plot_axis = core.sweep_axis(groups, axis, EXECUTION_FIELDS) if plot is not None else None

    to_score = [r.path for r in comparison.runs] if against is not None or by_body_part else []
    if plot is not None:  # single-run configurations get bootstrap error bars
        to_score += [g.first.path for g in groups if g.n == 1 and g.first.path not in to_score]
    if not to_score and (data is not None or manifest is not None):
        console.warn("--data/--manifest unused: only --against, --by-body-part and --plot evaluate runs")
    scores = _scores(to_score, data=data, manifest=manifest)

    deltas = None
    if baseline is not None:
        from muracli.evaluation.compare import against_baseline

        deltas = against_baseline(baseline.path, scores, n=bootstrap, seed=seed)
    body_parts = {path: s.body_part_kappas() for path, s in scores.items()} if by_body_part else None
    if plot is not None:
        _plot(groups, plot_axis, plot, scores, bootstrap=bootstrap, seed=seed, ignore=EXECUTION_FIELDS)

    if json_output:
        console.print_json(_json(comparison, groups, folded=folded, baseline=baseline, deltas=deltas,
                                 body_parts=body_parts, scores=scores, bootstrap=bootstrap, seed=seed))
        return
    table = results_table(groups, folded=folded, body_parts=body_parts, deltas=deltas)
    if output_format.value == "table":
        console.print_whole(_rich(table))
        if baseline is not None:
            console.info(f"Δ: run - {baseline.run} on the same valid studies, one row per run; 95% paired "
                         f"bootstrap over studies ({bootstrap} resamples, seed {seed})")
    else:
        typer.echo(WRITERS[output_format.value](table), nl=False)


def _scores(paths: list[str], *, data, manifest) -> dict[str, Any]:
    if not paths:
        return {}
    from muracli.evaluation.compare import valid_studies

    with console.RichProgress() as progress:
        scores = valid_studies(paths, data=data, manifest=manifest, progress=progress)
    for score in scores.values():
        for note in score.notes:
            console.warn(f"{Path(score.path).name}: {note}")
    return scores


def _plot(groups, axis: str, path: Path, scores: dict[str, Any], *, bootstrap: int, seed: int, ignore) -> None:
    from muracli.evaluation.compare import kappa_intervals
    from muracli.metrics.compare import sweep_series
    from muracli.metrics.plots import sweep_png

    single = {g.first.path: scores[g.first.path] for g in groups if g.n == 1 and g.first.path in scores}
    intervals = kappa_intervals(single, n=bootstrap, seed=seed)
    written = sweep_png(sweep_series(groups, axis, intervals=intervals, ignore=ignore), axis, path)
    console.info(f"wrote {written}")


def _json(comparison, groups, *, folded: bool, baseline, deltas, body_parts, scores, bootstrap: int,
          seed: int) -> dict:
    runs = []
    for run in comparison.runs:
        row = run.to_dict()
        if run.path in scores:  # evaluated here: on how many valid studies
            row["evaluated_studies"] = scores[run.path].report["n_studies"]
        if body_parts is not None:
            row["body_part_kappa"] = body_parts.get(run.path)
        if deltas is not None:
            delta = deltas.get(run.path)
            row["against"] = None if delta is None else {
                metric: None if value is None else {"delta": value[0], "low": value[1], "high": value[2]}
                for metric, value in delta.items()
            }
        runs.append(row)
    result: dict[str, Any] = {"runs": runs}
    if folded:
        result["configurations"] = [group.to_dict() for group in groups]
    if baseline is not None:
        result["baseline"] = {"run": baseline.run, "path": baseline.path, "split": "valid", "level": 0.95,
                              "bootstrap": bootstrap, "seed": seed, "method": "paired percentile bootstrap over studies"}
    result["skipped"] = comparison.to_dict()["skipped"]
    return result


def _rich(table: "Table"):
    from rich import box
    from rich.table import Table as RichTable

    rich_table = RichTable(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for name, justify in zip(table.header, table.align):
        rich_table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in table.rows:
        rich_table.add_row(*(escape(cell) for cell in row))
    return rich_table
