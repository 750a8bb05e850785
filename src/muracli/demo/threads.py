"""How many CPU threads torch gets for the demo, and running a block with that many."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from muracli.machine import busy_cores, usable_cores


def choose_threads() -> int:
    """Torch threads for this machine now: every usable core, less those other programs keep busy.

    torch's CPU kernels split each operation over all cores and wait for the
    slowest; when other work already occupies the cores, that wait dominates
    (a loaded 2-core machine trains the cnn about four times faster on one
    thread than on two). How busy the cores are is measured now (``busy_cores``),
    not read from the load average, which stays high for minutes after the
    work that raised it (a ``pip install``) is over. Where it cannot be
    measured (not Linux), every usable core.
    """
    cores = usable_cores()
    busy = busy_cores()
    if busy is None:
        return cores
    return max(1, min(cores, int(cores - busy + 0.5)))


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: leave as is), then restore."""
    if n is None:
        yield
        return
    import torch  # only here: choosing a count must not cost the torch import

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
