"""The grid of `mura sweep`: keys read through TrainConfig's table, the product of axes, [[runs]], names."""

from __future__ import annotations

from pathlib import Path

import pytest

from muracli.errors import ConfigError
from muracli.training.sweep import grid_keys, load_grid, read_statuses

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.toml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def test_axes_expand_in_file_order_with_readable_names(tmp_path):
    grid = load_grid(write(tmp_path, """
[base]
model = "cnn"
cpu = true
augment = false
rotate = 10
body_part = ["XR_WRIST", "XR_HAND"]
[axes]
image_size = [32, 64, 96]
seed = [0, 1]
lr = [1e-3]
"""), tmp_path / "out")
    names = [run.name for run in grid.runs]
    assert names == [f"image_size-{size}_seed-{seed}_lr-0.001" for size in (32, 64, 96) for seed in (0, 1)]
    run = grid.runs[3]
    assert run.varying == {"image_size": 64, "seed": 1, "lr": 0.001}
    config = run.config
    assert (config.image_size, config.seed, config.device, config.augment) == (64, 1, "cpu", False)
    assert config.augment_params == {"rotate": 10.0} and config.body_parts == ["XR_HAND", "XR_WRIST"]
    assert config.out == str(tmp_path / "out" / run.name)


def test_runs_tables_merge_over_base_and_cross_the_axes(tmp_path):
    grid = load_grid(write(tmp_path, """
[base]
dropout = 0.2
[axes]
seed = [0, 1]
[[runs]]
name = "plain"
[[runs]]
dropout = 0.5
no_augment = true
"""))
    assert [run.name for run in grid.runs] == [
        "plain_seed-0", "plain_seed-1", "dropout-0.5_no_augment-true_seed-0", "dropout-0.5_no_augment-true_seed-1"]
    assert [run.config.dropout for run in grid.runs] == [0.2, 0.2, 0.5, 0.5]
    assert [run.config.augment for run in grid.runs] == [True, True, False, False]
    assert grid.out == Path("runs/grid")


@pytest.mark.parametrize("text, says", [
    ("[base]\nimage_sise = 64", "unknown option 'image_sise'"),
    ("[base]\nimage_size = '64'", "image_size must be an integer"),
    ("[base]\nimage_size = 8", "image_size must be between 16 and 2048"),
    ("[base]\ncpu = 1", "cpu must be true or false"),
    ("[base]\noptimizer = 'lbfgs'", "optimizer must be one of"),
    ("[base]\nrotate = 300", "rotate must be between 0 and 180"),
    ("[base]\nout = 'x'", "'out' cannot be set in a grid"),
    ("[base]\nselect_on = 'train:2'", "FRACTION"),
    ("[axes]\nseed = []", "axis 'seed' must be a non-empty list"),
    ("[axes]\nseed = [0, 0]", "share the directory"),
    ("[base\nseed = 1", ", line 1: not valid TOML"),
])
def test_bad_grids_name_the_key_and_the_file(tmp_path, text, says):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_grid(path)
    assert says in raised.value.message and str(path) in raised.value.message


def test_every_switch_has_both_names():
    keys = grid_keys()
    assert keys["cpu"].field == keys["gpu"].field == "device" and keys["cpu"].negate and not keys["gpu"].negate
    assert keys["no_augment"].negate and keys["balanced"].field == "balanced_sampling"
    assert keys["body_part"].field == "body_parts" and "out" not in keys and "momentum" not in keys


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_examples_parse(path):
    grid = load_grid(path, Path("/nonexistent/sweep"))
    assert len(grid.runs) >= 2
    read_statuses(grid)
    assert {run.status for run in grid.runs} == {"new"}


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"cpu-image-size.toml", "gpu-image-size.toml", "gpu-regularisation.toml"}
