"""`mura predict`."""

from __future__ import annotations

import typer

from muracli.errors import MuraError


def register(app: typer.Typer) -> None:
    app.command(name="predict")(predict)


def predict() -> None:
    """Not implemented yet."""
    raise MuraError("`mura predict` is not implemented yet", "it arrives in a later release")
