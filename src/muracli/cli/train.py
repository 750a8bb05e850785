"""`mura train`: train a model on the cache, writing a run directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from muracli.cli import console
from muracli.cli.options import Aggregate, DataOption, Fit, Init, Optimizer, Schedule, ViewPool, examples

EXAMPLES = examples(
    """
  # a small CNN on the CPU (minutes on synthetic data)
  mura train --model cnn --image-size 64 --epochs 3 --cpu

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

# Options that --resume may change; everything else comes from the run's config.json.
RESUMABLE = {"epochs", "device", "workers", "compile", "early_stop", "eval_batch_images"}


def register(app: typer.Typer) -> None:
    app.command(name="train", epilog=EXAMPLES)(train)


def train(
    data: DataOption = None,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Train on this preprocess cache (see `mura preprocess`).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="cnn, vgg16, densenet169 or any torchvision classifier name.")] = None,
    gpu: Annotated[
        Optional[bool], typer.Option("--gpu/--cpu", help="Run on CUDA or the CPU. Default: the GPU when present.", show_default=False)
    ] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Epochs in all (with --resume: the new total). [default: 10]", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Images per step per process. [default: 32]", show_default=False)] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", min=16, help="Input size in pixels (square). [default: 224]", show_default=False)] = None,
    fit: Annotated[Optional[Fit], typer.Option("--fit", help="How images were made square in the cache. [default: pad]", show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate. [default: 1e-3]", show_default=False)] = None,
    optimizer: Annotated[Optional[Optimizer], typer.Option("--optimizer", help="[default: adam]", show_default=False)] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", min=0.0, help="L2 penalty. [default: 0]", show_default=False)] = None,
    dropout: Annotated[Optional[float], typer.Option("--dropout", min=0.0, max=0.99, help="Dropout before the 2-way head. [default: 0.2]", show_default=False)] = None,
    schedule: Annotated[Optional[Schedule], typer.Option("--schedule", help="plateau (LR/10 when valid loss stalls, the paper) or cosine with warm-up. [default: plateau]", show_default=False)] = None,
    warmup_epochs: Annotated[Optional[float], typer.Option("--warmup-epochs", min=0.0, help="Cosine schedule: linear warm-up length.", show_default=False)] = None,
    augment: Annotated[Optional[bool], typer.Option("--augment/--no-augment", help="Random flips, rotations, scale and contrast jitter on training batches. [default: on]", show_default=False)] = None,
    rotate: Annotated[Optional[float], typer.Option("--rotate", min=0.0, max=180.0, help="Largest random rotation in degrees (the MURA paper: 30). [default: 10]", show_default=False)] = None,
    pretrained: Annotated[Optional[bool], typer.Option("--pretrained/--no-pretrained", help="Start from torchvision's ImageNet weights (downloaded and cached by torch hub).", show_default=False)] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Start from a local torchvision-format state dict (the offline way).")] = None,
    freeze_backbone: Annotated[Optional[bool], typer.Option("--freeze-backbone", help="Train only the new head.", show_default=False)] = None,
    init: Annotated[Optional[Init], typer.Option("--init", help="Weight init of new layers. [default: kaiming]", show_default=False)] = None,
    class_weights: Annotated[Optional[bool], typer.Option("--class-weights/--no-class-weights", help="Weight the loss as in the MURA paper (w_abnormal = N/(A+N)). [default: on]", show_default=False)] = None,
    balanced: Annotated[Optional[bool], typer.Option("--balanced/--no-balanced", help="Draw normal and abnormal images equally often.", show_default=False)] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed precision (bf16 where supported, else fp16). [default: on for CUDA]", show_default=False)] = None,
    compile_model: Annotated[Optional[bool], typer.Option("--compile", help="torch.compile the model.", show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=0, help="Loader threads (worker processes with --study-model). [default: 1 on CPU, up to 4 on CUDA; study model 0 / up to 8]", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed; same seed and data on CPU give the same metrics. [default: 0]", show_default=False)] = None,
    early_stop: Annotated[Optional[int], typer.Option("--early-stop", min=0, help="Stop after N epochs without a better valid kappa (0: never).", show_default=False)] = None,
    aggregate: Annotated[Optional[Aggregate], typer.Option("--aggregate", help="Study probability from image probabilities. [default: mean]", show_default=False)] = None,
    study_model: Annotated[Optional[bool], typer.Option("--study-model", help="One model over all views of a study at once (shared backbone, pooled features).", show_default=False)] = None,
    view_pool: Annotated[Optional[ViewPool], typer.Option("--view-pool", help="With --study-model: how view features are pooled. [default: mean]", show_default=False)] = None,
    max_views: Annotated[Optional[int], typer.Option("--max-views", min=1, help="With --study-model: views per study in training (random choice). [default: 4]", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory. [default: runs/<model>-<timestamp>]", show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this directory from its last.pt.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a classifier; writes config.json, metrics.csv, best.pt, last.pt, log.txt, curves.png."""
    given: dict[str, Any] = {
        "data": str(data) if data else None,
        "cache": str(cache) if cache else None,
        "model": model,
        "device": None if gpu is None else ("cuda" if gpu else "cpu"),
        "epochs": epochs,
        "batch_size": batch_size,
        "image_size": image_size,
        "fit": fit.value if fit else None,
        "lr": lr,
        "optimizer": optimizer.value if optimizer else None,
        "weight_decay": weight_decay,
        "dropout": dropout,
        "schedule": schedule.value if schedule else None,
        "warmup_epochs": warmup_epochs,
        "augment": augment,
        "augment_params": None if rotate is None else {"rotate": rotate},
        "pretrained": pretrained,
        "weights": str(weights) if weights else None,
        "freeze_backbone": freeze_backbone,
        "init": init.value if init else None,
        "class_weights": class_weights,
        "balanced_sampling": balanced,
        "amp": amp,
        "compile": compile_model,
        "workers": workers,
        "seed": seed,
        "early_stop": early_stop,
        "aggregate": aggregate.value if aggregate else None,
        "study_model": study_model,
        "view_pool": view_pool.value if view_pool else None,
        "max_views": max_views,
        "out": str(out) if out else None,
    }
    given = {k: v for k, v in given.items() if v is not None}
    main_rank = os.environ.get("RANK", "0") == "0"
    if not main_rank:
        console.state.quiet = True

    from muracli.errors import ConfigError
    from muracli.training.config import TrainConfig

    if resume is not None:
        fixed = sorted(set(given) - RESUMABLE)
        if fixed:
            raise ConfigError(
                f"--resume continues a run with its own options; cannot change {', '.join('--' + k.replace('_', '-') for k in fixed)}",
                f"start a new run instead, or resume with only --epochs/--gpu/--cpu/--workers: mura train --resume {resume}",
            )
        from muracli.training.trainer import resume_config

        config = resume_config(resume, **given)
    else:
        if cache is not None and image_size is None:
            from muracli.data.cache import open_cache

            given["image_size"] = open_cache(cache).size
        config = TrainConfig(**given)

    from muracli.training.trainer import train as run_training

    def on_epoch(row: dict[str, Any]) -> None:
        if json_output or console.state.quiet:
            return
        console.out.print(_epoch_summary(row, config.epochs), soft_wrap=True)

    with console.RichProgress(enabled=console.show_progress() and main_rank) as progress:
        result = run_training(config, resume=resume, progress=progress, on_epoch=on_epoch)
    if not main_rank:
        return
    if json_output:
        console.print_json(
            {
                "run_dir": str(result.run_dir),
                "epochs": result.epochs,
                "best_epoch": result.best_epoch,
                "best_valid_kappa": result.best_kappa,
                "best_valid_auc": result.best_auc,
                "stopped_early": result.stopped_early,
                "seconds": round(result.seconds, 2),
                "history": result.history,
            }
        )
        return
    kappa = "n/a" if result.best_kappa is None else f"{result.best_kappa:.3f}"
    console.out.print(
        f"[bold]Best valid kappa {kappa}[/] at epoch {result.best_epoch} "
        f"({result.epochs} epochs, {result.seconds:.0f} s{', stopped early' if result.stopped_early else ''})"
    )
    console.out.print(f"Run directory: {result.run_dir}")
    console.out.print(f"Next: mura evaluate {result.run_dir} --bootstrap 1000")


def _epoch_summary(row: dict[str, Any], total: int) -> str:
    def f(value: Any, spec: str = ".3f") -> str:
        return "n/a" if value is None else format(value, spec)

    star = " [green]*best[/]" if row.get("best") else ""
    return (
        f"epoch {row['epoch']}/{total}  train loss {f(row['train_loss'])}  valid loss {f(row['valid_loss'])}  "
        f"kappa {f(row['valid_kappa'])}  AUC {f(row['valid_auc'])}  lr {row['lr']:.2g}  "
        f"{f(row['seconds'], '.1f')} s  {f(row['images_per_s'], '.0f')} img/s{star}"
    )
