"""The closed sets of values mura's options take, each written once.

The core checks values against these tuples (``check_choice``) and the CLI
turns the same tuples into its ``--help`` choices, so a new choice is added
in one place. Plain tuples of strings: importing this module costs nothing,
which matters because ``mura --help`` reads them.
"""

from __future__ import annotations

from muracli.errors import ConfigError

#: The two classes, by label: 0 = normal, 1 = abnormal.
CLASS_NAMES = ("normal", "abnormal")
#: MURA's public splits (the test split is hidden).
SPLITS = ("train", "valid")

#: How an image is made square in the cache (``data.fit``).
FITS = ("pad", "stretch", "crop")
#: Image probabilities to a study probability (``metrics.aggregate``).
AGGREGATES = ("mean", "max", "vote")
#: How a study model pools the features of its views (``models.multiview``).
VIEW_POOLS = ("mean", "max", "attention")
#: ``mura evaluate --calibrate``: how probabilities are calibrated (``metrics.calibration``).
CALIBRATIONS = ("temperature",)
#: ``mura evaluate --calibrate-on``: the run's selection split (part of train) or valid.
CALIBRATION_SPLITS = ("select", "valid")
#: ``mura evaluate --operating-point``: youden, or sensitivity=S / specificity=S.
OPERATING_POINTS = ("youden", "sensitivity", "specificity")
#: Optimisers and learning-rate schedules (``training.optim``).
OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
SCHEDULES = ("plateau", "cosine", "none")
#: Initialisation of newly created layers (``models.builder``).
INITS = ("kaiming", "xavier")
#: Where a run executes: ``auto`` is CUDA when present.
DEVICES = ("auto", "cpu", "cuda")
#: ``mura train --amp-dtype``: the autocast dtype (``auto``: bf16 where supported, else fp16).
AMP_DTYPES = ("auto", "bf16", "fp16")
#: ``mura train --compile-mode``: torch.compile's modes (the last two tuned for CUDA).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
#: How subtle the synthetic findings are (``synthetic.findings``).
DIFFICULTIES = ("easy", "normal", "hard")
#: What ``mura evaluate --metric`` can put first, in display order.
METRICS = ("kappa", "auc", "accuracy", "f1", "sensitivity", "specificity")
#: ``mura compare --sort``: kappa and auc best first, name alphabetical, time and image size smallest first.
SORT_KEYS = ("kappa", "auc", "name", "time", "image_size")
#: ``mura compare --format``: a Rich table on the terminal, or text to paste into a thesis.
COMPARE_FORMATS = ("table", "markdown", "latex", "csv")


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    """``value`` when it is one of ``choices``, else a ``ConfigError`` that lists them."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}", f"choose one of: {', '.join(choices)}")
    return value
