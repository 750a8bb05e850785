"""Options shared by several commands, declared once."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

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
