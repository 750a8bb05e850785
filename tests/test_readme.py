"""The README's command lines work as written.

Fenced blocks marked ``sh`` are the tour: cheap, on synthetic data, and run
here line by line, in order, in an empty folder, each line exactly as the
README has it. Blocks marked ``bash`` need a GPU, the real MURA or hours:
each of their ``mura`` (and ``torchrun ... -m muracli``) lines is parsed by
the CLI itself, so a renamed or misspelt option or a bad choice fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from muracli.cli.app import _click_exceptions, app

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(kind: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8")) if lang == kind]


def command_lines(body: str) -> list[str]:
    """Lines that are commands, without comments, prompts and continuation lines."""
    lines = []
    for raw in body.splitlines():
        line = raw.split(" #")[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def mura_arguments(line: str) -> list[list[str]]:
    """The argument lists of each mura invocation on a shell line (``a && b`` chains too)."""
    found = []
    for part in re.split(r"&&|;|\|", line):
        words = shlex.split(part)
        if words[:1] == ["mura"]:
            found.append(words[1:])
        elif words[:1] == ["torchrun"] and "muracli" in words:
            found.append(words[words.index("muracli") + 1:])
    return found


def test_the_quickstart_is_two_commands_install_and_demo_then_tests():
    quickstart = README.read_text(encoding="utf-8").split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    (body,) = [body for lang, body in FENCE.findall(quickstart) if lang == "bash"]
    install, tests = command_lines(body)
    assert "pip install" in install and install.endswith("mura demo")
    assert tests == "python -m pytest -q"


def test_every_bash_block_mura_line_parses():
    command = typer.main.get_command(app)
    checked = 0
    for body in blocks("bash"):
        for line in command_lines(body):
            for args in mura_arguments(line):
                if not args or args[0].startswith("-"):
                    continue
                sub = command.commands.get(args[0])
                assert sub is not None, f"README: unknown command in {line!r}"
                try:
                    sub.make_context(f"mura {args[0]}", list(args[1:]), resilient_parsing=False)
                except _click_exceptions().ClickException as exc:
                    pytest.fail(f"README line {line!r}: {exc.format_message()}")
                checked += 1
    assert checked >= 20  # the paper recipe, the thesis experiments, GPUs, the real MURA


@pytest.mark.slow
def test_the_tour_runs_as_written(tmp_path):
    (tour,) = [body for body in blocks("sh") if "mura download --synthetic" in body]
    env = {k: v for k, v in os.environ.items() if k != "MURA_DATA"}
    env.update(MURA_STATE_DIR=str(tmp_path / "state"), NO_COLOR="1", COLUMNS="120")
    work = tmp_path / "tour"
    work.mkdir()
    shutil.copytree(README.parent / "examples", work / "examples")  # the tour runs from the repository's folder
    outputs = {}
    for line in command_lines(tour):
        (args,) = mura_arguments(line)
        result = subprocess.run(
            [sys.executable, "-m", "muracli", *args], cwd=work, env=env, capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, f"{line}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, line
        outputs[line] = result.stdout
    # What the README says these commands leave behind.
    assert (work / "data" / "MURA-v1.1" / "synthetic_findings.csv").is_file()
    assert (work / "montage.png").is_file()
    for name in ("config.json", "metrics.csv", "best.pt", "last.pt", "log.txt", "curves.png"):
        assert (work / "runs" / "cnn-64" / name).is_file(), name
    for name in ("metrics.json", "predictions.csv", "image_predictions.csv", "roc.png", "confusion.png"):
        assert (work / "eval" / "cnn-64" / name).is_file(), name
    assert list((work / "cams").glob("*.png"))
    for seed in (0, 1):  # the two-run grid, each run complete
        assert (work / "sweeps" / "seeds" / f"seed-{seed}" / "last.pt").is_file()
    assert (work / "sweeps" / "seeds" / "sweep.json").is_file()
    folded = outputs["mura compare sweeps/seeds --format markdown"]
    header, _, *rows = [line.strip("|").split(" | ") for line in folded.strip().splitlines()]
    assert len(rows) == 1 and rows[0][header.index("n")].strip() == "2"  # seed-0 and seed-1: one row of 2 runs
    json_line = next(line for line in outputs if "--json" in line)
    assert '"disclaimer"' in outputs[json_line]
