"""What this machine offers right now: the cores this process may use, and how busy they are.

``usable_cores`` is the one count every pool of workers or threads starts
from (preprocessing, the synthetic generator, loader threads, decoding in
``mura predict``): the cores the scheduler lets this process run on, which
under a container's or ``taskset``'s limit is fewer than the machine has.

``busy_cores`` measures how much of those cores other programs use *now*,
from two reads of ``/proc/stat`` a fraction of a second apart. The load
average would be the obvious source, but it decays over minutes: right
after a ``pip install`` it still says "busy" long after the cores went idle.
"""

from __future__ import annotations

import os
import time


def usable_cores() -> int:
    """The cores this process may run on (at least 1)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def busy_cores(interval: float = 0.25) -> float | None:
    """How many of the usable cores other work keeps busy, measured over ``interval`` seconds.

    ``None`` where ``/proc/stat`` cannot be read (not Linux). The process
    calling this sleeps while it measures, so what it sees is everybody else.
    """
    cpus = _usable_cpu_names()
    before = _cpu_times(cpus)
    if before is None:
        return None
    time.sleep(interval)
    after = _cpu_times(cpus)
    if after is None:
        return None
    busy = 0.0
    for name, (idle0, total0) in before.items():
        if name not in after:
            continue
        idle1, total1 = after[name]
        elapsed = total1 - total0
        if elapsed > 0:
            busy += 1.0 - (idle1 - idle0) / elapsed
    return max(0.0, busy)


def _usable_cpu_names() -> set[str] | None:
    """``cpuN`` of the cores this process may use, or None for "every core" (no affinity API)."""
    if hasattr(os, "sched_getaffinity"):
        return {f"cpu{n}" for n in os.sched_getaffinity(0)}
    return None


def _cpu_times(cpus: set[str] | None) -> dict[str, tuple[int, int]] | None:
    """``{cpuN: (idle ticks, total ticks)}`` from /proc/stat, for ``cpus`` (None: all)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            lines = handle.readlines()
    except OSError:
        return None
    times = {}
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or (cpus is not None and name not in cpus):
            continue
        ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
        times[name] = (ticks[3] + ticks[4], sum(ticks))
    return times or None
