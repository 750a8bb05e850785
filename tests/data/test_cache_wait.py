"""Two processes that need the same cache: the second waits for the first's build and uses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from muracli.data.cache import open_cache

# A real builder, slowed down inside its build (while it holds the lock) so the second process meets it there.
BUILDER = """
import sys, time, pathlib
from muracli.data.cache_build import build_cache
started = pathlib.Path(sys.argv[2])
def progress(task, done, total=None, **fields):
    if not started.exists():
        started.write_text("building")
        time.sleep(float(sys.argv[3]))
cache = build_cache(sys.argv[1], size=16, workers=0, progress=progress)
print(cache.path, cache.reused)
"""


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("first_ends", ["finishes", "is killed"])
def test_a_second_build_waits_for_the_first_and_uses_its_cache(tiny_mura, tmp_path, first_ends):
    started = tmp_path / "started"
    first = subprocess.Popen([sys.executable, "-c", BUILDER, str(tiny_mura), str(started), "6"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(started.exists, "the first build to start")
    second_err = tmp_path / "second.err"
    with second_err.open("w") as err:
        second = subprocess.Popen(
            [sys.executable, "-m", "muracli", "preprocess", "--data", str(tiny_mura), "--size", "16", "--workers", "0",
             "--json"], stdout=subprocess.PIPE, stderr=err, text=True)
    _wait_for(lambda: "waiting" in second_err.read_text(), "the second process to say it waits")
    assert second.poll() is None and first.poll() is None
    if first_ends == "is killed":
        first.send_signal(signal.SIGKILL)  # a crashed builder: the kernel drops its lock
    first_out, first_err = first.communicate(timeout=60)
    second_out, _ = second.communicate(timeout=60)
    assert second.returncode == 0, second_err.read_text()
    message = second_err.read_text()
    assert "Another process is building the cache" in message and "Error" not in message
    summary = json.loads(second_out)
    folders = list((tiny_mura / "mura-cache").iterdir())
    assert len(folders) == 1 and summary["cache"] == str(folders[0])
    if first_ends == "finishes":
        assert first.returncode == 0, first_err
        assert first_out.split() == [str(folders[0]), "False"]
        assert summary["reused"] is True  # built once, by the first
    else:
        assert first.returncode == -signal.SIGKILL and summary["reused"] is False
    cache = open_cache(folders[0])
    assert cache.size == 16 and cache.manifest.counts == summary["counts"]
