"""The training run, top to bottom.

``train`` reads like torchvision's reference script: distributed set-up,
data, model, optimiser and schedule, resume, then for every epoch
``train_one_epoch``, ``validate`` and save. The step itself is a plain
function (``training.step``); AMP, DDP, channels_last and compile are wrapped
around it. What a run trains with is built once into a ``Session``; its
checkpoints belong to a ``Checkpointer``. Only rank 0 writes files.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from muracli import __version__
from muracli.batches.augment import GREY_MEAN, GREY_STD, AugmentConfig
from muracli.batches.mix import BatchMix
from muracli.batches.sampler import mix_seed
from muracli.choices import CLASS_NAMES
from muracli.metrics.compare import chosen_weights
from muracli.errors import CheckpointError, ConfigError
from muracli.progress import ProgressFn, silent
from muracli.runtime import distributed
from muracli.runtime.devices import Precision, choose_precision, compile_model, select_device
from muracli.runtime.distributed import World
from muracli.runtime.rundir import RunDir, default_run_dir, epoch_line, record_latest
from muracli.training.checkpointer import Checkpointer, Progress, seed_everything
from muracli.training.config import TrainConfig
from muracli.training.data import TrainData, load_train_data
from muracli.training.interrupt import StopFlag
from muracli.training.sizing import device_memory, resolve_sizes
from muracli.training.optim import Schedule, build_optimizer, current_lr
from muracli.training.ema import ema_model
from muracli.training.loss import TrainLoss
from muracli.training.meter import LossMeter, is_tick, tick_every
from muracli.training.validate import validate
from muracli.training.window import StepWindow, steps_per_epoch, windows

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    """Where a run ended up. ``best_kappa``/``best_auc`` are those of the split that chose
    best.pt (``selected_on``: ``valid`` or ``train:FRACTION``); ``best_valid_*`` valid's at that epoch."""

    run_dir: Path
    epochs: int
    best_epoch: int | None
    best_kappa: float | None
    best_auc: float | None
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    selected_on: str = "valid"
    best_valid_kappa: float | None = None
    best_valid_auc: float | None = None
    notes: list[str] = field(default_factory=list)  # for the user, e.g. a compile mode that fell back


@dataclass
class Session:
    """What one run trains with, built once by ``_start``: the loop's state lives in ``Progress``."""

    config: TrainConfig
    world: World
    device: torch.device
    precision: Precision
    channels_last: bool
    data: TrainData
    spec: Any  # ModelSpec
    model: nn.Module  # unwrapped and uncompiled: what checkpoints hold and validation runs
    trained: nn.Module  # the same model under DDP and torch.compile: what the train step runs
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: "torch.amp.GradScaler"
    loss_fn: nn.Module
    augment: AugmentConfig | None
    augment_rng: torch.Generator
    mix: BatchMix  # mixup / CutMix (inactive unless asked for), drawing from its own generator
    window: StepWindow  # one optimiser step over --accumulate batches
    steps_per_epoch: int  # optimiser steps per epoch
    ema: Any = None  # torch.optim.swa_utils.AveragedModel with --ema, else None
    notes: list[str] = field(default_factory=list)  # for the user: the CLI shows them as warnings


