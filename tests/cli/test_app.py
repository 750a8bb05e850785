"""The root command: version, help, error mapping, and the no-heavy-import rule."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from muracli import __version__

HEAVY = ("torch", "torchvision", "pandas", "sklearn", "matplotlib", "pydicom", "imagecodecs", "numpy", "numba")
COMMANDS = ("download", "stats", "preprocess", "train", "average", "evaluate", "predict", "compare", "demo")


def imported_modules(args: list[str], env: dict | None = None) -> set[str]:
    """Top-level modules imported by ``python -m muracli ARGS`` (via -X importtime)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "muracli", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("args", [["--help"], *[[cmd, "--help"] for cmd in COMMANDS]], ids=lambda a: " ".join(a))
def test_help_does_not_import_heavy_modules(args):
    loaded = imported_modules(args)
    assert "muracli" in loaded
    assert not loaded & set(HEAVY), f"`mura {' '.join(args)}` imported {sorted(loaded & set(HEAVY))}"


def test_completion_starts_no_python():
    """TAB completion is static (completions/): no interpreter, so no torch, on each key press."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "completions"
    for script in ("mura.bash", "_mura", "mura.fish"):
        text = (folder / script).read_text()
        assert "train" in text and "image-size" in text  # fish writes long options as -l image-size
        assert "python" not in text.lower() and "_MURA_COMPLETE" not in text


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"mura {__version__}"


def test_every_command_is_registered(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for cmd in COMMANDS:
        assert cmd in result.stdout


def test_unknown_option_is_a_usage_error(cli):
    result = cli("stats", "--no-such-option")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error:") and "--no-such-option" in lines[0]
    assert "Traceback" not in result.stderr


def test_errors_are_one_line_without_traceback(cli, tmp_path):
    result = cli("stats", "--data", tmp_path / "missing")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error:") and "does not exist" in lines[0]
    assert lines[1].startswith("Hint:") and "mura download" in lines[1]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "muracli", "--debug", "stats", "--data", str(tmp_path / "missing")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "Error:" in proc.stderr


def test_mura_debug_env_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "muracli", "stats", "--data", str(tmp_path / "missing")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MURA_DEBUG": "1"},
    )
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr


def test_unexpected_exceptions_are_one_line(cli, monkeypatch):
    import muracli.data.dataset as dataset

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(dataset, "read_dataset", boom)
    result = cli("stats")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: unexpected RuntimeError: kaboom")
    assert "Traceback" not in result.stderr


def test_python_dash_m_works():
    proc = subprocess.run([sys.executable, "-m", "muracli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and __version__ in proc.stdout
