"""`mura sweep` from the command line: errors, --dry-run, and a grid that survives Ctrl-C and a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def grid_file(tmp_path: Path, cache, runs: str, *, lr: float | None = 2e-3, batch_size: int | None = 16) -> Path:
    """A grid over ``cache``; ``lr`` or ``batch_size`` None leaves it to the device, as `mura train` does."""
    path = tmp_path / "grid.toml"
    sizes = "".join(f"{key} = {value}\n" for key, value in (("batch_size", batch_size), ("lr", lr)) if value is not None)
    path.write_text(f"""
[base]
cache = "{cache.path}"
model = "cnn"
{sizes}cpu = true
{runs}
""")
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime in ns."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_a_bad_grid_is_one_error_line(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[base]\nmodel = 'cnn'\nimage_sise = 64\n")
    result = cli("sweep", bad, "--dry-run")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"Error: {bad}: unknown option 'image_sise'")
    bad.write_text("[base]\nmodel = 'cnn'\nseed = [0\n")
    result = cli("sweep", bad)
    assert result.exit_code == 2 and "line 3" in result.stderr.splitlines()[0]
    result = cli("sweep", tmp_path / "missing.toml")
    assert result.exit_code == 2 and result.stderr.startswith("Error: cannot read the grid file")


def _mura(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "muracli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_a_sweep_stopped_in_its_second_run_completes_and_leaves_the_first_untouched(cli, synthetic_cache, tmp_path):
    grid = grid_file(tmp_path, synthetic_cache, "[[runs]]\nseed = 0\nepochs = 1\n[[runs]]\nseed = 1\nepochs = 3\n")
    out = tmp_path / "sweep"
    listed = cli("sweep", grid, "--out", out, "--dry-run")
    assert listed.exit_code == 0 and listed.stdout.count("new") == 2 and not out.exists()

    proc = _mura("sweep", grid, "--out", out, env={**os.environ, "COLUMNS": "200"})
    second = out / "seed-1_epochs-3"
    deadline = time.monotonic() + 150
    while not (second / "last.pt").exists():  # the second run has finished an epoch
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Error: sweep interrupted in run seed-1_epochs-3" in stderr
    assert f"mura sweep {grid} --out {out}" in stderr
    record = json.loads((out / "sweep.json").read_text())
    assert [run["result"] for run in record["runs"]] == ["trained", "interrupted"]

    first = snapshot(out / "seed-0_epochs-1")
    listed = cli("sweep", grid, "--out", out, "--dry-run")
    assert listed.exit_code == 0
    assert "done" in listed.stdout and "resume at epoch" in listed.stdout
    assert snapshot(out / "seed-0_epochs-1") == first

    result = cli("sweep", grid, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert snapshot(out / "seed-0_epochs-1") == first  # no file rewritten, no mtime changed
    metrics = (second / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in metrics[1:]] == ["1", "2", "3"]
    record = json.loads((out / "sweep.json").read_text())
    assert [(run["status"], run["result"]) for run in record["runs"]] == [("done", "skipped"), ("resume", "resumed")]
    assert "skipped" in result.stdout and "resumed" in result.stdout

    # the grid asks for something else now: refused, nothing mixed
    changed = grid_file(tmp_path, synthetic_cache, "[[runs]]\nseed = 0\nepochs = 1\n[[runs]]\nseed = 1\nepochs = 3\n", lr=0.01)
    refused = cli("sweep", changed, "--out", out)
    assert refused.exit_code == 2 and "was trained with other options" in refused.stderr and "lr 0.002" in refused.stderr
    assert snapshot(out / "seed-0_epochs-1") == first


@pytest.mark.slow
def test_a_run_that_crashed_before_its_first_epoch_starts_again(cli, synthetic_cache, tmp_path):
    # batch size and lr left to the device: the run records 32 and 1e-3, and the grid still matches it
    grid = grid_file(tmp_path, synthetic_cache, "epochs = 1\n[axes]\nseed = [3]\n", lr=None, batch_size=None)
    run = tmp_path / "sweep" / "seed-3"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")  # what a crash during the first epoch leaves
    (run / "log.txt").write_text("training cnn\n")
    listed = cli("sweep", grid, "--out", tmp_path / "sweep", "--dry-run")
    assert "restart" in listed.stdout
    result = cli("sweep", grid, "--out", tmp_path / "sweep")
    assert result.exit_code == 0, result.stderr
    assert json.loads((run / "config.json").read_text())["config"]["seed"] == 3
    assert (run / "last.pt").is_file() and len((run / "metrics.csv").read_text().splitlines()) == 2
    recorded = json.loads((run / "config.json").read_text())["config"]
    assert (recorded["batch_size"], recorded["lr"]) == (32, 1e-3)
    listed = cli("sweep", grid, "--out", tmp_path / "sweep", "--dry-run")
    assert listed.exit_code == 0 and "done" in listed.stdout, listed.stderr


@pytest.mark.slow
def test_torchrun_walks_every_run_on_all_ranks_and_prints_once(synthetic_cache, tmp_path):
    # Two runs in one process group: a second init_process_group under torchrun would hang.
    grid = grid_file(tmp_path, synthetic_cache, "epochs = 1\n[axes]\nseed = [0, 1]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "muracli",
         "sweep", str(grid), "--out", str(tmp_path / "sweep")],
        capture_output=True, text=True, timeout=150, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("seed-0", "seed-1"):
        assert json.loads((tmp_path / "sweep" / name / "config.json").read_text())["device"]["world_size"] == 2
        assert proc.stdout.count(f"{name} trained") == 1 and proc.stdout.count(f"{name} (") == 1  # rank 0 alone
    assert proc.stdout.count("Sweep ") == 1
    assert [run["result"] for run in json.loads((tmp_path / "sweep" / "sweep.json").read_text())["runs"]] == [
        "trained", "trained"]
