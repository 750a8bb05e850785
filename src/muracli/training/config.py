"""Every training option, its default, choices, range and help, in one table.

``TrainConfig`` is that table: each field is declared with ``option(...)``,
whose metadata says how ``mura train`` spells it (``flag``), what it
accepts (``choices``, ``low``/``high``), its help line, and whether
``--resume`` may change it. The CLI builds its options from these fields
(``muracli.cli.train``), the run directory stores the values as
``config.json``, and ``--resume`` reads them back. Nothing else holds a
training default.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from muracli.batches.augment_options import AugmentConfig
from muracli.choices import AGGREGATES, AMP_DTYPES, COMPILE_MODES, DEVICES, FITS, INITS, OPTIMIZERS, SCHEDULES, VIEW_POOLS, check_choice
from muracli.data.dataset import check_one_source
from muracli.data.layout import parse_body_parts
from muracli.errors import ConfigError


def option(
    default: Any = None,
    help: str | None = None,
    *,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    shown: str | None = None,
    path: bool = False,
    execution: bool = False,
    resumable: bool = False,
    to_config: Callable[[Any], Any] | None = None,
    cli_type: type | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A ``TrainConfig`` field with what the CLI and the checks need to know about it.

    ``help`` None: not a ``mura train`` option (set from code or config.json
    only). ``flag``: click's declarations, space-separated (``--model -m``,
    ``--gpu/--cpu``), default ``--field-name`` (``--x/--no-x`` for a switch). ``low``/``high``: the inclusive range. ``shown``: the
    default as the help states it, when the field's own (often ``None``:
    decided at run time) would not say it. ``path``: the value names a file
    or folder. ``execution``: changes how a run executes, not what it learns.
    ``resumable``: ``--resume`` may change it. ``to_config``/``cli_type``: the
    CLI takes a value of ``cli_type`` and ``to_config`` turns it into this
    field's value (``--gpu/--cpu`` into ``device``).
    """
    metadata = {
        "help": help, "flag": flag, "choices": choices, "low": low, "high": high, "shown": shown, "path": path,
        "execution": execution, "resumable": resumable, "to_config": to_config,
        "cli_type": cli_type,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _device_from_gpu(gpu: bool) -> str:
    return "cuda" if gpu else "cpu"


def _rotation(degrees: float) -> dict[str, float]:
    return {"rotate": degrees}


def select_fraction(select_on: str) -> float | None:
    """The FRACTION of ``train:FRACTION`` (strictly between 0 and 1), None for ``valid``; else a ``ConfigError``."""
    if select_on == "valid":
        return None
    hint = "--select-on valid (the default) or train:FRACTION, e.g. train:0.1 holds out a tenth of train's patients"
    kind, _, value = str(select_on).partition(":")
    try:
        fraction = float(value) if kind == "train" else math.nan
    except ValueError:
        fraction = math.nan
    if math.isnan(fraction):
        raise ConfigError(f"--select-on must be valid or train:FRACTION, got {select_on!r}", hint)
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"--select-on train:FRACTION needs 0 < FRACTION < 1, got {value}", hint)
    return fraction


def canonical_select_on(select_on: str) -> str:
    """``select_on`` as runs record it: ``valid`` or ``train:0.1`` (``train:0.10`` and ``train:.1`` alike)."""
    fraction = select_fraction(select_on)
    return "valid" if fraction is None else f"train:{fraction:g}"


_AUGMENT = AugmentConfig()


