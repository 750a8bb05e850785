"""`mura compare` from the command line, on real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def second_run(synthetic_cache, tmp_path_factory) -> Path:
    """A second tiny run with other options: SGD, no augmentation, less dropout, weight decay, one epoch."""
    from muracli.training.config import TrainConfig
    from muracli.training.trainer import train

    out = tmp_path_factory.mktemp("runs") / "cnn-sgd"
    config = TrainConfig(
        cache=str(synthetic_cache.path), image_size=synthetic_cache.size, model="cnn", epochs=1, batch_size=64,
        lr=0.01, optimizer="sgd", dropout=0.2, weight_decay=1e-4, augment=False, device="cpu", out=str(out), seed=2,
    )
    return train(config).run_dir


def test_two_runs_side_by_side(cli, trained_run, second_run):
    result = cli("compare", trained_run, second_run)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0]
    for column in ("run", "model", "pretrained", "size", "augment", "dropout", "weight decay", "optimizer", "lr",
                   "epochs", "best epoch", "kappa", "AUC", "time"):
        assert column in header
    rows = {line.split()[0]: line for line in lines[2:] if line.strip()}
    assert set(rows) == {trained_run.name, second_run.name}
    assert "sgd" in rows[second_run.name] and "0.0001" in rows[second_run.name]
    assert "adam" in rows[trained_run.name]


def test_json_rows_and_sort_order(cli, trained_run, second_run):
    result = cli("compare", trained_run, second_run, "--json")
    assert result.exit_code == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    by_name = {r["run"]: r for r in runs}
    assert by_name[second_run.name]["optimizer"] == "sgd" and by_name[second_run.name]["augment"] is False
    assert by_name[second_run.name]["dropout"] == 0.2 and by_name[second_run.name]["epochs_run"] == 1
    assert by_name[trained_run.name]["epochs_run"] == 2 and by_name[trained_run.name]["image_size"] == 32
    kappas = [r["best_kappa"] for r in runs]
    assert kappas == sorted(kappas, reverse=True)
    by_time = json.loads(cli("compare", trained_run, second_run, "--json", "--sort", "time").stdout)["runs"]
    times = [r["train_seconds"] for r in by_time]
    assert times == sorted(times)
    by_name_sorted = json.loads(cli("compare", second_run, trained_run, "--json", "--sort", "name").stdout)["runs"]
    assert [r["run"] for r in by_name_sorted] == sorted([trained_run.name, second_run.name])


def test_a_parent_folder_of_runs(cli, second_run):
    result = cli("compare", second_run.parent, "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["run"] for r in json.loads(result.stdout)["runs"]] == [second_run.name]


def test_a_broken_run_is_skipped_with_a_warning(cli, trained_run, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    result = cli("compare", trained_run, broken)
    assert result.exit_code == 0
    assert f"Warning: skipping {broken}" in result.stderr
    assert trained_run.name in result.stdout and "broken" not in result.stdout


def test_exit_codes(cli, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    result = cli("compare", broken)
    assert result.exit_code == 1 and result.stderr.startswith("Warning: skipping")
    assert "Error: no readable run" in result.stderr
    (tmp_path / "file").write_text("x")
    result = cli("compare", tmp_path / "file")
    assert result.exit_code == 2 and result.stderr.startswith("Error:") and "not a directory" in result.stderr
    result = cli("compare")
    assert result.exit_code == 2


def _paired_by_hand(first: Path, second: Path, n: int, seed: int) -> dict[str, tuple[float, float, float]]:
    """Δ(second - first) of kappa and AUC with a 95% paired percentile interval, from two predictions.csv
    files: numpy resample indices and scikit-learn on each resample, nothing of mura's."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    a, b = pd.read_csv(first), pd.read_csv(second)
    merged = a.merge(b, on="study", suffixes=("_a", "_b")).sort_values("study", kind="stable")
    assert len(merged) == len(a) == len(b) and (merged["label_a"] == merged["label_b"]).all()
    y = merged["label_a"].to_numpy()
    columns = {k: merged[k].to_numpy() for k in ("prediction_a", "prediction_b", "probability_a", "probability_b")}

    def scores(rows):
        yy = y[rows]
        kappa = [cohen_kappa_score(yy, columns[f"prediction_{s}"][rows], labels=[0, 1]) for s in "ab"]
        auc = [roc_auc_score(yy, columns[f"probability_{s}"][rows]) if len(set(yy)) == 2 else np.nan for s in "ab"]
        return kappa[1] - kappa[0], auc[1] - auc[0]

    everything = scores(np.arange(len(y)))
    resampled = np.array([scores(rows) for rows in np.random.default_rng(seed).integers(0, len(y), (n, len(y)))])
    result = {}
    for column, metric in enumerate(("kappa", "auc")):
        values = resampled[:, column]
        low, high = np.percentile(values[~np.isnan(values)], [2.5, 97.5])
        result[metric] = (everything[column], low, high)
    return result


