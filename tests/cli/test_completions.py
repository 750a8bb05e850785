"""The shell completion scripts in completions/: current with the CLI, valid, and useful."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPLETIONS = ROOT / "completions"
GENERATOR = ROOT / "scripts" / "generate_completions.py"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("generate_completions", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def tree(generator):
    return generator.command_tree()


def test_committed_completions_are_current(generator, tmp_path):
    generator.write_all(tmp_path)
    stale = [
        name for name in generator.FILES.values()
        if not (COMPLETIONS / name).is_file()
        or (COMPLETIONS / name).read_text(encoding="utf-8") != (tmp_path / name).read_text(encoding="utf-8")
    ]
    assert not stale, f"stale completions ({', '.join(stale)}): run python scripts/generate_completions.py"


def test_generation_does_not_depend_on_hash_seeds(tmp_path):
    # click keeps some names in sets; string hashing differs between interpreter runs.
    for seed in ("1", "2"):
        subprocess.run(
            [sys.executable, str(GENERATOR), "--out", str(tmp_path / seed)], check=True, capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed}, timeout=60,
        )
    for name in ("mura.bash", "_mura", "mura.fish"):
        assert (tmp_path / "1" / name).read_text() == (tmp_path / "2" / name).read_text(), name


def test_check_mode_reports_stale_scripts(generator, tmp_path, capsys):
    assert generator.main(["--out", str(tmp_path), "--check"]) == 1
    assert "stale completions" in capsys.readouterr().err
    assert generator.main(["--out", str(tmp_path)]) == 0
    assert generator.main(["--out", str(tmp_path), "--check"]) == 0


def test_the_tree_follows_the_cli(tree):
    root, commands = tree
    names = [c.name for c in commands]
    assert names[:3] == ["download", "stats", "preprocess"] and "demo" in names
    assert {"--version", "--quiet", "-q", "--help", "-h"} <= {n for o in root for n in o.names}
    by_name = {c.name: c for c in commands}
    fit = next(o for o in by_name["preprocess"].options if "--fit" in o.names)
    assert fit.takes_value and fit.choices == ("pad", "stretch", "crop")
    gpu = next(o for o in by_name["train"].options if "--gpu" in o.names)
    assert not gpu.takes_value and set(gpu.exclusive) == {"--gpu", "--cpu"}
    cam = next(o for o in by_name["predict"].options if "--cam" in o.names)
    assert cam.path == "dir"
    assert by_name["predict"].arguments[0].variadic and by_name["predict"].arguments[0].path == "file"
    assert next(o for o in by_name["demo"].options if "--dir" in o.names).path == "dir"


def test_every_option_is_in_every_script(tree):
    _, commands = tree
    texts = {name: (COMPLETIONS / name).read_text(encoding="utf-8") for name in ("mura.bash", "_mura", "mura.fish")}
    for command in commands:
        for option in command.options:
            for name in option.names:
                fish_name = f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}"
                assert fish_name in texts["mura.fish"], (command.name, name)
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", texts["mura.bash"]), (command.name, name)
                assert re.search(rf"(?<![\w-]){re.escape(name)}[=\[]", texts["_mura"]) or f"{name}[" in texts["_mura"], (
                    command.name, name)
            for choice in option.choices:
                assert choice in texts["mura.bash"] and choice in texts["_mura"] and choice in texts["mura.fish"]


def test_tab_runs_no_python():
    for name in ("mura.bash", "_mura", "mura.fish"):
        text = (COMPLETIONS / name).read_text(encoding="utf-8")
        assert "python" not in text.lower().replace("scripts/generate_completions.py", "")
        assert "_MURA_COMPLETE" not in text
        assert not re.search(r"\$\(\s*mura\b|`mura\b|\(mura\b", text), f"{name} runs mura to complete"


# -- bash: parse it, then complete with it -----------------------------------------


def test_bash_script_parses():
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the bash completion"
    result = subprocess.run([bash, "-n", str(COMPLETIONS / "mura.bash")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def complete_bash(words: list[str], cwd: Path | None = None) -> list[str]:
    """What TAB offers after ``words`` (the last one is the word being completed)."""
    script = (
        f"source {COMPLETIONS / 'mura.bash'}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_mura\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd, timeout=30)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["mura", ""], ["download", "stats", "preprocess", "train", "sweep", "average", "evaluate", "predict", "compare", "demo"]),
        (["mura", "tr"], ["train"]),
        (["mura", "--q"], ["--quiet"]),
        (["mura", "--debug", "pre"], ["preprocess", "predict"]),
        (["mura", "preprocess", "--fit", ""], ["pad", "stretch", "crop"]),
        (["mura", "preprocess", "--fit", "=", "st"], ["stretch"]),
        (["mura", "train", "--opt"], ["--optimizer"]),
        (["mura", "train", "--optimizer", "adam"], ["adam", "adamw"]),
        (["mura", "evaluate", "--metric", "s"], ["sensitivity", "specificity"]),
        (["mura", "demo", "--diff"], ["--difficulty"]),
        (["mura", "demo", "--difficulty", "h"], ["hard"]),
        (["mura", "train", "--epochs", ""], []),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bash_completes(words, expected):
    assert complete_bash(words) == expected


def test_bash_completes_files_and_folders(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "scan one.png").write_bytes(b"")
    assert complete_bash(["mura", "predict", "sc"], cwd=tmp_path) == ["scan one.png"]
    assert complete_bash(["mura", "predict", "--cam", ""], cwd=tmp_path) == ["runs"]
    assert sorted(complete_bash(["mura", "stats", "--montage", ""], cwd=tmp_path)) == ["runs", "scan one.png"]


# -- zsh and fish: parse when installed, check the structure always ------------------


def test_zsh_script(tree):
    text = (COMPLETIONS / "_mura").read_text(encoding="utf-8")
    assert text.startswith("#compdef mura\n")
    _, commands = tree
    for command in commands:
        assert f"\n_mura_{command.name}() {{\n  _arguments -s -S \\\n" in text
        assert f"        {command.name}) _mura_{command.name} ;;" in text
        assert f"\n        '{command.name}:" in text  # listed for _describe
    assert text.count("{") == text.count("}")
    _assert_quotes_balanced(text)
    zsh = shutil.which("zsh")
    if zsh:
        result = subprocess.run([zsh, "-n", str(COMPLETIONS / "_mura")], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_fish_script(tree):
    text = (COMPLETIONS / "mura.fish").read_text(encoding="utf-8")
    _, commands = tree
    for command in commands:
        assert f"-a {command.name} -d " in text
        assert f"-n '__fish_seen_subcommand_from {command.name}' -s h -l help" in text
    assert "-l fit -x -a 'pad stretch crop'" in text
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(line.startswith("complete -c mura ") for line in lines)
    for line in lines:
        _assert_quotes_balanced(line, fish=True)
    fish = shutil.which("fish")
    if fish:
        result = subprocess.run([fish, "--no-execute", str(COMPLETIONS / "mura.fish")], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def _assert_quotes_balanced(text: str, *, fish: bool = False) -> None:
    """Single quotes pair up. Outside quotes a backslash escapes the next character; inside
    them it is literal in sh/zsh (hence '\\'') but escapes ' and \\ in fish."""
    inside = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and (not inside or (fish and text[i + 1 : i + 2] in ("'", "\\"))):
            i += 2
            continue
        if char == "'":
            inside = not inside
        i += 1
    assert not inside, f"unbalanced single quotes in {text[:80]!r}"
