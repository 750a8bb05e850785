"""Progress reporting without printing.

Long-running core functions take a ``progress`` callable and call it as
``progress(task, completed, total, **fields)``: ``task`` names a bar (one
bar per distinct name), ``completed`` is the absolute count so far, ``total``
the expected count (``None`` when unknown) and ``fields`` extra figures to
show beside the bar (``loss=0.41``, ``images_per_s=812.0``). A call with a
``note="..."`` field is no bar but a one-off line for people (``Another
process is building the cache ...; waiting``): the CLI prints it even where
it draws no bars. The CLI passes a
Rich-backed implementation; library users pass their own or nothing.
"""

from __future__ import annotations

from typing import Any, Protocol


class ProgressFn(Protocol):
    def __call__(self, task: str, completed: int, total: int | None = None, **fields: Any) -> None: ...


def silent(task: str, completed: int, total: int | None = None, **fields: Any) -> None:
    """A progress callback that shows nothing."""
    return None
