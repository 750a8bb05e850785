"""`mura evaluate RUN RUN ...` and `--ensemble-top K FOLDER` from the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from muracli.errors import ConfigError
from muracli.evaluation.members import top_runs
from muracli.runtime.checkpoint import load_checkpoint, save_checkpoint
from muracli.runtime.rundir import RunDir


def fake_run(trained_run: Path, folder: Path, select_on: str, kappas: list[tuple[float, float | None]]) -> Path:
    """A copy of ``trained_run``'s best.pt and config.json in ``folder``, chosen on ``select_on``, with one
    metrics.csv row per (valid_kappa, select_kappa)."""
    folder.mkdir(parents=True)
    shutil.copy(trained_run / "best.pt", folder / "best.pt")
    record = json.loads((trained_run / "config.json").read_text())
    record["config"]["select_on"] = select_on
    (folder / "config.json").write_text(json.dumps(record))
    for epoch, (valid, select) in enumerate(kappas, start=1):
        RunDir(folder).append_metrics({"epoch": epoch, "train_loss": 0.5, "valid_kappa": valid, "select_kappa": select})
    return folder


@pytest.fixture(scope="module")
def runs_folder(trained_run, tmp_path_factory) -> Path:
    """Three runs chosen on train:0.1 whose select and valid rankings disagree: by select_kappa
    a > c > b, by valid_kappa b > c > a; b's best select epoch is its first."""
    folder = tmp_path_factory.mktemp("chosen-on-train")
    fake_run(trained_run, folder / "a", "train:0.1", [(0.10, 0.50), (0.20, 0.80)])
    fake_run(trained_run, folder / "b", "train:0.1", [(0.90, 0.40), (0.95, 0.30)])
    fake_run(trained_run, folder / "c", "train:0.1", [(0.50, 0.60)])
    (folder / "notes").mkdir()  # not a run: ignored
    return folder


def test_two_runs_of_two_image_sizes_side_by_side(cli, trained_run, small_run, tmp_path):
    out = tmp_path / "ensemble"
    result = cli("evaluate", trained_run, small_run, "--bootstrap", "50", "--cpu", "--out", out)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "Ensemble    2 members, mean of the members' image probabilities" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.split()[:1] in (["cnn"], ["cnn16"], ["ensemble"])}
    assert " 32 " in rows["cnn"] and " 16 " in rows["cnn16"] and "ensemble" in rows
    report = json.loads((out / "metrics.json").read_text())
    kappas = [f"{m['overall']['kappa']:.3f}" for m in report["members"]] + [f"{report['overall']['kappa']:.3f}"]
    for name, kappa in zip(("cnn", "cnn16", "ensemble"), kappas):
        assert kappa in rows[name]
    assert "Ensemble kappa " in text and "(95% CI " in text and "overall" in text
    assert f"to {out}" in text and (out / "image_predictions.csv").is_file()


def test_the_default_folder_is_a_new_runs_ensemble_and_json_is_its_metrics(cli, trained_run, synthetic_cache,
                                                                          tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("evaluate", trained_run, trained_run, "--cache", synthetic_cache.path, "--cpu", "--json")
    assert result.exit_code == 0, result.stderr
    (folder,) = (tmp_path / "runs").glob("ensemble-*")
    report = json.loads(result.stdout)
    assert report == json.loads((folder / "metrics.json").read_text())
    assert [m["name"] for m in report["members"]] == ["cnn", "cnn"]


def test_top_runs_rank_by_the_split_that_chose_the_checkpoints(runs_folder, trained_run, tmp_path):
    picked = top_runs([runs_folder], 2)
    assert [r.run for r in picked.picked] == ["a", "c"] and [r.run for r in picked.not_picked] == ["b"]
    assert picked.ranked_by == "select_kappa" and picked.selected_on == "train:0.1"
    assert [(r.kappa, r.epoch) for r in picked.picked + picked.not_picked] == [(0.8, 2), (0.6, 1), (0.4, 1)]
    valid = tmp_path / "valid"
    fake_run(trained_run, valid / "x", "valid", [(0.3, None), (0.7, None)])
    fake_run(trained_run, valid / "y", "valid", [(0.9, None)])
    assert [(r.run, r.ranked_by) for r in top_runs([valid], 1).picked] == [("y", "valid_kappa")]
    with pytest.raises(ConfigError, match="chose their checkpoints on different splits"):
        top_runs([runs_folder, valid], 2)
    with pytest.raises(ConfigError, match="needs 4 runs with a kappa"):
        top_runs([runs_folder], 4)


def test_ensemble_top_says_what_it_picked_and_evaluates_those(cli, runs_folder, synthetic_cache, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("evaluate", "--ensemble-top", "2", runs_folder, "--cache", synthetic_cache.path, "--cpu")
    assert result.exit_code == 0, result.stderr
    picked = next(line for line in result.stdout.splitlines() if line.startswith("Picked"))
    assert "the 2 of 3 runs" in picked and "best select_kappa" in picked and "train:0.1" in picked
    assert "a 0.800 (epoch 2), c 0.600 (epoch 1); not picked: b 0.400 (epoch 1)" in picked
    members = [line.split()[0] for line in result.stdout.splitlines() if line.split()[:1] in (["a"], ["b"], ["c"])]
    assert members == ["a", "c"]
    (folder,) = (tmp_path / "runs").glob("ensemble-*")
    assert result.stdout.rstrip().endswith(f"to {folder.relative_to(tmp_path)}")
    report = json.loads((folder / "metrics.json").read_text())
    assert [r["run"] for r in report["ensemble"]["picked"]["picked"]] == ["a", "c"]


def test_bad_ensembles_are_one_error_line(cli, trained_run, synthetic_cache, runs_folder, tmp_path):
    result = cli("evaluate", "--ensemble-top", "2")
    assert result.exit_code == 2 and "needs the folder(s) of runs" in result.stderr
    result = cli("evaluate", "--ensemble-top", "5", runs_folder)
    assert result.exit_code == 2 and "--ensemble-top 5 needs 5 runs" in result.stderr
    # a member restricted to wrists scores other images than the whole-valid member
    payload = load_checkpoint(trained_run / "best.pt")
    payload["config"] = {**payload["config"], "body_parts": ["XR_WRIST"]}
    wrists = save_checkpoint({k: v for k, v in payload.items() if k not in ("format", "format_version")},
                             tmp_path / "wrists.pt")
    result = cli("evaluate", trained_run, wrists, "--cache", synthetic_cache.path, "--cpu", "--out", tmp_path / "e")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: the ensemble's members scored different images")
    assert "only in cnn (e.g. MURA-v1.1/valid/XR_" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "e").exists()
