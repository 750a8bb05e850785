"""Where the CLI writes: data on stdout, progress, warnings and errors on stderr.

Rich respects ``NO_COLOR`` and drops styling when a stream is not a terminal.
Progress bars are drawn only on an interactive stderr and never with
``--quiet``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@dataclass
class State:
    debug: bool = False
    quiet: bool = False


state = State(debug=os.environ.get("MURA_DEBUG", "") not in ("", "0", "false", "False"))

out = Console(highlight=False, soft_wrap=False)
# soft_wrap: an error or hint stays one line however narrow the terminal.
err = Console(stderr=True, highlight=False, soft_wrap=True)


def configure(*, debug: bool, quiet: bool) -> None:
    state.debug = state.debug or debug
    state.quiet = quiet


def error(message: str, hint: str | None = None) -> None:
    """One ``Error:`` line and an optional hint, on stderr, never markup-parsed."""
    err.print(f"[bold red]Error:[/] {_escape(message)}")
    if hint:
        err.print(f"[dim]Hint:[/] {_escape(hint)}")


def warn(message: str) -> None:
    if not state.quiet:
        err.print(f"[yellow]Warning:[/] {_escape(message)}")


def info(message: str) -> None:
    """A status line for people (stderr, so stdout stays clean for data)."""
    if not state.quiet:
        err.print(_escape(message))


def epoch(row: dict[str, Any], epochs: int, *, indent: str = "") -> None:
    """One finished epoch of a training run on stdout (``runtime.rundir.epoch_line``), starred when best.pt took it."""
    from muracli.runtime.rundir import epoch_line

    star = " [green]*best[/]" if row.get("best") else ""
    out.print(indent + _escape(epoch_line(row, epochs)) + star, soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))


def show_progress() -> bool:
    return not state.quiet and sys.stderr.isatty()


class RichProgress:
    """A ``muracli.progress.ProgressFn`` that draws one Rich bar per task name.

    Use as a context manager; when progress is hidden (``--quiet`` or stderr
    not a terminal) calls are cheap no-ops.
    """

    def __init__(self, enabled: bool | None = None):
        self.enabled = show_progress() if enabled is None else enabled
        self._tasks: dict[str, TaskID] = {}
        self._progress: Progress | None = None
        self._started = time.monotonic()

    def __enter__(self) -> "RichProgress":
        if self.enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=err,
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def __call__(self, task: str, completed: int, total: int | None = None, **fields: Any) -> None:
        if "note" in fields:  # a line for people, not a bar: shown with or without bars
            if self._progress is not None:
                self._progress.console.print(_escape(fields["note"]))
            else:
                info(fields["note"])
            return
        if self._progress is None:
            return
        text = "  ".join(f"{k.replace('_', ' ')} {_format_field(v)}" for k, v in fields.items())
        if task not in self._tasks:
            self._tasks[task] = self._progress.add_task(task, total=total, info=text)
        self._progress.update(self._tasks[task], completed=completed, total=total, info=text)


def _format_field(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def print_whole(renderable: Any) -> None:
    """Print on stdout: fitted to a terminal, but whole (never cut at 80 columns) into a pipe or file."""
    if out.is_terminal:
        out.print(renderable)
        return
    from rich.measure import Measurement

    width = Measurement.get(out, out.options.update(max_width=1000), renderable).maximum
    Console(width=max(width, 20), highlight=False, soft_wrap=False).print(renderable)


def print_json(data: object) -> None:
    """Machine-readable output: plain JSON on stdout, no styling or wrapping."""
    import json

    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()
