"""`mura demo`."""

from __future__ import annotations

import typer

from muracli.errors import MuraError


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)


def demo() -> None:
    """Not implemented yet."""
    raise MuraError("`mura demo` is not implemented yet", "it arrives in a later release")
