"""Options shared by several commands, declared once."""

from __future__ import annotations

import textwrap
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer


def examples(text: str) -> str:
    """An epilog of examples that click prints verbatim (each paragraph marked with \\b)."""
    paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
    return "Examples:\n\n" + "\n\n".join("\b\n" + p for p in paragraphs)


DataOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data",
        help="The folder holding MURA-v1.1/ (or that folder itself). Default: $MURA_DATA, else ./data.",
        show_default=False,
    ),
]


class Difficulty(str, Enum):
    easy = "easy"
    normal = "normal"
    hard = "hard"


class Fit(str, Enum):
    pad = "pad"
    stretch = "stretch"
    crop = "crop"


class Optimizer(str, Enum):
    sgd = "sgd"
    rmsprop = "rmsprop"
    adam = "adam"
    adamw = "adamw"


class Schedule(str, Enum):
    plateau = "plateau"
    cosine = "cosine"
    none = "none"


class Init(str, Enum):
    kaiming = "kaiming"
    xavier = "xavier"


class Aggregate(str, Enum):
    mean = "mean"
    max = "max"
    vote = "vote"


class ViewPool(str, Enum):
    mean = "mean"
    max = "max"
    attention = "attention"