def train(
    config: TrainConfig,
    *,
    resume: Path | str | None = None,
    progress: ProgressFn | None = None,
    on_epoch: EpochCallback | None = None,
    on_note: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train (or resume) a run and return where it ended up.

    ``resume`` is a run directory: its ``config.json`` should already be in
    ``config`` (see ``resume_config``), and its ``last.pt`` is restored. An unset
    batch size, learning rate and evaluation batch are chosen for the device first
    (``training.sizing``) and written into ``config``. ``on_note`` hears each note for the
    user (e.g. a compile mode the CPU lacks) as it arises; ``TrainResult.notes`` has them all.
    """
    config.validate()
    world = distributed.world_from_environment()
    device = select_device(config.device, world.local_rank)
    resolve_sizes(config, device.type, device_memory(device))
    started = distributed.start(world, device)
    try:
        return _train(config, world, device, Path(resume) if resume else None, progress or silent, on_epoch, on_note)
    finally:
        if started:
            distributed.stop(world)


def resume_config(run_dir: Path | str, *, epochs: int | None = None, **overrides: Any) -> TrainConfig:
    """The config of an earlier run, with ``--epochs`` (the new total) and the other
    options ``RESUMABLE_FIELDS`` allows overridden; any other override is a ``ConfigError``."""
    run = RunDir(run_dir)
    if not run.last_path.is_file():
        raise CheckpointError(f"{run.path} has no last.pt to resume from", "pass the run directory that `mura train` wrote")
    config = TrainConfig.from_dict(run.read_config()["config"])
    config.out = str(run.path)
    return config.resumed(epochs=epochs, **overrides)


def _train(config: TrainConfig, world: World, device, resume: Path | None, progress: ProgressFn, on_epoch,
           on_note=None) -> TrainResult:
    started = time.monotonic()
    session = _start(config, world, device, resume is not None, progress)
    if world.is_main and on_note is not None:
        for note in session.notes:
            on_note(note)
    run = RunDir(config.out or default_run_dir(config.model))
    if resume is None and run.holds_run():
        raise ConfigError(
            f"{run.path} already holds a training run",
            f"continue it with `mura train --resume {run.path}`, or pass another --out",
        )
    distributed.barrier(world)  # every rank has looked before rank 0 writes there
    checkpoints = Checkpointer(
        run, _checkpoint_meta(config, session.spec, session.data), model=session.model,
        optimizer=session.optimizer, schedule=session.schedule, scaler=session.scaler,
        augment_rng=session.augment_rng, mix_rng=session.mix.generator if session.mix.active else None,
        ema=session.ema, keep_epochs=config.keep_epochs, world=world,
    )
    state = checkpoints.restore(device) if resume is not None else Progress()
    if world.is_main:
        _open_run(run, session, state, resumed=resume is not None)
    config.out = str(run.path)

    history = run.read_metrics() if world.is_main and resume is not None else []
    with StopFlag() as stop:
        while state.epoch < config.epochs and not state.stopped_early:
            row, improved = _epoch(session, state, checkpoints, stop, progress)
            history.append(row)
            if world.is_main:
                run.log(epoch_line(row, config.epochs))
                _draw_curves(run, history)
                if on_epoch is not None:
                    on_epoch({**row, "best": improved, "stopped_early": state.stopped_early})
            progress("epoch", state.epoch, config.epochs)
            if distributed.any_rank(stop.raised, world, device):
                checkpoints.interrupt(state, stop)

    best_kappa = state.best_kappa if state.best_epoch is not None else None
    if world.is_main:
        chooser = config.chooser
        if state.stopped_early:
            run.log(f"early stop: no better {chooser} kappa for {config.early_stop} epochs")
        kappa = "n/a" if best_kappa is None else f"{best_kappa:.4f}"
        run.log(f"finished: best {chooser} kappa {kappa} at epoch {state.best_epoch} (chosen on {config.select_on})")
        record_latest(run.path)
    return TrainResult(
        run_dir=run.path,
        epochs=state.epoch,
        best_epoch=state.best_epoch,
        best_kappa=best_kappa,
        best_auc=state.best_auc,
        stopped_early=state.stopped_early,
        seconds=time.monotonic() - started,
        history=history,
        selected_on=config.select_on,
        best_valid_kappa=state.best_valid_kappa,
        best_valid_auc=state.best_valid_auc,
        notes=session.notes,
    )


def _start(config: TrainConfig, world: World, device: torch.device, resuming: bool, progress: ProgressFn) -> Session:
    """Seeds, backends, data, model, optimiser, schedule, scaler and loss: everything before the first epoch."""
    seed_everything(config.seed)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    precision = choose_precision(device, config.amp, config.amp_dtype)
    channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    data = load_train_data(config, world, device, progress)

    from muracli.models import ModelSpec, build_model  # torchvision: only once training starts

    spec = ModelSpec(
        name=config.model, in_channels=1, num_classes=2, dropout=config.dropout, init=config.init,
        pretrained=config.pretrained, weights=config.weights, freeze_backbone=config.freeze_backbone,
    )
    # A resumed run takes its weights from last.pt: no ImageNet download or weights file.
    model = build_model(spec.architecture_only() if resuming else spec, progress=progress)
    if config.study_model:
        from muracli.models.multiview import build_study_model

        model = build_study_model(model, config.view_pool)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    trained, notes = model, []
    if world.distributed:
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        trained, notes = compile_model(trained, config.compile_mode or "default", device)
    optimizer = build_optimizer(model.parameters(), config)
    scaler = precision.scaler(device)
    weights = data.class_weights if config.class_weights else None
    loss_fn = TrainLoss(weights.to(device) if weights is not None else None, config.label_smoothing)
    ema = ema_model(model, config.ema)
    window = StepWindow(
        model=trained, raw=model, optimizer=optimizer, scaler=scaler, loss_fn=loss_fn,
        autocast=lambda: precision.autocast(device), class_weights=weights, clip_grad=config.clip_grad, ema=ema,
    )
    steps = steps_per_epoch(data.steps_per_epoch, config.accumulate)
    return Session(
        config=config, world=world, device=device, precision=precision, channels_last=channels_last, data=data,
        spec=spec, model=model, trained=trained, optimizer=optimizer, schedule=Schedule(optimizer, config, steps),
        scaler=scaler, loss_fn=loss_fn, augment=config.augmentation(),
        augment_rng=torch.Generator().manual_seed(config.seed * 1000 + world.rank),
        mix=BatchMix(config.mixup, config.cutmix, torch.Generator().manual_seed(mix_seed(config.seed, 0x313, world.rank))),
        window=window, steps_per_epoch=steps, ema=ema, notes=notes,
    )


def _open_run(run: RunDir, session: Session, state: Progress, *, resumed: bool) -> None:
    """Create the run directory and write what a new run starts with, or note the resume."""
    config = session.config
    run.create()
    for note in session.notes:
        run.log(f"note: {note}")
    if resumed:
        run.truncate_metrics(state.epoch)
        run.log(f"resumed at epoch {state.epoch} step {state.step}, training to {config.epochs} epochs")
        return
    run.write_config(_config_record(session))
    if session.data.selection is not None:
        run.write_selection(session.data.selection)
    run.log(f"training {config.model} on {session.device} ({session.precision.name}), world size {session.world.size}")


def _epoch(session: Session, state: Progress, checkpoints: Checkpointer, stop: StopFlag, progress: ProgressFn):
    """Train one epoch, validate, save; returns the epoch's metrics row and whether it is the best."""
    config, world, device = session.config, session.world, session.device
    epoch = state.epoch + 1
    epoch_started = time.monotonic()
    progress("epoch", state.epoch, config.epochs)
    seen_before = state.seen
    _train_one_epoch(session, state, epoch, stop, progress)
    if distributed.any_rank(stop.raised, world, device):
        checkpoints.interrupt(state, stop)
    seconds = time.monotonic() - epoch_started
    loss_sum, seen, fresh = distributed.sum_across([state.loss_sum, state.seen, state.seen - seen_before], world, device)
    metrics = _validate(session, session.model, progress)
    if session.ema is not None:
        metrics.update({f"ema_{k}": v for k, v in _validate(session, session.ema.module, progress).items()})
    session.schedule.after_epoch(metrics[f"{config.chooser}_loss"])
    row = {
        "epoch": epoch,
        "train_loss": loss_sum / max(1, seen),
        **metrics,
        "lr": current_lr(session.optimizer),
        "seconds": seconds,
        "images_per_s": fresh / seconds if seconds > 0 else None,
    }
    weights, chosen = chosen_weights(row, config.chooser)  # raw, unless --ema's weights scored better
    improved = state.end_epoch(epoch, chosen, chooser=config.chooser, early_stop=config.early_stop)
    if world.is_main:
        # The row before last.pt: a crash in between leaves a row that a resume from the older
        # last.pt drops (truncate_metrics), never a last.pt whose epoch metrics.csv lacks.
        checkpoints.run.append_metrics(row)
    if improved:
        checkpoints.save_best(epoch, row, weights=weights)
    checkpoints.save_last(state)
    checkpoints.save_epoch(epoch, row)
    return row, improved


def _validate(session: Session, model: nn.Module, progress: ProgressFn) -> dict[str, Any]:
    """The epoch's metrics on valid (reported every epoch, for the curves) and, when a
    held-out part of train chooses the checkpoint, on it (``select_*``)."""
    config = session.config
    options = dict(
        device=session.device, precision=session.precision, channels_last=session.channels_last,
        aggregate=config.aggregate, threshold=config.threshold, max_images=config.eval_batch_images,
        world=session.world, progress=progress, study_model=config.study_model,
    )
    metrics = validate(model, session.data.valid, **options)
    if session.data.select is not None:
        metrics.update(validate(model, session.data.select, prefix="select", **options))
    return metrics


def _train_one_epoch(session: Session, state: Progress, epoch: int, stop: StopFlag, progress: ProgressFn) -> None:
    """Train the rest of epoch ``epoch``. The loss is summed on the device and read back only at
    ticks (``training.meter``), so on CUDA the CPU queues steps ahead of the GPU; ``state`` is
    whole again when this returns (at the epoch's end or on a stop)."""
    data, world, accumulate, device = session.data, session.world, session.config.accumulate, session.device
    session.trained.train()
    data.sampler.set_epoch(epoch)
    data.sampler.start_batch = state.step * accumulate  # a step is one optimiser step: accumulate batches
    meter, every = LossMeter(state, device), tick_every(device)
    tick, tick_images = time.monotonic(), 0
    try:
        for items in windows(data.loader, accumulate):
            losses = session.window.step(items, lambda item: _batch(session, item))
            session.schedule.after_step()
            state.step += 1
            for loss, (*_, y) in zip(losses, items):
                meter.add(loss, len(y))
                tick_images += len(y) * world.size
            ticked = is_tick(state.step, session.steps_per_epoch, every)
            if ticked:
                elapsed = time.monotonic() - tick
                progress("train", state.step, session.steps_per_epoch, loss=meter.sync(),
                         images_per_s=tick_images / max(elapsed, 1e-9))
            # alone, a stop is a Python flag (read every step); under DDP asking the other ranks is a collective
            if (ticked or not world.distributed) and distributed.any_rank(stop.raised, world, device):
                return
    finally:
        meter.sync()


def _batch(session: Session, item: tuple) -> tuple[Any, Any]:
    """A loader item as model inputs and targets on the device: augmented, normalised, then mixed."""
    from muracli.batches.augment import prepare_batch
    from muracli.runtime.inference import study_inputs

    *x, y = item
    device = session.device
    augment = {"device": device, "mean": GREY_MEAN, "std": GREY_STD, "augment": session.augment, "generator": session.augment_rng}
    targets = y.to(device, non_blocking=True)
    if len(x) == 2:  # a study model's padded views and mask
        return study_inputs(*x, **augment), targets
    if session.data.prepared:  # augmented and normalised by the loader (the CPU path)
        inputs = x[0].contiguous(memory_format=torch.channels_last) if session.channels_last else x[0]
    else:
        inputs = prepare_batch(x[0], channels_last=session.channels_last, **augment)
    return session.mix(inputs, targets)


def _checkpoint_meta(config: TrainConfig, spec, data: TrainData) -> dict[str, Any]:
    """Everything needed to rebuild the model and use it, stored in every checkpoint."""
    return {
        "mura_version": __version__,
        "torch_version": str(torch.__version__),
        "model": spec.architecture_only().to_dict(),
        "study_model": {"view_pool": config.view_pool, "max_views": config.max_views} if config.study_model else None,
        "image_size": data.image_size,
        "fit": data.fit,
        "mean": GREY_MEAN,
        "std": GREY_STD,
        "class_names": list(CLASS_NAMES),
        "aggregate": config.aggregate,
        "threshold": config.threshold,
        "data_fingerprint": data.fingerprint,
        "config": config.to_dict(),
    }


def _config_record(session: Session) -> dict[str, Any]:
    """config.json: every option, the versions, the data and the device of a new run."""
    import torchvision

    config, data, device, precision, world = session.config, session.data, session.device, session.precision, session.world
    return {
        "config": config.to_dict(),
        "model": session.spec.to_dict(),
        "versions": {
            "mura": __version__,
            "torch": str(torch.__version__),
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "data": {
            "root": data.source,
            "cache": str(data.cache_path),
            "fingerprint": data.fingerprint,
            "train_images": len(data.train.index),
            "valid_images": len(data.valid.index),
            "selected_on": config.select_on,
            "body_parts": config.body_parts,
            "select_images": len(data.select.index) if data.select is not None else None,
            "select_studies": len(data.selection) if data.selection is not None else None,
            "class_weights": [float(w) for w in data.class_weights],
        },
        "device": {
            "type": device.type,
            "name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "precision": precision.name,
            "world_size": world.size,
            "cpu_threads": torch.get_num_threads(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _draw_curves(run: RunDir, history: list[dict[str, Any]]) -> None:
    from muracli.metrics.plots import curves_png

    try:
        curves_png(history, run.curves_path)
    except Exception as exc:  # a plot must never cost a training run
        run.log(f"could not draw curves.png: {exc}")
