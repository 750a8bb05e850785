"""`mura download`."""

from __future__ import annotations

import typer

from muracli.errors import MuraError


def register(app: typer.Typer) -> None:
    app.command(name="download")(download)


def download() -> None:
    """Not implemented yet."""
    raise MuraError("`mura download` is not implemented yet", "it arrives in a later release")
