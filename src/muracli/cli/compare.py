"""`mura compare`."""

from __future__ import annotations

import typer

from muracli.errors import MuraError


def register(app: typer.Typer) -> None:
    app.command(name="compare")(compare)


def compare() -> None:
    """Not implemented yet."""
    raise MuraError("`mura compare` is not implemented yet", "it arrives in a later release")
