"""`mura evaluate`."""

from __future__ import annotations

import typer

from muracli.errors import MuraError


def register(app: typer.Typer) -> None:
    app.command(name="evaluate")(evaluate)


def evaluate() -> None:
    """Not implemented yet."""
    raise MuraError("`mura evaluate` is not implemented yet", "it arrives in a later release")
