"""The evaluation and training figures: ROC curve, confusion matrix, reliability diagram, curves.

Figures are drawn with matplotlib's object API on an Agg canvas, never
through ``pyplot``: no global figure registry to leak memory in a long
training run, no GUI backend, and importing this module does not switch the
backend of a notebook that uses mura as a library. matplotlib itself is
imported inside the functions (it costs a few hundred ms).

Each function writes a PNG of a fixed pixel size (``*_SIZE`` below, width x
height) and returns its path; parent folders are created.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from muracli.choices import CLASS_NAMES
from muracli.errors import DataError
from muracli.metrics.binary import as_labels, as_probabilities, check_threshold, confusion_counts, roc_auc

DPI = 100
ROC_SIZE = (600, 600)
CONFUSION_SIZE = (500, 450)
CURVES_SIZE = (1100, 420)
RELIABILITY_SIZE = (600, 700)


def _figure(size: tuple[int, int]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": it would change the pixel size from figure to figure.
    figure.savefig(path, dpi=DPI, format="png")
    figure.clear()
    return path


def roc_curve_png(
    labels: Any, probabilities: Any, path: str | Path, *, threshold: float = 0.5, title: str | None = None
) -> Path:
    """The ROC curve with its AUC in the legend, the chance diagonal and the
    operating point (predicted abnormal when probability >= ``threshold``).
    With one class only the ROC is undefined; the figure says so."""
    from sklearn.metrics import roc_curve

    y = as_labels(labels)
    p = as_probabilities(probabilities)
    if len(y) != len(p):
        raise DataError(f"probabilities has {len(p)} values but labels has {len(y)}")
    threshold = check_threshold(threshold)

    figure = _figure(ROC_SIZE)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    auc = roc_auc(y, p) if len(y) else None
    if auc is None:
        axes.text(0.5, 0.55, "ROC undefined:\nonly one class present", ha="center", va="center", fontsize=12)
    else:
        fpr, tpr, _ = roc_curve(y, p)
        axes.plot(fpr, tpr, color="tab:blue", linewidth=2, label=f"ROC (AUC = {auc:.3f})")
        counts = confusion_counts(y, (p >= threshold).astype(np.int64))
        point_fpr = counts["fp"] / (counts["fp"] + counts["tn"])
        point_tpr = counts["tp"] / (counts["tp"] + counts["fn"])
        axes.plot(
            [point_fpr],
            [point_tpr],
            marker="o",
            markersize=9,
            color="tab:red",
            linestyle="none",
            label=f"threshold {threshold:g} (sens {point_tpr:.2f}, spec {1 - point_fpr:.2f})",
        )
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_aspect("equal")
    axes.set_xlabel("False positive rate (1 - specificity)")
    axes.set_ylabel("True positive rate (sensitivity)")
    axes.set_title(title or "ROC curve")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def confusion_png(labels: Any, predictions: Any, path: str | Path, *, title: str | None = None) -> Path:
    """The 2 x 2 confusion matrix (rows: true class, columns: predicted class)
    with counts and row percentages; colour follows the row percentage."""
    y = as_labels(labels)
    yhat = as_labels(predictions, "predictions")
    if len(y) != len(yhat):
        raise DataError(f"predictions has {len(yhat)} values but labels has {len(y)}")
    counts = confusion_counts(y, yhat)
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]], dtype=np.int64)
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)

    figure = _figure(CONFUSION_SIZE)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(2):
        for j in range(2):
            share = f"{100 * shares[i, j]:.1f}%" if row_totals[i, 0] else "-"
            axes.text(
                j,
                i,
                f"{matrix[i, j]}\n{share}",
                ha="center",
                va="center",
                fontsize=14,
                color="white" if shares[i, j] > 0.5 else "black",
            )
    axes.set_xticks([0, 1], [f"{name}" for name in CLASS_NAMES])
    axes.set_yticks([0, 1], [f"{name}\n(n={row_totals[k, 0]})" for k, name in enumerate(CLASS_NAMES)])
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    axes.set_title(title or "Confusion matrix")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of true class")
    figure.tight_layout()
    return _save(figure, path)


def reliability_png(labels: Any, probabilities: Any, path: str | Path, *, title: str | None = None) -> Path:
    """The reliability diagram: per bin of ``metrics.calibration`` (15, equal width), the observed
    frequency of abnormal (bars) and the mean predicted probability against it (points), the
    diagonal of perfect calibration, ECE and Brier in the legend; below, each bin's count."""
    from muracli.metrics.calibration import ECE_BINS, brier_score, expected_calibration_error, reliability_bins

    rows = reliability_bins(labels, probabilities)
    ece, brier = expected_calibration_error(labels, probabilities), brier_score(labels, probabilities)
    full = [row for row in rows if row["n"]]
    lows = np.array([row["low"] for row in rows])
    width = rows[0]["high"] - rows[0]["low"]

    figure = _figure(RELIABILITY_SIZE)
    axes, count_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    axes.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="perfect calibration")
    axes.bar([row["low"] for row in full], [row["observed_frequency"] for row in full], width=width, align="edge",
             color="tab:blue", alpha=0.35, edgecolor="tab:blue", label="observed frequency per bin")
    axes.plot([row["mean_probability"] for row in full], [row["observed_frequency"] for row in full], marker="o",
              color="tab:red", linewidth=1.5, label=f"mean predicted vs observed (ECE {ece:.3f}, Brier {brier:.3f})")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("observed frequency of abnormal")
    axes.set_title(title or "Reliability diagram")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    counts = np.array([row["n"] for row in rows])
    count_axes.bar(lows, counts, width=width, align="edge", color="0.5", edgecolor="0.3")
    for low, n in zip(lows, counts):
        if n:
            count_axes.text(low + width / 2, n, str(n), ha="center", va="bottom", fontsize=7)
    count_axes.set_ylim(0, max(1, counts.max()) * 1.25)
    count_axes.set_xlabel(f"predicted probability of abnormal ({ECE_BINS} equal-width bins)")
    count_axes.set_ylabel("studies")
    figure.tight_layout()
    return _save(figure, path)


