"""Fixtures shared across the suite: tiny MURA-format trees built by hand, and
a CLI runner that goes through the same error mapping as the `mura` script."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from mura_trees import TINY_STUDIES, write_mura_tree


@pytest.fixture
def tiny_mura(tmp_path: Path) -> Path:
    """A six-study MURA tree; returns the folder that holds MURA-v1.1/."""
    base = tmp_path / "data"
    write_mura_tree(base, TINY_STUDIES)
    return base


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``mura ARGS`` in-process; returns exit code, stdout and stderr."""
    from muracli.cli import console
    from muracli.cli.app import main

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(console.state, "quiet", False)
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(autouse=True)
def isolated_state(tmp_path_factory, monkeypatch):
    """Keep the latest-run record of every test away from the user's home."""
    monkeypatch.setenv("MURA_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A small synthetic MURA (easy findings, small images), shared by the session.

    Returns the folder that holds MURA-v1.1/. Tests must not modify it.
    """
    from muracli.synthetic import generate_synthetic

    base = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(base, studies=80, seed=3, difficulty="easy", max_side=96, workers=1)
    return base


@pytest.fixture(scope="session")
def synthetic_cache(synthetic_data):
    """The preprocess cache of ``synthetic_data`` at 32 px."""
    from muracli.data.cache_build import build_cache

    return build_cache(synthetic_data, size=32, fit="pad", workers=0)


@pytest.fixture(scope="session")
def trained_run(synthetic_cache, tmp_path_factory) -> Path:
    """A cnn trained for two epochs on ``synthetic_cache``: its run directory. Do not modify."""
    from muracli.training.config import TrainConfig
    from muracli.training.trainer import train

    out = tmp_path_factory.mktemp("runs") / "cnn"
    config = TrainConfig(
        cache=str(synthetic_cache.path), image_size=synthetic_cache.size, model="cnn", epochs=2,
        batch_size=16, lr=2e-3, device="cpu", out=str(out), seed=1,
    )
    return train(config).run_dir


@pytest.fixture(scope="session")
def small_run(synthetic_data, tmp_path_factory) -> Path:
    """A second cnn, one epoch at 16 px on ``synthetic_data`` (its own cache), another seed than
    ``trained_run``'s: an ensemble member of another image size. Do not modify."""
    from muracli.data.cache_build import build_cache
    from muracli.training.config import TrainConfig
    from muracli.training.trainer import train

    cache = build_cache(synthetic_data, size=16, fit="pad", workers=0)
    out = tmp_path_factory.mktemp("runs") / "cnn16"
    config = TrainConfig(
        cache=str(cache.path), image_size=16, model="cnn", epochs=1, batch_size=16, lr=2e-3, device="cpu",
        out=str(out), seed=2,
    )
    return train(config).run_dir
