"""The training run, top to bottom (SPEC §4).

``train`` reads like torchvision's reference script: distributed set-up,
data, model, optimiser and schedule, resume, then for every epoch
``train_one_epoch``, ``validate`` and save. The step itself is a plain
function (``training.step``); AMP, DDP, channels_last and compile are wrapped
around it. Only rank 0 writes files.
"""

from __future__ import annotations

import math
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from muracli import __version__
from muracli.batches.augment import GREY_MEAN, GREY_STD
from muracli.errors import ConfigError, TrainingInterrupted
from muracli.progress import ProgressFn, silent
from muracli.runtime import distributed
from muracli.runtime.checkpoint import load_checkpoint, save_checkpoint
from muracli.runtime.devices import Precision, choose_precision, select_device
from muracli.runtime.distributed import World
from muracli.runtime.rundir import RunDir, default_run_dir, record_latest
from muracli.training.config import TrainConfig
from muracli.training.data import TrainData, load_train_data
from muracli.training.interrupt import StopFlag
from muracli.training.optim import Schedule, build_optimizer, current_lr
from muracli.training.step import train_step
from muracli.training.validate import validate

CLASS_NAMES = ["normal", "abnormal"]
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    best_epoch: int | None
    best_kappa: float | None
    best_auc: float | None
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Progress:
    """Where the run stands; saved in ``last.pt`` so a resume continues exactly."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed steps inside the current epoch
    loss_sum: float = 0.0  # running train-loss sum and image count of the current epoch
    seen: int = 0
    best_kappa: float = -math.inf
    best_epoch: int | None = None
    best_auc: float | None = None
    stale_epochs: int = 0  # epochs since the best kappa, for early stopping
    stopped_early: bool = False

    def state(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train(
    config: TrainConfig,
    *,
    resume: Path | str | None = None,
    progress: ProgressFn | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train (or resume) a run and return where it ended up.

    ``resume`` is a run directory: its ``config.json`` should already be in
    ``config`` (see ``resume_config``), and its ``last.pt`` is restored.
    """
    config.validate()
    world = distributed.world_from_environment()
    device = select_device(config.device, world.local_rank)
    distributed.start(world, device)
    try:
        return _train(config, world, device, Path(resume) if resume else None, progress or silent, on_epoch)
    finally:
        distributed.stop(world)


def resume_config(run_dir: Path | str, *, epochs: int | None = None, **overrides: Any) -> TrainConfig:
    """The config of an earlier run, with ``--epochs`` (the new total) and execution options overridden."""
    run = RunDir(run_dir)
    if not run.last_path.is_file():
        from muracli.errors import CheckpointError

        raise CheckpointError(f"{run.path} has no last.pt to resume from", "pass the run directory that `mura train` wrote")
    config = TrainConfig.from_dict(run.read_config()["config"])
    config.out = str(run.path)
    if epochs is not None:
        config.epochs = epochs
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    return config