def _series(history: list[dict], key: str) -> np.ndarray:
    values = []
    for row in history:
        value = row.get(key)
        try:
            value = float(value) if value not in (None, "") else math.nan
        except (TypeError, ValueError):
            value = math.nan
        values.append(value)
    return np.asarray(values, dtype=np.float64)


def _plot_series(axes, epochs: np.ndarray, values: np.ndarray, label: str, **style) -> bool:
    defined = np.isfinite(values)
    if not defined.any():
        return False
    axes.plot(epochs[defined], values[defined], marker="o", markersize=3, label=label, **style)
    return True


def curves_png(history: Iterable[dict], path: str | Path, *, title: str | None = None) -> Path:
    """Training curves from one dict per epoch (keys ``epoch``,
    ``train_loss``, ``valid_loss``, ``valid_kappa``, ``valid_auc``; missing
    or empty values are skipped): train vs valid loss on the left - where
    they part, the model overfits - and valid kappa and AUC on the right,
    with the best kappa epoch marked. A run that chooses its checkpoint on a
    held-out part of train (``select_loss``, ``select_kappa``) adds those
    curves, and its best epoch is the one of best select kappa."""
    history = list(history)
    if not history:
        raise DataError("no epochs to plot yet")
    epochs = _series(history, "epoch")
    if not np.isfinite(epochs).all():
        epochs = np.arange(1, len(history) + 1, dtype=np.float64)

    figure = _figure(CURVES_SIZE)
    loss_axes, score_axes = figure.subplots(1, 2)
    _plot_series(loss_axes, epochs, _series(history, "train_loss"), "train loss", color="tab:blue")
    _plot_series(loss_axes, epochs, _series(history, "valid_loss"), "valid loss", color="tab:orange")
    loss_axes.set_title("Loss")
    loss_axes.set_ylabel("cross-entropy")

    kappa = _series(history, "valid_kappa")
    _plot_series(score_axes, epochs, kappa, "valid kappa", color="tab:green")
    _plot_series(score_axes, epochs, _series(history, "valid_auc"), "valid AUC", color="tab:purple")
    select = _series(history, "select_kappa")
    chooser, name, colour = kappa, "kappa", "tab:green"
    if _plot_series(loss_axes, epochs, _series(history, "select_loss"), "select loss", color="tab:red", linestyle="--"):
        # a held-out part of train chose the checkpoint
        _plot_series(score_axes, epochs, select, "select kappa", color="tab:red", linestyle="--")
        chooser, name, colour = select, "select kappa", "tab:red"
    if np.isfinite(chooser).any():
        best = int(np.nanargmax(chooser))
        score_axes.axvline(epochs[best], color="0.5", linestyle=":", linewidth=1)
        score_axes.plot(
            [epochs[best]], [chooser[best]], marker="*", markersize=12, color=colour, linestyle="none",
            label=f"best {name} {chooser[best]:.3f} (epoch {epochs[best]:g})",
        )
    score_axes.set_title("Validation (study level)")
    lowest = np.concatenate([kappa, select])
    score_axes.set_ylim(min(0.0, float(np.nanmin(lowest)) - 0.05) if np.isfinite(lowest).any() else 0.0, 1.0)

    for axes in (loss_axes, score_axes):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=9)
        if len(epochs) <= 20:
            axes.set_xticks(epochs)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


SWEEP_SIZE = (800, 500)


def sweep_figure(series: dict[str, list[Any]], axis: str, *, title: str | None = None):
    """Valid kappa against ``axis``: one line per entry of ``series`` (``compare.sweep_series``:
    points with ``x``, ``kappa``, ``below``, ``above``), with error bars. A non-numeric axis
    is drawn as categories in order of first appearance. Returns the matplotlib Figure."""
    values = [p.x for points in series.values() for p in points]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    categories = list(dict.fromkeys(str(v) for v in values))
    figure = _figure(SWEEP_SIZE)
    axes = figure.add_subplot()
    for label, points in series.items():
        xs = [p.x if numeric else categories.index(str(p.x)) for p in points]
        axes.errorbar(xs, [p.kappa for p in points], yerr=[[p.below for p in points], [p.above for p in points]],
                      marker="o", capsize=4, linewidth=1.5, label=label)
    if not numeric:
        axes.set_xticks(range(len(categories)), categories)
    elif values and all(isinstance(v, int) for v in values):
        axes.set_xticks(sorted(set(values)))
    axes.set_xlabel(axis)
    axes.set_ylabel("valid kappa (study level)")
    axes.set_title(title or f"Kappa against {axis} (error bars: sd over seeds, or 95% bootstrap with one seed)",
                   fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9)
    figure.tight_layout()
    return figure


def sweep_png(series: dict[str, list[Any]], axis: str, path: str | Path, *, title: str | None = None) -> Path:
    """``sweep_figure`` written to ``path`` as a PNG."""
    return _save(sweep_figure(series, axis, title=title), path)
