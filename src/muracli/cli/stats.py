"""`mura stats`."""

from __future__ import annotations

import typer

from muracli.errors import MuraError


def register(app: typer.Typer) -> None:
    app.command(name="stats")(stats)


def stats() -> None:
    """Not implemented yet."""
    raise MuraError("`mura stats` is not implemented yet", "it arrives in a later release")