def _train(config, world: World, device, resume: Path | None, progress: ProgressFn, on_epoch) -> TrainResult:
    started = time.monotonic()
    _seed_everything(config.seed)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    precision = choose_precision(device, config.amp)
    channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    data = load_train_data(config, world, device, progress)

    from muracli.models import ModelSpec, build_model

    spec = ModelSpec(
        name=config.model, in_channels=1, num_classes=2, dropout=config.dropout, init=config.init,
        pretrained=config.pretrained, weights=config.weights, freeze_backbone=config.freeze_backbone,
    )
    # A resumed run takes its weights from last.pt: no ImageNet download or weights file.
    model = build_model(spec.architecture_only() if resume is not None else spec, progress=progress)
    if config.study_model:
        from muracli.models.multiview import build_study_model

        model = build_study_model(model, config.view_pool)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), config)
    schedule = Schedule(optimizer, config, data.steps_per_epoch)
    scaler = precision.scaler(device)
    loss_fn = nn.CrossEntropyLoss(weight=data.class_weights.to(device) if config.class_weights else None)
    augment = config.augmentation()
    augment_rng = torch.Generator().manual_seed(config.seed * 1000 + world.rank)

    run = RunDir(config.out or default_run_dir(config.model))
    if resume is None and run.holds_run():
        raise ConfigError(
            f"{run.path} already holds a training run",
            f"continue it with `mura train --resume {run.path}`, or pass another --out",
        )
    distributed.barrier(world)  # every rank has looked before rank 0 writes there
    state = Progress()
    if resume is not None:
        state = _restore(run.last_path, model, optimizer, schedule, scaler, augment_rng, world, device)
    if world.is_main:
        run.create()
        if resume is None:
            run.write_config(_config_record(config, data, device, precision, world, spec))
            run.log(f"training {config.model} on {device} ({precision.name}), world size {world.size}")
        else:
            run.truncate_metrics(state.epoch)
            run.log(f"resumed at epoch {state.epoch} step {state.step}, training to {config.epochs} epochs")
    config.out = str(run.path)

    trained = model
    if world.distributed:
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        trained = torch.compile(trained)

    meta = _checkpoint_meta(config, spec, data)
    history = run.read_metrics() if world.is_main and resume is not None else []
    with StopFlag() as stop:
        while state.epoch < config.epochs and not state.stopped_early:
            epoch = state.epoch + 1
            epoch_started = time.monotonic()
            progress("epoch", state.epoch, config.epochs)
            seen_before = state.seen
            _train_one_epoch(
                trained, data, state, epoch, optimizer, schedule, scaler, loss_fn, precision, augment, augment_rng,
                channels_last, device, world, stop, progress,
            )
            if distributed.any_rank(stop.raised, world, device):
                _interrupt(run, meta, model, optimizer, schedule, scaler, augment_rng, state, world, stop)
            seconds = time.monotonic() - epoch_started
            loss_sum, seen, fresh = distributed.sum_across(
                [state.loss_sum, state.seen, state.seen - seen_before], world, device
            )
            metrics = validate(
                model, data.valid, device=device, precision=precision, channels_last=channels_last,
                aggregate=config.aggregate, threshold=config.threshold, max_images=config.eval_batch_images,
                world=world, progress=progress, study_model=config.study_model,
            )
            schedule.after_epoch(metrics["valid_loss"])
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / max(1, seen),
                **metrics,
                "lr": current_lr(optimizer),
                "seconds": seconds,
                "images_per_s": fresh / seconds if seconds > 0 else None,
            }
            kappa = metrics["valid_kappa"] if metrics["valid_kappa"] is not None else -1.0
            improved = kappa > state.best_kappa
            if improved:
                state.best_kappa, state.best_epoch, state.best_auc = kappa, epoch, metrics["valid_auc"]
                state.stale_epochs = 0
            else:
                state.stale_epochs += 1
            state.epoch, state.step, state.loss_sum, state.seen = epoch, 0, 0.0, 0
            state.stopped_early = bool(config.early_stop) and state.stale_epochs >= config.early_stop
            history.append(row)
            if world.is_main:
                run.append_metrics(row)
                run.log(_epoch_line(row))
                if improved:
                    save_checkpoint({**meta, "state_dict": model.state_dict(), "epoch": epoch, "metrics": row}, run.best_path)
                _save_last(run, meta, model, optimizer, schedule, scaler, augment_rng, state)
                _draw_curves(run, history)
                if on_epoch is not None:
                    on_epoch({**row, "best": improved, "stopped_early": state.stopped_early})
            progress("epoch", state.epoch, config.epochs)
            if distributed.any_rank(stop.raised, world, device):
                _interrupt(run, meta, model, optimizer, schedule, scaler, augment_rng, state, world, stop)

    if world.is_main:
        if state.stopped_early:
            run.log(f"early stop: no better valid kappa for {config.early_stop} epochs")
        run.log(f"finished: best valid kappa {state.best_kappa:.4f} at epoch {state.best_epoch}")
        record_latest(run.path)
    return TrainResult(
        run_dir=run.path,
        epochs=state.epoch,
        best_epoch=state.best_epoch,
        best_kappa=state.best_kappa if state.best_epoch is not None else None,
        best_auc=state.best_auc,
        stopped_early=state.stopped_early,
        seconds=time.monotonic() - started,
        history=history,
    )


