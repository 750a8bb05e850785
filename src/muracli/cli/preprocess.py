"""`mura preprocess`."""

from __future__ import annotations

import typer

from muracli.errors import MuraError


def register(app: typer.Typer) -> None:
    app.command(name="preprocess")(preprocess)


def preprocess() -> None:
    """Not implemented yet."""
    raise MuraError("`mura preprocess` is not implemented yet", "it arrives in a later release")
