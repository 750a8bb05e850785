"""`mura train`."""

from __future__ import annotations

import typer

from muracli.errors import MuraError


def register(app: typer.Typer) -> None:
    app.command(name="train")(train)


def train() -> None:
    """Not implemented yet."""
    raise MuraError("`mura train` is not implemented yet", "it arrives in a later release")
