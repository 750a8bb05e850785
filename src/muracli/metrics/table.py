"""``mura compare``'s results table: rows of runs as a header and string cells, and its writers.

``results_table`` turns configurations (``compare.RunGroup``), optionally with
per-body-part kappas and paired differences against a baseline run, into one
``Table`` of text cells; the CLI chooses how to show it (a Rich table) or
``to_markdown``, ``to_latex`` and ``to_csv`` write it. Every number is
formatted here, once, so the formats never disagree.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

from muracli.metrics.compare import RunGroup, RunSummary, mean_sd

#: The columns of every table: name and alignment.
BASE_COLUMNS = [
    ("run", "left"), ("model", "left"), ("pretrained", "left"), ("size", "right"), ("augment", "left"),
    ("dropout", "right"), ("weight decay", "right"), ("optimizer", "left"), ("lr", "right"),
    ("epochs", "right"), ("best epoch", "right"), ("chosen on", "left"), ("kappa", "right"), ("AUC", "right"),
    ("time", "right"),
]
#: With ``--against``: the paired differences (run - baseline) and how to read their intervals.
DELTA_COLUMNS = [("Δkappa (95% CI)", "right"), ("kappa reading", "left"), ("ΔAUC (95% CI)", "right"),
                 ("AUC reading", "left")]


@dataclass
class Table:
    header: list[str]
    align: list[str]  # left or right, one per column
    rows: list[list[str]]


def results_table(
    groups: list[RunGroup],
    *,
    folded: bool = True,
    body_parts: dict[str, dict[str, float | None]] | None = None,
    deltas: dict[str, dict[str, Any] | None] | None = None,
) -> Table:
    """The table of ``groups``: with ``folded`` an ``n`` column and kappa/AUC as mean ± sd.

    ``body_parts``: each run's (by path) valid kappa per body part, a column per part
    (the mean over a configuration's runs). ``deltas``: each run's ``paired_bootstrap``
    result against the baseline, ``None`` for the baseline itself.
    """
    from muracli.metrics.paired import reading

    columns = list(BASE_COLUMNS)
    if folded:
        columns.insert(1, ("n", "right"))
    parts = sorted({part for kappas in (body_parts or {}).values() for part in kappas})
    columns += [(part, "right") for part in parts]
    if deltas is not None:
        columns += DELTA_COLUMNS
    rows = []
    for group in groups:
        cells = _run_cells(group)
        if folded:
            cells.insert(1, str(group.n))
        for part in parts:
            mean, sd = mean_sd((body_parts or {}).get(run.path, {}).get(part) for run in group.runs)
            cells.append(_mean_sd(mean, sd))
        if deltas is not None:
            delta = deltas.get(group.first.path)
            if delta is None:
                cells += ["baseline", "", "baseline", ""]
            else:
                for metric in ("kappa", "auc"):
                    cells += [_interval(delta.get(metric)), reading(delta.get(metric))]
        rows.append(cells)
    return Table(header=[name for name, _ in columns], align=[align for _, align in columns], rows=rows)


def _run_cells(group: RunGroup) -> list[str]:
    run: RunSummary = group.first
    runs = group.runs
    return [
        group.name,
        run.model,
        run.pretrained,
        text(run.image_size),
        text(run.augment),
        text(run.dropout, "g"),
        text(run.weight_decay, "g"),
        text(run.optimizer),
        text(run.lr, "g"),
        _joined(f"{r.epochs_run}" + (f"/{r.epochs_planned}" if r.epochs_planned and r.epochs_planned != r.epochs_run
                                      else "") for r in runs),
        _joined(text(r.best_epoch) for r in runs),
        _joined(r.selected_on for r in runs),
        _mean_sd(group.kappa, group.kappa_sd),
        _mean_sd(group.auc, group.auc_sd),
        duration(mean_sd(r.train_seconds for r in runs)[0]),
    ]


def _joined(values) -> str:
    """One value when all runs agree, else each run's, separated by commas."""
    values = list(values)
    return values[0] if len(set(values)) == 1 else ",".join(values)


def _mean_sd(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.3f}" if sd is None else f"{mean:.3f} ± {sd:.3f}"


def _interval(value: tuple[float, float, float] | None) -> str:
    if value is None:
        return "-"
    delta, low, high = value
    return f"{delta:+.3f} ({low:+.3f}, {high:+.3f})"


def text(value: Any, spec: str = "") -> str:
    """A cell: ``-`` for None, yes/no for booleans, else ``format(value, spec)``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def duration(seconds: float | None) -> str:
    """12.3 s, 4m 05s, 2h 03m."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


# -- writers -------------------------------------------------------------------


def to_markdown(table: Table) -> str:
    """A pipe table (GitHub-flavoured Markdown); ``|`` in a cell is escaped."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    rule = ["---:" if align == "right" else ":---" for align in table.align]
    return "\n".join([line(table.header), "| " + " | ".join(rule) + " |", *(line(row) for row in table.rows)]) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(char) for char in _LATEX_SPECIAL))
#: Characters of the table's own that pdflatex has no glyph for, as math (after escaping).
_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$"}


def latex_escape(cell: str) -> str:
    """``cell`` with LaTeX's special characters escaped, and ± and Δ as math."""
    escaped = _LATEX_PATTERN.sub(lambda match: _LATEX_SPECIAL[match.group(0)], cell)
    for symbol, math in _LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, math)
    return escaped


def to_latex(table: Table) -> str:
    """A ``tabular`` environment: one ``l``/``r`` per column, ``\\hline`` around the header and at the end."""
    spec = "".join("r" if align == "right" else "l" for align in table.align)

    def line(cells: list[str]) -> str:
        return " & ".join(latex_escape(cell) for cell in cells) + r" \\"

    return "\n".join([
        rf"\begin{{tabular}}{{{spec}}}", r"\hline", line(table.header), r"\hline",
        *(line(row) for row in table.rows), r"\hline", r"\end{tabular}",
    ]) + "\n"


def to_csv(table: Table) -> str:
    """The header and rows as CSV (the csv module's quoting)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.header)
    writer.writerows(table.rows)
    return buffer.getvalue()


#: ``--format``: the writer of each text format (``table`` is the CLI's Rich table).
WRITERS = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv}