@pytest.mark.slow
def test_against_a_baseline_matches_an_independent_paired_bootstrap(cli, trained_run, small_run, tmp_path):
    for name, run in (("base", trained_run), ("other", small_run)):
        assert cli("evaluate", run, "--out", tmp_path / name).exit_code == 0
    plot = tmp_path / "kappa.png"
    result = cli("compare", trained_run, small_run, "--against", trained_run, "--bootstrap", "200", "--seed", "3",
                 "--by-body-part", "--plot", plot, "--axis", "image_size", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {row["run"]: row for row in report["runs"]}
    assert rows[trained_run.name]["against"] is None and report["baseline"]["run"] == trained_run.name
    expected = _paired_by_hand(tmp_path / "base" / "predictions.csv", tmp_path / "other" / "predictions.csv", 200, 3)
    for metric in ("kappa", "auc"):
        got = rows[small_run.name]["against"][metric]
        delta, low, high = expected[metric]
        assert got["delta"] == pytest.approx(delta, abs=1e-9)
        assert (got["low"], got["high"]) == pytest.approx((low, high), abs=1e-9)
        assert got["low"] <= got["delta"] <= got["high"]
    metrics = json.loads((tmp_path / "other" / "metrics.json").read_text())
    assert rows[small_run.name]["body_part_kappa"] == {p: b["kappa"] for p, b in metrics["by_body_part"].items()}
    assert plot.read_bytes()[:4] == b"\x89PNG"

    table = cli("compare", trained_run, small_run, "--against", trained_run, "--bootstrap", "200", "--seed", "3")
    assert table.exit_code == 0, table.stderr
    line = next(line for line in table.stdout.splitlines() if line.startswith(small_run.name))
    assert f"{expected['kappa'][0]:+.3f} ({expected['kappa'][1]:+.3f}, {expected['kappa'][2]:+.3f})" in line
    assert ("excludes 0" in line or "includes 0" in line) and "baseline" in table.stdout


@pytest.fixture
def hand_runs(tmp_path) -> Path:
    """Four runs written by hand: two image sizes x two seeds, names with _ and %."""
    from metrics.test_compare import write_run

    for size in (32, 64):
        for seed in (1, 2):
            write_run(tmp_path / "runs" / f"cnn_{size}%-s{seed}", kappas=[0.3 + size / 1000 + seed / 100],
                      image_size=size, seed=seed, out=f"runs/cnn_{size}%-s{seed}", device=("cpu", "cuda")[seed - 1])
    return tmp_path / "runs"


def test_seeds_fold_and_the_formats_parse_back(cli, hand_runs):
    import csv
    import io
    import re

    result = cli("compare", hand_runs, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["runs"]) == 4
    assert [(c["name"], c["n"], c["seeds"]) for c in report["configurations"]] == [
        ("cnn_64%", 2, [2, 1]), ("cnn_32%", 2, [2, 1])]  # best kappa first
    assert report["configurations"][0]["kappa_mean"] == pytest.approx(0.379)

    table = cli("compare", hand_runs).stdout
    assert "0.379 ± 0.007" in table and "cnn_32%" in table and "-s1" not in table
    assert len(cli("compare", hand_runs, "--per-run").stdout.strip().splitlines()) == 2 + 4

    latex = cli("compare", hand_runs, "--format", "latex").stdout.strip().splitlines()
    spec = re.fullmatch(r"\\begin\{tabular\}\{([lr]+)\}", latex[0]).group(1)
    rows = [line for line in latex if line.endswith(r"\\")]
    assert len(rows) == 3 and all(len(re.split(r"(?<!\\)&", row)) == len(spec) for row in rows)
    assert r"cnn\_64\%" in latex[4] and latex.count(r"\hline") == 3

    markdown = cli("compare", hand_runs, "--format", "markdown").stdout.strip().splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in markdown]
    assert len({len(row) for row in cells}) == 1 and cells[2][:2] == ["cnn_64%", "2"]
    back = list(csv.reader(io.StringIO(cli("compare", hand_runs, "--format", "csv").stdout)))
    assert back[0][:2] == ["run", "n"] and back[1][0] == "cnn_64%" and back[1][back[0].index("kappa")] == "0.379 ± 0.007"


def test_plot_of_the_swept_option(cli, hand_runs, tmp_path):
    result = cli("compare", hand_runs, "--plot", tmp_path / "k.png")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["--against", "{tmp}"], "is not a run"),
    (["--against", "{runs}/cnn_32%-s1"], "is not a run"),  # no best.pt
    (["--data", "{tmp}", "--manifest", "{tmp}/m.csv"], "--data and --manifest both given"),
    (["--plot", "{tmp}/k.png", "--axis", "seed"], "--axis seed"),
    (["--against", "{tmp}", "--data", "{tmp}", "--manifest", "{tmp}/m.csv"], "both given"),
])
def test_bad_input_is_one_error_line(cli, hand_runs, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, runs=hand_runs) for a in args]
    result = cli("compare", hand_runs, *args)
    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr


def test_plot_without_a_varying_option_is_an_error(cli, hand_runs, tmp_path):
    one_size = [hand_runs / "cnn_32%-s1", hand_runs / "cnn_32%-s2"]
    result = cli("compare", *one_size, "--plot", tmp_path / "k.png")
    assert result.exit_code == 2 and result.stderr.startswith("Error: --plot: no option varies")
    assert "Traceback" not in result.stderr and not (tmp_path / "k.png").exists()


@pytest.mark.slow
def test_against_on_a_manifest_evaluates_its_studies(cli, trained_run, small_run, tmp_path):
    from manifest_trees import STUDIES, write_manifest_dataset

    manifest = write_manifest_dataset(tmp_path / "mine")
    result = cli("compare", trained_run, small_run, "--against", small_run, "--manifest", manifest,
                 "--bootstrap", "50", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["runs"]
    valid = sum(1 for study in STUDIES if study[1] == "valid")
    assert [row["evaluated_studies"] for row in rows] == [valid, valid]
    missing = cli("compare", trained_run, "--against", small_run, "--manifest", tmp_path / "none.csv")
    assert missing.exit_code == 2 and missing.stderr.startswith("Error:") and "Traceback" not in missing.stderr