@dataclass
class TrainConfig:
    # -- data
    data: str | None = option(
        None, "The folder holding MURA-v1.1/ (or that folder itself). Default: $MURA_DATA, else ./data.",
        path=True, execution=True,
    )
    manifest: str | None = option(
        None, "Train on the images a CSV manifest lists (path,label,study,split[,body_part,patient]), not MURA.",
        path=True, execution=True,
    )
    cache: str | None = option(None, "Train on this preprocess cache (see `mura preprocess`).", path=True, execution=True)
    image_size: int = option(224, "Input size in pixels (square).", low=16, high=2048)
    fit: str = option("pad", "How images were made square in the cache.", choices=FITS)
    body_parts: list[str] | None = option(
        None, "Train and validate on these body parts only, comma-separated (XR_WRIST,XR_HAND).", flag="--body-part",
        cli_type=str, to_config=parse_body_parts, shown="all",
    )
    select_on: str = option(
        "valid", "The split that chooses best.pt, early stopping and the plateau schedule: valid (the MURA paper's "
        "practice, optimistic) or train:FRACTION, that share of train's patients (stratified by body part and label) "
        "held out of training, so valid only reports.", to_config=canonical_select_on,
    )
    select_seed: int = option(0, "Seed of the --select-on train:FRACTION split (independent of --seed).", low=0)
    # -- model
    model: str = option("cnn", "cnn, vgg16, densenet169 or any torchvision classifier name.", flag="--model -m")
    pretrained: bool = option(False, "Start from torchvision's ImageNet weights (downloaded and cached by torch hub).")
    weights: str | None = option(None, "Start from a local torchvision-format state dict (the offline way).", path=True)
    freeze_backbone: bool = option(False, "Train only the new head.", flag="--freeze-backbone")
    dropout: float = option(0.2, "Dropout before the 2-way head.", low=0.0, high=0.99)
    init: str = option("kaiming", "Weight init of new layers.", choices=INITS)
    study_model: bool = option(
        False, "One model over all views of a study at once (shared backbone, pooled features).", flag="--study-model"
    )
    view_pool: str = option("mean", "With --study-model: how view features are pooled.", choices=VIEW_POOLS)
    max_views: int = option(4, "With --study-model: views per study in training (random choice).", low=1)
    # -- optimisation
    epochs: int = option(10, "Epochs in all (with --resume: the new total).", low=1, resumable=True)
    batch_size: int | None = option(
        None, "Images per step per process (studies with --study-model).", low=1,
        shown="32 on the CPU; on CUDA by model, image size and the card's memory (densenet169: 128 at 224 px, 64 at 320)",
    )
    lr: float | None = option(
        None, "Learning rate.", shown="1e-3; with the batch size also unset, 1e-3 x batch/32 (1e-3 on the CPU)"
    )
    optimizer: str = option("adam", "The optimiser.", choices=OPTIMIZERS)
    momentum: float = option(0.9)
    weight_decay: float = option(0.0, "L2 penalty.", low=0.0)
    schedule: str = option(
        "plateau", "plateau (LR/10 when the --select-on split's loss stalls, the paper) or cosine with warm-up.",
        choices=SCHEDULES,
    )
    plateau_patience: int = option(1)
    warmup_epochs: float = option(0.0, "Cosine schedule: linear warm-up length, in epochs.", low=0.0)
    class_weights: bool = option(True, "Weight the loss as in the MURA paper (w_abnormal = N/(A+N)).")
    balanced_sampling: bool = option(False, "Draw normal and abnormal images equally often.", flag="--balanced/--no-balanced")
    augment: bool = option(True, "Random flips, rotations, scale and contrast jitter on training batches.")
    augment_params: dict[str, float] = option(
        help="Largest random rotation in degrees (the MURA paper: 30).", flag="--rotate", cli_type=float,
        to_config=_rotation, low=0.0, high=180.0, shown=f"{_AUGMENT.rotate:g}", factory=dict,
    )
    early_stop: int = option(
        0, "Stop after N epochs without a better kappa on the --select-on split (0: never).", low=0, resumable=True
    )
    # -- regularisation and weight averaging (0 / 1: off, the behaviour of runs recorded without them)
    label_smoothing: float = option(0.0, "Label smoothing of the (class-weighted) loss.", low=0.0, high=0.99)
    mixup: float = option(0.0, "Mixup on training batches: Beta(ALPHA, ALPHA) mixing (0: off).", low=0.0)
    cutmix: float = option(0.0, "CutMix on training batches: Beta(ALPHA, ALPHA) box area (0: off).", low=0.0)
    clip_grad: float = option(0.0, "Clip the gradient norm to this (0: off).", low=0.0)
    accumulate: int = option(1, "Accumulate the gradients of N batches per optimiser step.", low=1)
    ema: float = option(0.0, "Keep an exponential moving average of the weights with this decay (0: off).", low=0.0)
    keep_epochs: int = option(
        0, "Keep the weights of the last K epochs in RUN/epochs/ (for `mura average`).", low=0,
        resumable=True, execution=True,
    )
    aggregate: str = option("mean", "Study probability from image probabilities.", choices=AGGREGATES)
    threshold: float = option(0.5)
    # -- execution
    device: str = option(
        "auto", "Run on CUDA or the CPU.", flag="--gpu/--cpu", choices=DEVICES, shown="the GPU when present",
        cli_type=bool, to_config=_device_from_gpu, resumable=True, execution=True,
    )
    amp: bool | None = option(None, "Mixed precision (bf16 where supported, else fp16).", shown="on for CUDA")
    amp_dtype: str = option(
        "auto", "The mixed-precision dtype: auto (bf16 where supported, else fp16: today's choice, not yet tuned per "
        "model on a GPU), bf16, or fp16 (with loss scaling). bf16/fp16 turn --amp on.", choices=AMP_DTYPES,
    )
    channels_last: bool | None = option(None)  # None: on for CUDA
    compile: bool = option(False, "torch.compile the model.", flag="--compile", resumable=True, execution=True)
    compile_mode: str | None = option(
        None, "torch.compile's mode; implies --compile. reduce-overhead (CUDA graphs) and max-autotune are for CUDA: "
        "on the CPU they fall back to default with a warning.", choices=COMPILE_MODES, shown="default",
        resumable=True, execution=True,
    )
    workers: int | None = option(
        None, "Loader threads (worker processes with --study-model).", low=0,
        shown="1 on CPU, up to 4 on CUDA; study model 0 / up to 8", resumable=True, execution=True,
    )
    seed: int = option(0, "Random seed; same seed and data on CPU give the same metrics.")
    deterministic: bool = option(False)
    out: str | None = option(None, "Run directory.", shown="runs/<model>-<timestamp>", path=True, execution=True)
    eval_batch_images: int | None = option(None, resumable=True, execution=True)  # None: 256 on the CPU, sized on CUDA

    def __post_init__(self) -> None:
        if self.compile_mode is not None:
            self.compile = True  # --compile-mode alone asks for compilation
        if self.amp_dtype != "auto" and self.amp is None:
            self.amp = True  # --amp-dtype bf16/fp16 alone asks for mixed precision, on the CPU too

    def validate(self) -> "TrainConfig":
        """``self`` when every value is one of its choices and in its range, else a ``ConfigError``."""
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta["choices"] and value is not None:
                check_choice(value, meta["choices"], f.name.replace("_", " "))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                check_range(value, meta["low"], meta["high"], flag_of(f))

        def check(ok: bool, message: str, hint: str | None = None) -> None:
            if not ok:
                raise ConfigError(message, hint)

        check_one_source(self.data, self.manifest)
        check(self.lr is None or self.lr > 0, "--lr must be positive")
        check(self.amp is not False or self.amp_dtype == "auto", f"--amp-dtype {self.amp_dtype} asks for mixed precision "
              "but --no-amp turns it off", "drop one of them")
        check(0.0 < self.threshold < 1.0, "--threshold must be in (0, 1)")
        check(not (self.pretrained and self.weights), "--pretrained and --weights both given",
              "use one: --weights FILE is the offline way to get pretrained weights")
        check(self.ema < 1.0, f"--ema must be below 1, got {self.ema:g}", "a decay such as 0.999; 0 turns it off")
        check(not (self.study_model and (self.mixup or self.cutmix)), "--mixup and --cutmix mix images, not studies",
              "drop --mixup/--cutmix, or train an image model (without --study-model)")
        select_fraction(self.select_on)
        parse_body_parts(self.body_parts)
        return self

    @property
    def selection_fraction(self) -> float | None:
        """The share of train held out to choose the checkpoint, or None when valid chooses it."""
        return select_fraction(self.select_on)

    @property
    def chooser(self) -> str:
        """The prefix of the metrics that choose best.pt: ``select`` (a part of train) or ``valid``."""
        return "valid" if self.selection_fraction is None else "select"

    def augmentation(self):
        """The training augmentation (``AugmentConfig``), or None with ``augment`` off."""
        return AugmentConfig.from_dict(self.augment_params) if self.augment else None

    def resumed(self, *, epochs: int | None = None, **overrides: Any) -> "TrainConfig":
        """This run's config for ``--resume``: only the fields of ``RESUMABLE_FIELDS`` may change."""
        changes = {key: value for key, value in {"epochs": epochs, **overrides}.items() if value is not None}
        fixed = sorted(set(changes) - RESUMABLE_FIELDS)
        if fixed:
            allowed = ", ".join(sorted(flag_of(f).split("/")[0] for f in fields(self) if f.name in RESUMABLE_FIELDS))
            raise ConfigError(
                f"--resume continues a run with its own options; cannot change {', '.join(flag_of(FIELDS[k]) for k in fixed)}",
                f"start a new run instead, or resume with only {allowed}: mura train --resume {self.out}",
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Rebuild from ``config.json``; unknown keys (from a newer version) are ignored."""
        return cls(**{k: v for k, v in data.items() if k in FIELDS})


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in fields(TrainConfig)}
#: Options that change how a run executes but not what it learns: a finished run
#: whose config differs from another only in these is the same experiment.
EXECUTION_FIELDS = frozenset(name for name, f in FIELDS.items() if f.metadata["execution"])
#: What ``--resume`` may change: how the rest of the run executes, and how long it goes on.
RESUMABLE_FIELDS = frozenset(name for name, f in FIELDS.items() if f.metadata["resumable"])


def sized_to_cache(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (``TrainConfig`` field values) with ``image_size`` read from ``cache`` when a run
    names a cache and no image size: it trains at the size the cache holds (``mura train``, grids)."""
    if given.get("cache") is not None and "image_size" not in given:
        from muracli.data.cache import open_cache

        given = {**given, "image_size": open_cache(given["cache"]).size}
    return given


def declarations(f: dataclasses.Field, kind: type) -> list[str]:
    """Click's declarations of field ``f``'s option: its ``flag`` metadata, else ``--field-name``
    (``--field-name/--no-field-name`` for a switch, ``kind`` bool). ``mura train`` and grid keys read these."""
    if f.metadata["flag"]:
        return f.metadata["flag"].split()
    flag = "--" + f.name.replace("_", "-")
    return [f"{flag}/--no-{flag[2:]}" if kind is bool else flag]


def value_type(f: dataclasses.Field, hint: Any) -> type:
    """The type of value field ``f``'s option takes: its ``cli_type``, else its annotation ``hint`` without ``None``."""
    if f.metadata["cli_type"] is not None:
        return f.metadata["cli_type"]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def flag_of(f: dataclasses.Field) -> str:
    """How ``mura train`` spells the option of field ``f``: ``--image-size``, ``--gpu/--cpu``...

    ``flag`` metadata holds click's declarations, separated by spaces (``--model -m``).
    """
    return (f.metadata["flag"] or "--" + f.name.replace("_", "-")).split()[0]


def check_range(value: float, low: float | None, high: float | None, flag: str) -> None:
    name = flag.split("/")[0]
    if low is not None and high is not None and not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    if low is not None and value < low:
        raise ConfigError(f"{name} must be at least {low:g}, got {value:g}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be at most {high:g}, got {value:g}")
