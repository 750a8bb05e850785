"""Packaging: one version everywhere, and a wheel that holds the package and nothing else."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Besides src/, what a build reads: the metadata and the readme it embeds.
BUILD_INPUTS = ("pyproject.toml", "README.md", "setup.py", "setup.cfg", "MANIFEST.in", "LICENSE", "LICENSE.txt")
FORBIDDEN_SUFFIXES = (".npy", ".npz", ".png", ".jpg", ".jpeg", ".dcm", ".pt", ".pth", ".zip", ".csv", ".pyc")
FORBIDDEN_PARTS = {"tests", "runs", "mura-cache", "mura-demo", "MURA-v1.1", "benchmarks", "__pycache__"}


def test_version_matches_the_package_metadata(cli):
    from muracli import __version__

    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"mura {importlib.metadata.version('muracli')}"
    assert __version__ == importlib.metadata.version("muracli")


def test_the_version_has_one_source():
    """pyproject.toml reads the version from muracli.__version__ instead of repeating it."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "muracli.__version__"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built, without network, from a clean copy of the sources (so the build
    writes nothing into the working tree that others share)."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    out = work / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "-w", str(out)],
        capture_output=True, text=True, timeout=300, cwd=work,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(out.glob("muracli-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
def test_wheel_holds_every_module_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    version = importlib.metadata.version("muracli")
    assert wheel.name.startswith(f"muracli-{version}-py3-none-any")

    modules = {n for n in names if n.endswith(".py")}
    expected = {
        path.relative_to(ROOT / "src").as_posix()
        for path in (ROOT / "src" / "muracli").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert expected <= modules, f"missing from the wheel: {sorted(expected - modules)}"
    assert {"muracli/__init__.py", "muracli/cli/app.py", "muracli/demo/__init__.py"} <= modules

    package_files = [n for n in names if ".dist-info/" not in n]
    assert all(n.startswith("muracli/") for n in package_files), [n for n in package_files if not n.startswith("muracli/")]
    for name in package_files:
        assert not name.endswith(FORBIDDEN_SUFFIXES), name
        assert not set(Path(name).parts) & FORBIDDEN_PARTS, name

    dist_info = f"muracli-{version}.dist-info"
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "mura = muracli.cli.app:run" in entry_points
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert f"Version: {version}" in metadata and "Requires-Dist: torch" in metadata


@pytest.mark.slow
def test_installed_wheel_runs_mura(wheel, tmp_path):
    """A non-editable install of the wheel gives a working `mura` script."""
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", str(wheel), "--no-deps", "--no-index", "--quiet",
         "--no-compile", "--target", str(target)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    script = target / "bin" / "mura"
    assert script.is_file()
    # The installed copy comes first; the dependencies come from this environment.
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import muracli; print(muracli.__file__)"], capture_output=True, text=True, env=env,
        timeout=60, cwd=tmp_path,
    )
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    for args in (["--version"], ["demo", "--help"]):
        run = subprocess.run([str(script), *args], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Usage: mura demo")
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert version.stdout.strip() == f"mura {importlib.metadata.version('muracli')}"
