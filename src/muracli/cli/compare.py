"""`mura compare`: many runs side by side, one row each."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from muracli.cli import console
from muracli.cli.options import SortKey, examples

if TYPE_CHECKING:
    from muracli.metrics.compare import RunSummary

EXAMPLES = examples(
    """
  # every run under runs/, best valid kappa first
  mura compare runs/

  # the image-size experiment, smallest images first
  mura compare runs/cnn-size-* --sort image_size

  # as JSON for a notebook or a LaTeX table
  mura compare runs/ --json
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
    json_output: Annotated[bool, typer.Option("--json", help="Print the rows (and skipped folders) as JSON.")] = False,
) -> None:
    """Compare runs: model, image size, regularisation, epochs, time, best valid kappa and AUC."""
    from muracli.metrics.compare import compare_runs

    comparison = compare_runs(runs, sort=sort.value)
    for skipped in comparison.skipped:
        console.warn(f"skipping {skipped.path}: {skipped.reason}")
    comparison.require_runs()
    if json_output:
        console.print_json(comparison.to_dict())
        return

    console.print_whole(_table(comparison.runs))


COLUMNS = [
    ("run", "left"), ("model", "left"), ("pretrained", "left"), ("size", "right"), ("augment", "left"),
    ("dropout", "right"), ("weight decay", "right"), ("optimizer", "left"), ("lr", "right"),
    ("epochs", "right"), ("best epoch", "right"), ("kappa", "right"), ("AUC", "right"), ("time", "right"),
]


def _table(runs: list["RunSummary"]):
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for name, justify in COLUMNS:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for run in runs:
        table.add_row(*(escape(cell) for cell in _cells(run)))
    return table


def _cells(run: "RunSummary") -> list[str]:
    return [
        run.run,
        run.model,
        run.pretrained,
        _text(run.image_size),
        _text(run.augment),
        _text(run.dropout, "g"),
        _text(run.weight_decay, "g"),
        _text(run.optimizer),
        _text(run.lr, "g"),
        f"{run.epochs_run}" + (f"/{run.epochs_planned}" if run.epochs_planned and run.epochs_planned != run.epochs_run else ""),
        _text(run.best_epoch),
        _text(run.best_kappa, ".3f"),
        _text(run.best_auc, ".3f"),
        duration(run.train_seconds),
    ]


def _text(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def duration(seconds: float | None) -> str:
    """12.3 s, 4m 05s, 2h 03m."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
