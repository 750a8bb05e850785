"""`mura demo`: the whole pipeline on a fresh synthetic dataset, in a few CPU minutes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from muracli.cli import console
from muracli.cli.options import Difficulty, examples
from muracli.demo import DemoConfig
from muracli.errors import TrainingInterrupted

if TYPE_CHECKING:
    from muracli.demo import DemoResult, StageResult

EXAMPLES = examples(
    """
  # everything into ./mura-demo (about a minute and a half on a 2-core CPU), then read the report
  mura demo
  less mura-demo/report.md

  # a bigger, harder dataset and a longer run, somewhere else
  mura demo --dir /tmp/demo --studies 800 --difficulty hard --epochs 20

  # the summary for scripts
  mura demo --json | jq .kappa
"""
) + (
    "\n\nRunning it again reuses the dataset, the cache and the finished training run when the options "
    "that made them are unchanged (an interrupted run is resumed); evaluation and prediction are redone. "
    "<dir>/report.md links every picture and gives the `mura` command line of each step."
)

# The defaults live in DemoConfig (a cheap import: no torch, no pandas).
DEFAULT = DemoConfig()
DEFAULT_DIFFICULTY = Difficulty(DEFAULT.difficulty)


def register(app: typer.Typer) -> None:
    app.command(name="demo", epilog=EXAMPLES)(demo)


def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder for everything the demo makes.", file_okay=False, dir_okay=True)
    ] = DEFAULT.dir,
    studies: Annotated[int, typer.Option("--studies", min=14, help="Synthetic studies to generate (train and valid).")] = DEFAULT.studies,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")] = DEFAULT.epochs,
    image_size: Annotated[int, typer.Option("--image-size", min=16, max=512, help="Model input size in pixels.")] = DEFAULT.image_size,
    difficulty: Annotated[
        Difficulty, typer.Option("--difficulty", help="How subtle the synthetic findings are.")
    ] = DEFAULT_DIFFICULTY,
    gpu: Annotated[
        Optional[bool],
        typer.Option("--gpu/--cpu", help="Train on CUDA or the CPU. Default: the GPU when present.", show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the dataset, training and bootstrap.")] = DEFAULT.seed,
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", min=1, help="CPU threads for torch. Default: the cores other programs leave free.",
                     show_default=False),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Run download, stats, preprocess, train, evaluate and predict on a synthetic MURA, with a report."""
    from muracli.demo import run_demo  # loads the stages, and torch: not at --help time

    config = DemoConfig(
        dir=directory, studies=studies, epochs=epochs, image_size=image_size, difficulty=difficulty.value,
        device="auto" if gpu is None else ("cuda" if gpu else "cpu"), seed=seed, threads=threads,
    )
    try:
        with console.RichProgress() as progress:
            result = run_demo(config, progress=progress, on_stage=_stage_line)
    except TrainingInterrupted as exc:
        # The trainer's hint names `mura train --resume`; the same demo command resumes too.
        exc.hint = "run the same `mura demo` command again: it keeps the data and resumes training"
        raise
    if json_output:
        console.print_json(result.to_dict())
        return
    render(result)


def _stage_line(stage: "StageResult") -> None:
    how = "reused" if stage.reused else f"{stage.seconds:.0f} s"
    console.info(f"✓ {stage.name}: {stage.summary} ({how})")


def render(result: "DemoResult") -> None:
    """The closing summary on stdout: the numbers with their CIs, then where everything is."""
    from rich.markup import escape

    def write(text: str = "") -> None:
        console.out.print(text, soft_wrap=True)

    threads = f", {result.threads} CPU thread{'s' if result.threads != 1 else ''}" if result.threads else ""
    write(f"[bold]Demo finished in {result.seconds:.0f} s[/] ({result.device}{threads}).")
    kappa = "n/a" if result.kappa is None else f"{result.kappa:.3f}"
    line = f"[bold]Cohen's kappa {kappa}[/]"
    if result.kappa_ci:
        line += f" (95% CI {result.kappa_ci[0]:.2f} to {result.kappa_ci[1]:.2f})"
    auc = "n/a" if result.auc is None else f"{result.auc:.3f}"
    line += f", AUC {auc}"
    if result.auc_ci:
        line += f" (95% CI {result.auc_ci[0]:.2f} to {result.auc_ci[1]:.2f})"
    write(line + f" on {result.n_valid_studies} valid studies")
    right = sum(1 for p in result.predictions if p["correct"])
    write(f"Predicted {len(result.predictions)} valid studies with Grad-CAM overlays: {right} right.")
    write()
    rows = [
        ("report", result.files["report"]),
        ("montage", result.files["montage"]),
        ("dataset", result.files["data"]),
        ("cache", result.files["cache"]),
        ("run", result.files["run"]),
        ("curves", result.files["curves"]),
        ("evaluation", result.files["evaluation"]),
        ("Grad-CAM", result.files["cams"]),
    ]
    width = max(len(name) for name, _ in rows)
    for name, path in rows:
        write(f"  {name:<{width}}  {escape(_shown(path))}")
    write()
    write(f"Next: read {escape(_shown(result.files['report']))}; it gives the `mura` command of every step.")


def _shown(path: Path) -> str:
    """A path relative to the working folder when it is below it, else absolute."""
    import os

    absolute = Path(path).resolve()
    try:
        return os.path.relpath(absolute) if absolute.is_relative_to(Path.cwd()) else str(absolute)
    except ValueError:
        return str(absolute)
