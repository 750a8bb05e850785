"""`mura sweep`: train a grid of runs from a TOML file, one after another, resumable."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from muracli.cli import console
from muracli.cli.options import examples

EXAMPLES = examples(
    """
  # what would run, and what is already done
  mura sweep examples/cpu-image-size.toml --dry-run

  # run the grid (again after a crash or Ctrl-C: finished runs are skipped, the interrupted one resumes)
  mura sweep examples/cpu-image-size.toml --out runs/image-size

  # every run on four GPUs
  torchrun --nproc-per-node 4 -m muracli sweep examples/gpu-image-size.toml
"""
)


def register(app: typer.Typer) -> None:
    app.command(name="sweep", epilog=EXAMPLES)(sweep)


def _status(run) -> str:
    if run.status == "resume":
        return f"resume at epoch {run.epoch}"
    if run.status == "restart":
        return "new (restart: no epoch finished)"
    return run.status


def _kappa(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _options(run) -> str:
    return "  ".join(f"{key}={value}" for key, value in run.varying.items()) or "(base)"


def sweep(
    grid_file: Annotated[Path, typer.Argument(metavar="GRID.toml", help="The grid: [base], [axes] and/or [[runs]].", show_default=False)],
    out: Annotated[
        Optional[Path], typer.Option("--out", help="The folder of the runs. Default: runs/<grid file stem>.", show_default=False)
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs and their status; train nothing.")] = False,
) -> None:
    """Train every run of a grid (image sizes, seeds, regularisation ...) into one folder; re-run to continue."""
    from muracli.training.sweep import load_grid, read_statuses, run_sweep

    grid = load_grid(grid_file, out)
    main_rank = os.environ.get("RANK", "0") == "0"
    if not main_rank:
        console.state.quiet = True
    if dry_run:
        read_statuses(grid)
        table = Table(title=f"{len(grid.runs)} runs of {escape(str(grid_file))} in {escape(str(grid.out))}")
        table.add_column("run", no_wrap=True)
        for column in ("options", "status"):
            table.add_column(column)
        for run in grid.runs:
            table.add_row(escape(run.name), escape(_options(run)), _status(run))
        console.out.print(table)
        return

    command = "mura sweep " + shlex.join([str(grid_file), "--out", str(grid.out)])
    quiet = console.state.quiet

    def on_start(run) -> None:
        if not quiet:
            console.out.print(f"[bold]{escape(run.name)}[/] ({escape(_options(run))}): {_status(run)}")

    def on_epoch(run, row: dict[str, Any]) -> None:
        if not quiet:
            console.epoch(row, run.config.epochs, indent="  ")

    def on_run(run) -> None:
        if quiet:
            return
        if run.result == "skipped":
            console.out.print(f"[bold]{escape(run.name)}[/]: done, skipped (best kappa {_kappa(run.best_kappa)})")
            return
        table = Table(title=f"{escape(run.name)} {run.result}")
        for column in ("options", "epochs", "best epoch", "best kappa", "time"):
            table.add_column(column)
        table.add_row(escape(_options(run)), str(run.epoch), str(run.best_epoch), _kappa(run.best_kappa), f"{run.seconds:.0f} s")
        console.out.print(table)

    with console.RichProgress(enabled=console.show_progress() and main_rank) as progress:
        run_sweep(grid, command=command, progress=progress, on_epoch=on_epoch, on_start=on_start, on_run=on_run)
    if not main_rank or quiet:
        return
    table = Table(title=f"Sweep {escape(str(grid_file))}: {len(grid.runs)} runs")
    for column in ("run", "status", "best kappa", "time"):
        table.add_column(column)
    for run in grid.runs:
        seconds = "-" if run.seconds is None else f"{run.seconds:.0f} s"
        table.add_row(escape(run.name), run.result or "", _kappa(run.best_kappa), seconds)
    console.out.print(table)
    console.out.print(f"Runs and sweep.json in {escape(str(grid.out))}")
    console.out.print(f"Next: mura compare {escape(str(grid.out))}")
