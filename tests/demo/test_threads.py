"""choose_threads: every usable core less the ones other programs keep busy now."""

from __future__ import annotations

import pytest

from muracli.demo import threads
from muracli.demo.threads import choose_threads
from muracli.machine import usable_cores


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has ``cores`` usable cores, ``busy`` of them busy (None: not measurable)."""

    def pretend(cores: int, busy: float | None) -> None:
        monkeypatch.setattr(threads, "usable_cores", lambda: cores)
        monkeypatch.setattr(threads, "busy_cores", lambda interval=0.25: busy)

    return pretend


def test_an_idle_machine_gets_every_core(machine):
    machine(cores=2, busy=0.0)
    assert choose_threads() == 2
    machine(cores=8, busy=0.3)  # a little background noise rounds away
    assert choose_threads() == 8


def test_one_busy_core_of_two_leaves_one_thread(machine):
    machine(cores=2, busy=1.0)
    assert choose_threads() == 1


def test_never_fewer_than_one_thread_nor_more_than_the_cores(machine):
    machine(cores=2, busy=5.0)
    assert choose_threads() == 1
    machine(cores=4, busy=1.6)  # 2.4 cores free: rounds to 2
    assert choose_threads() == 2


def test_all_cores_where_busyness_cannot_be_measured(machine):
    machine(cores=4, busy=None)
    assert choose_threads() == 4


def test_a_real_measurement_stays_within_the_usable_cores():
    assert 1 <= choose_threads() <= usable_cores()