def _train_one_epoch(
    model, data: TrainData, state: Progress, epoch: int, optimizer, schedule, scaler, loss_fn,
    precision: Precision, augment, augment_rng, channels_last, device, world, stop: StopFlag, progress,
) -> None:
    from muracli.batches.augment import prepare_batch
    from muracli.runtime.inference import study_inputs

    model.train()
    data.sampler.set_epoch(epoch)
    data.sampler.start_batch = state.step
    steps = data.steps_per_epoch
    tick, tick_images = time.monotonic(), 0
    for *x, y in data.loader:
        if len(x) == 2:  # a study model's padded views and mask
            inputs = study_inputs(*x, device=device, mean=GREY_MEAN, std=GREY_STD, augment=augment, generator=augment_rng)
        elif data.prepared:  # augmented and normalised by the loader (the CPU path)
            inputs = x[0].contiguous(memory_format=torch.channels_last) if channels_last else x[0]
        else:
            inputs = prepare_batch(
                x[0], device=device, mean=GREY_MEAN, std=GREY_STD, augment=augment, generator=augment_rng,
                channels_last=channels_last,
            )
        targets = y.to(device, non_blocking=True)
        loss = train_step(model, inputs, targets, optimizer, scaler, loss_fn, precision.autocast(device))
        schedule.after_step()
        state.step += 1
        state.loss_sum += loss * len(y)
        state.seen += len(y)
        tick_images += len(y) * world.size
        elapsed = time.monotonic() - tick
        progress("train", state.step, steps, loss=state.loss_sum / state.seen, images_per_s=tick_images / max(elapsed, 1e-9))
        if distributed.any_rank(stop.raised, world, device):
            return


def _interrupt(run, meta, model, optimizer, schedule, scaler, augment_rng, state, world, stop) -> None:
    signum = stop.signal_number or 2
    if world.is_main:
        _save_last(run, meta, model, optimizer, schedule, scaler, augment_rng, state)
        run.log(f"interrupted by {StopFlag.name(signum)} at epoch {state.epoch} step {state.step}; last.pt saved")
    raise TrainingInterrupted(
        f"training interrupted by {StopFlag.name(signum)}; progress saved to {run.last_path}",
        signum,
        hint=f"resume with: mura train --resume {run.path}",
    )


def _save_last(run, meta, model, optimizer, schedule, scaler, augment_rng, state: Progress) -> None:
    save_checkpoint(
        {
            **meta,
            "state_dict": model.state_dict(),
            "epoch": state.epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "progress": state.state(),
            "rng": _rng_state(augment_rng),
        },
        run.last_path,
    )


def _restore(path: Path, model, optimizer, schedule, scaler, augment_rng, world: World, device) -> Progress:
    checkpoint = load_checkpoint(path, map_location=device)
    for key in ("optimizer", "progress", "rng"):
        if key not in checkpoint:
            raise ConfigError(f"{path} lacks {key!r}: it is not a resumable last.pt", "resume from the run directory's last.pt")
    model.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    schedule.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    state = Progress(**checkpoint["progress"])
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if torch.cuda.is_available() and rng.get("cuda"):
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    augment_rng.set_state(rng["augment"].cpu())
    random.setstate(_python_state(rng["python"]))
    np.random.set_state(("MT19937", rng["numpy"][0].numpy().astype(np.uint32), *rng["numpy"][1]))
    return state


def _rng_state(augment_rng: torch.Generator) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "augment": augment_rng.get_state(),
        "python": _listify(random.getstate()),
        # numpy arrays are not allowed by weights_only loading: store a tensor
        "numpy": [torch.from_numpy(keys.astype(np.int64)), [int(pos), int(has_gauss), float(gauss)]],
    }


def _listify(value):
    return [_listify(v) for v in value] if isinstance(value, (tuple, list)) else value


def _python_state(value):
    return tuple(_python_state(v) for v in value) if isinstance(value, list) else value


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
        "class_names": CLASS_NAMES,
        "aggregate": config.aggregate,
        "threshold": config.threshold,
        "data_fingerprint": data.fingerprint,
        "config": config.to_dict(),
    }


def _config_record(config, data: TrainData, device, precision: Precision, world: World, spec) -> dict[str, Any]:
    import torchvision

    return {
        "config": config.to_dict(),
        "model": spec.to_dict(),
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


def _epoch_line(row: dict[str, Any]) -> str:
    def f(value, spec=".4f"):
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    return (
        f"epoch {row['epoch']}: train loss {f(row['train_loss'])}, valid loss {f(row['valid_loss'])}, "
        f"kappa {f(row['valid_kappa'])}, AUC {f(row['valid_auc'])}, lr {row['lr']:.3g}, "
        f"{f(row['seconds'], '.1f')} s, {f(row['images_per_s'], '.0f')} img/s"
    )


def _draw_curves(run: RunDir, history: list[dict[str, Any]]) -> None:
    from muracli.metrics.plots import curves_png

    try:
        curves_png(history, run.curves_path)
    except Exception as exc:  # a plot must never cost a training run
        run.log(f"could not draw curves.png: {exc}")
