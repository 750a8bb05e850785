"""`mura demo`: the whole pipeline end to end, its report, and reuse on a second run."""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pytest

from muracli.demo import STAGES, DemoConfig

TINY = ("--studies", "60", "--epochs", "1", "--image-size", "32")


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reuses_its_work(cli, tmp_path):
    out = tmp_path / "demo"
    started = time.monotonic()
    first = cli("demo", "--dir", out, *TINY, "--cpu")
    first_seconds = time.monotonic() - started
    assert first.exit_code == 0, first.stderr
    assert "Traceback" not in first.stderr

    # one status line per stage, in order, none reused on a fresh folder
    status = [line for line in first.stderr.splitlines() if line.startswith("✓ ")]
    assert [line[2:].split(":")[0] for line in status] == list(STAGES)
    assert not any("(reused)" in line for line in status)

    # the summary: kappa with its 95% CI, AUC, and where the files are
    assert re.search(r"Cohen's kappa -?\d\.\d{3} \(95% CI -?\d\.\d\d to -?\d\.\d\d\)", first.stdout)
    assert "AUC" in first.stdout and "report.md" in first.stdout

    report = out / "report.md"
    text = report.read_text(encoding="utf-8")
    links = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)
    assert links, "the report links nothing"
    for link in links:
        assert not Path(link).is_absolute() and "://" not in link, link
        assert (out / link).is_file(), f"report.md links {link}, which is not there"
    for picture in ("montage.png", "run/curves.png", "evaluation/roc.png", "evaluation/confusion.png"):
        assert picture in links
    cams = [link for link in links if link.startswith("cams/")]
    assert cams and all(link.endswith("_cam.png") for link in cams)
    assert "Cohen's kappa" in text and "95% CI" in text
    for command in ("download", "stats", "preprocess", "train", "evaluate", "predict"):
        assert f"mura {command} " in text, command
    assert (out / "evaluation" / "metrics.json").is_file()

    # again: the dataset, the cache and the finished run are reused; it takes a fraction of the time
    started = time.monotonic()
    second = cli("demo", "--dir", out, *TINY, "--cpu", "--json")
    second_seconds = time.monotonic() - started
    assert second.exit_code == 0, second.stderr
    status = {line[2:].split(":")[0]: line for line in second.stderr.splitlines() if line.startswith("✓ ")}
    for stage in ("dataset", "stats", "preprocess", "train"):
        assert status[stage].endswith("(reused)"), status[stage]
    for stage in ("evaluate", "predict"):  # cheap: always redone
        assert not status[stage].endswith("(reused)")
    summary = json.loads(second.stdout)
    assert summary["stages"]["train"]["reused"] and not summary["stages"]["evaluate"]["reused"]
    assert set(summary["stages"]) == set(STAGES)
    assert summary["kappa"] is not None and len(summary["kappa_ci"]) == 2 and summary["auc"] is not None
    assert Path(summary["files"]["report"]).is_file() and Path(summary["dir"]).is_absolute()
    assert second_seconds < first_seconds / 2, (first_seconds, second_seconds)


def test_reproduce_commands_are_valid_mura_command_lines(tmp_path):
    """Every command line the report gives parses with the real CLI (without running it)."""
    import typer

    from muracli.cli.app import app
    from muracli.demo import reproduce_commands

    config = DemoConfig(dir=tmp_path / "my demo")
    predictions = [{"study": "MURA-v1.1/valid/XR_WRIST/patient00001/study1_positive/"}]
    commands = reproduce_commands(config, predictions, "cpu", threads=1)
    assert set(commands) == set(STAGES)
    group = typer.main.get_command(app)
    for line in commands.values():
        words = [w for w in shlex.split(line) if "=" not in w or w.startswith("-")]
        assert words[0] == "mura", line
        command = group.commands[words[1]]
        command.make_context(words[1], words[2:])  # raises on an unknown option or a bad value
    assert "'" in commands["dataset"]  # the space in the folder name is quoted


def test_pick_studies_takes_normal_and_abnormal_valid_studies(synthetic_data):
    from muracli.data.layout import read_layout
    from muracli.demo import pick_studies

    layout = read_layout(synthetic_data)
    chosen = pick_studies(layout, normal=2, abnormal=2, seed=0)
    assert list(chosen["label"]) == [0, 0, 1, 1]
    assert set(chosen["split"]) == {"valid"}
    assert chosen["study"].is_unique
    assert pick_studies(layout, normal=2, abnormal=2, seed=0)["study"].tolist() == chosen["study"].tolist()


def test_demo_refuses_a_dataset_it_did_not_make(cli, tmp_path):
    (tmp_path / "demo" / "data" / "MURA-v1.1").mkdir(parents=True)
    result = cli("demo", "--dir", tmp_path / "demo", *TINY, "--cpu")
    assert result.exit_code == 2
    assert "not written by `mura demo`" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_gpu_without_cuda_is_an_error(cli, tmp_path):
    from muracli.runtime.devices import cuda_available

    if cuda_available():
        pytest.skip("a GPU is present")
    result = cli("demo", "--dir", tmp_path / "demo", *TINY, "--gpu")
    assert result.exit_code == 2
    assert "Error:" in result.stderr and "--gpu" in result.stderr
    assert not (tmp_path / "demo" / "data").exists()


def test_demo_help_lists_its_options(cli):
    result = cli("demo", "--help")
    assert result.exit_code == 0
    for option in ("--dir", "--studies", "--epochs", "--image-size", "--gpu", "--cpu", "--seed", "--difficulty", "--json"):
        assert option in result.stdout
