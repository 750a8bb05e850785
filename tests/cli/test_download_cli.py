"""`mura download --url` against a real server on 127.0.0.1 that never lets a transfer finish."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest
from http_server import DATA, NAME, FakeServer, serving

from muracli.cli.download import download as download_command
from muracli.data import download as core

PROXIES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.mark.slow  # the default back-off: about 16 s of pauses
def test_a_server_that_drops_every_transfer_ends_in_an_error_with_a_line_per_retry(tmp_path):
    dest = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in PROXIES}
    # Drops every transfer a third of the way in and answers Range requests with the whole file.
    with serving(FakeServer(support_range=False, drop_at=len(DATA) // 3)) as server:
        # stderr is a pipe, not a terminal; the timeout is the 60 s the command must end within.
        proc = subprocess.run(
            [sys.executable, "-m", "muracli", "download", "--url", server.url, "--dest", str(dest)],
            capture_output=True, text=True, env=env, timeout=60,
        )
    lines = proc.stderr.splitlines()
    retries = [line for line in lines if line.startswith("Warning:") and " retry " in line]
    errors = [line for line in lines if line.startswith("Error:")]
    assert proc.returncode == 1, proc.stderr
    assert len(retries) == core.RETRIES == len(server.log) - 1
    assert [f"retry {n} in" in line for n, line in enumerate(retries, 1)] == [True] * core.RETRIES
    assert all(f"closed after {len(DATA) // 3:,} of {len(DATA):,} bytes" in line for line in retries)
    assert len(errors) == 1
    port = server.url.split(":")[2].split("/")[0]
    assert f"download of http://127.0.0.1:{port}/files/{NAME}?… failed after {core.RETRIES} retries" in errors[0]
    assert f"{len(DATA) // 3:,} of {len(DATA):,} bytes kept in {dest / (NAME + '.part')}" in errors[0]
    assert "secret" not in proc.stderr
    assert lines[lines.index(errors[0]) + 1].startswith("Hint:") and "--archive" in proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == [f"{NAME}.part"]  # nothing installed, the part kept
    assert (dest / f"{NAME}.part").stat().st_size == len(DATA) // 3


def test_the_cli_defaults_are_the_cores():
    parameters = inspect.signature(download_command).parameters
    assert parameters["timeout"].default == core.TIMEOUT_S
    assert parameters["retries"].default == core.RETRIES
