"""`mura train`: train a model on the cache, writing a run directory."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from muracli.cli import console
from muracli.cli.options import config_parameters, config_values, examples
from muracli.training.config import TrainConfig, sized_to_cache  # the option table: torch-free

EXAMPLES = examples(
    """
  # a small CNN on the CPU (minutes on synthetic data)
  mura train --model cnn --image-size 64 --epochs 3 --cpu

  # choose best.pt on a held-out tenth of train, so valid is an honest report; wrists only
  mura train --model cnn --image-size 64 --epochs 3 --cpu --select-on train:0.1 --body-part XR_WRIST

  # the MURA paper's baseline on a GPU
  mura train --model densenet169 --pretrained --image-size 320 --lr 1e-4 --batch-size 8 --class-weights

  # VGG16 with its head replaced, offline ImageNet weights, frozen features
  mura train --model vgg16 --weights vgg16-397923af.pth --freeze-backbone

  # continue an interrupted run (to 20 epochs in all)
  mura train --resume runs/cnn-20260101-120000 --epochs 20

  # several GPUs or machines
  torchrun --nproc-per-node 4 -m muracli train --model densenet169 --pretrained
"""
)


def register(app: typer.Typer) -> None:
    app.command(name="train", epilog=EXAMPLES)(train)


def train(**options: Any) -> None:
    """Train a classifier; writes config.json, metrics.csv, best.pt, last.pt, log.txt, curves.png."""
    resume: Optional[Path] = options.pop("resume")
    json_output: bool = options.pop("json_output")
    given = config_values(TrainConfig, options)
    main_rank = os.environ.get("RANK", "0") == "0"
    if not main_rank:
        console.state.quiet = True

    if resume is not None:
        from muracli.training.trainer import resume_config

        config = resume_config(resume, **given)
    else:
        config = TrainConfig(**sized_to_cache(given))

    from muracli.training.trainer import train as run_training

    def on_epoch(row: dict[str, Any]) -> None:
        if not (json_output or console.state.quiet):
            console.epoch(row, config.epochs)

    with console.RichProgress(enabled=console.show_progress() and main_rank) as progress:
        result = run_training(config, resume=resume, progress=progress, on_epoch=on_epoch, on_note=console.warn)
    if not main_rank:
        return
    if json_output:
        selected = result.selected_on != "valid"
        console.print_json(
            {
                "run_dir": str(result.run_dir),
                "epochs": result.epochs,
                "selected_on": result.selected_on,
                "best_epoch": result.best_epoch,
                "best_select_kappa": result.best_kappa if selected else None,
                "best_select_auc": result.best_auc if selected else None,
                "best_valid_kappa": result.best_valid_kappa,
                "best_valid_auc": result.best_valid_auc,
                "stopped_early": result.stopped_early,
                "seconds": round(result.seconds, 2),
                "history": result.history,
                "notes": result.notes,
            }
        )
        return
    def text(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    if result.selected_on == "valid":
        chosen = f"[bold]Best valid kappa {text(result.best_kappa)}[/]"
    else:
        chosen = (f"[bold]Best kappa on the held-out {escape(result.selected_on)} {text(result.best_kappa)}[/] "
                  f"(valid kappa {text(result.best_valid_kappa)})")
    console.out.print(
        f"{chosen} at epoch {result.best_epoch} "
        f"({result.epochs} epochs, {result.seconds:.0f} s{', stopped early' if result.stopped_early else ''})"
    )
    console.out.print(f"Run directory: {result.run_dir}")
    console.out.print(f"Next: mura evaluate {result.run_dir} --bootstrap 1000")


def _signature() -> inspect.Signature:
    """``train``'s options: every ``TrainConfig`` field with a help line, then --resume and --json."""
    extra = {
        "resume": Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this directory from its last.pt.")],
        "json_output": Annotated[bool, typer.Option("--json", help="Print the result as JSON.")],
    }
    parameters = config_parameters(TrainConfig) + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None if name == "resume" else False, annotation=kind)
        for name, kind in extra.items()
    ]
    return inspect.Signature(parameters, return_annotation=None)


train.__signature__ = _signature()
