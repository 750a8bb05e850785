"""The results table of `mura compare` and its writers (metrics.table)."""

from __future__ import annotations

import csv
import io
import re

import pytest

from muracli.errors import ConfigError
from muracli.metrics.compare import fold_runs, read_run, sweep_axis, sweep_series
from muracli.metrics.table import latex_escape, results_table, to_csv, to_latex, to_markdown

from .test_compare import write_run


@pytest.fixture
def groups(tmp_path):
    runs = []
    for model in ("cnn", "vgg_16%"):
        for size in (32, 64):
            for seed in (1, 2):
                kappa = (0.3 if model == "cnn" else 0.4) + size / 1000 + seed / 100
                runs.append(read_run(write_run(tmp_path / f"{model}_{size}-s{seed}", kappas=[kappa], model=model,
                                               image_size=size, seed=seed)))
    return fold_runs(runs)


def test_folded_rows_show_n_and_mean_sd(groups):
    table = results_table(groups)
    assert table.header[:2] == ["run", "n"] and len(table.rows) == 4
    row = dict(zip(table.header, table.rows[0]))
    assert row["run"] == "cnn_32" and row["n"] == "2" and row["kappa"] == "0.347 ± 0.007"
    assert all(len(r) == len(table.header) == len(table.align) for r in table.rows)


def test_latex_is_a_well_formed_tabular_with_escapes(groups):
    latex = to_latex(results_table(groups))
    lines = latex.strip().splitlines()
    spec = re.fullmatch(r"\\begin\{tabular\}\{([lr]+)\}", lines[0]).group(1)
    assert lines[1] == r"\hline" and lines[-2] == r"\hline" and lines[-1] == r"\end{tabular}"
    rows = [line for line in lines if line.endswith(r"\\")]
    assert len(rows) == 5
    for line in rows:  # every row as many cells as the column spec (no unescaped & inside a cell)
        assert len(re.split(r"(?<!\\)&", line)) == len(spec)
    assert r"vgg\_16\%\_32" in latex and "$\\pm$" in latex and "±" not in latex
    assert latex_escape(r"a_b%c&d#e$f{g}h~i^j\k") == (
        r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")


def test_markdown_and_csv_parse_back(groups):
    table = results_table(groups)
    lines = to_markdown(table).strip().splitlines()
    parsed = [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in lines]
    assert parsed[0] == table.header and set(parsed[1][0]) <= set(":-") and parsed[2:] == table.rows
    back = list(csv.reader(io.StringIO(to_csv(table))))
    assert back[0] == table.header and back[1:] == table.rows


def test_deltas_and_body_parts_columns(groups):
    runs = [g.first for g in groups]
    deltas = {runs[0].path: None, **{r.path: {"kappa": (0.1, 0.02, 0.2), "auc": (-0.01, -0.05, 0.03)} for r in runs[1:]}}
    parts = {r.path: {"XR_HAND": 0.5, "XR_WRIST": None} for r in runs}
    table = results_table(groups, folded=False, deltas=deltas, body_parts=parts)
    assert "n" not in table.header and {"XR_HAND", "XR_WRIST", "Δkappa (95% CI)"} <= set(table.header)
    first, second = (dict(zip(table.header, row)) for row in table.rows[:2])
    assert first["Δkappa (95% CI)"] == "baseline"
    assert second["Δkappa (95% CI)"] == "+0.100 (+0.020, +0.200)" and second["kappa reading"] == "excludes 0"
    assert second["AUC reading"] == "includes 0" and second["XR_HAND"] == "0.500" and second["XR_WRIST"] == "-"


def test_sweep_plot_has_one_line_per_model(groups, tmp_path):
    from muracli.metrics.plots import sweep_figure, sweep_png

    axis = sweep_axis(groups)
    assert axis == "image_size"
    series = sweep_series(groups, axis)
    assert list(series) == ["cnn", "vgg_16%"] and [p.x for p in series["cnn"]] == [32, 64]
    assert series["cnn"][0].below == pytest.approx(groups[0].kappa_sd)
    figure = sweep_figure(series, axis)
    assert len(figure.axes[0].containers) == 2  # one errorbar line per model
    assert sweep_png(series, axis, tmp_path / "k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_axis_to_plot(tmp_path):
    same = fold_runs([read_run(write_run(tmp_path / f"r{s}", kappas=[0.1], seed=s)) for s in (1, 2)])
    with pytest.raises(ConfigError, match="no option varies"):
        sweep_axis(same)
    several = fold_runs([read_run(write_run(tmp_path / f"x{s}", kappas=[0.1], image_size=s, lr=s / 1000))
                         for s in (32, 64)])
    with pytest.raises(ConfigError, match="several options vary"):
        sweep_axis(several)
    assert sweep_axis(several, "lr") == "lr"
    with pytest.raises(ConfigError, match="no run has that option"):
        sweep_axis(several, "nope")
