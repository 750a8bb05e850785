"""How many CPU threads torch gets for the demo, and running a block with that many."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager



def choose_threads() -> int:
    """Torch threads for this machine now: every core, less those other programs keep busy.

    torch's CPU kernels split each operation over all cores and wait for the
    slowest; when other work already occupies the cores, that wait dominates
    (a loaded 2-core machine trains the cnn about four times faster on one
    thread than on two).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
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
