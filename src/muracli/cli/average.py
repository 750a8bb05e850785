"""`mura average`: the mean of a run's last K epochs' weights, as RUN/averaged.pt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from muracli.cli import console
from muracli.cli.options import examples

EXAMPLES = examples(
    """
  # a run trained with --keep-epochs 5: average its last five epochs, then evaluate the mean
  mura average runs/cnn-20260101-120000 --last 5
  mura evaluate runs/cnn-20260101-120000/averaged.pt
"""
)


def register(app: typer.Typer) -> None:
    app.command(name="average", epilog=EXAMPLES)(average)


def average(
    run: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run trained with --keep-epochs.", show_default=False)],
    last: Annotated[int, typer.Option("--last", min=1, help="Average the last K kept epochs.")] = 5,
    gpu: Annotated[
        Optional[bool],
        typer.Option("--gpu/--cpu", help="Recompute BatchNorm statistics on CUDA or the CPU. Default: the GPU when present.", show_default=False),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Average a run's last K epochs' weights into RUN/averaged.pt (BatchNorm statistics recomputed on train)."""
    from muracli.runtime.devices import select_device
    from muracli.training.average import average_run

    device = select_device("auto" if gpu is None else ("cuda" if gpu else "cpu"))
    with console.RichProgress() as progress:
        result = average_run(run, last=last, device=device, progress=progress)
    if json_output:
        console.print_json({"checkpoint": str(result.path), "epochs": result.epochs, "batchnorm_batches": result.bn_batches})
        return
    epochs = ", ".join(str(e) for e in result.epochs)
    bn = (f"BatchNorm statistics recomputed on {result.bn_batches} training batches" if result.bn_batches
          else "no BatchNorm to recompute")
    console.out.print(f"Averaged epochs {epochs} into {escape(str(result.path))} ({bn})", soft_wrap=True)
    console.out.print(f"Next: mura evaluate {escape(str(result.path))}")
