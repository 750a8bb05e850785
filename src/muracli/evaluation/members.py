"""The members of ``mura evaluate --ensemble-top K``: the K best runs of a folder.

The MURA paper's ensemble averages its five best models. "Best" is the
kappa on the split that chose each run's checkpoint - the epoch ``best.pt``
holds: ``valid_kappa`` for a run chosen on valid, ``select_kappa`` for one
chosen on a held-out part of train (``--select-on train:FRACTION``), whose
valid numbers must stay out of every choice. Runs chosen on different
splits have kappas that do not rank together, so mixing them is an error.
Only config.json and metrics.csv are read: no model is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from muracli.errors import ConfigError
from muracli.metrics.compare import SkippedRun, best_epoch, find_runs
from muracli.runtime.rundir import RunDir


@dataclass
class RankedRun:
    """One run and the kappa it is ranked by: ``ranked_by`` at its best epoch."""

    run: str  # the folder name
    path: str
    selected_on: str  # valid | train:FRACTION
    ranked_by: str  # valid_kappa | select_kappa
    kappa: float
    epoch: int


@dataclass
class TopRuns:
    """The runs ``top_runs`` picked, those it ranked lower, and the folders it could not rank."""

    k: int
    folders: list[str]
    selected_on: str
    ranked_by: str
    picked: list[RankedRun] = field(default_factory=list)
    not_picked: list[RankedRun] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def top_runs(folders: Iterable[str | Path], k: int) -> TopRuns:
    """The ``k`` runs among ``folders`` (run directories or folders of runs, as ``mura compare``
    takes them) with the best kappa on the split that chose their checkpoints.

    Ties go to the run whose name sorts first. Runs without best.pt or
    without a kappa on their choosing split are skipped (with the reason);
    fewer than ``k`` rankable runs, or runs chosen on different splits, are a
    ``ConfigError``.
    """
    if k < 1:
        raise ConfigError(f"--ensemble-top must be at least 1, got {k}")
    folders = [str(folder) for folder in folders]
    found, skipped = find_runs(folders)
    ranked: list[tuple[RankedRun, str]] = []
    for folder in found:
        try:
            ranked.append(_ranked(folder))
        except _Unranked as exc:
            skipped.append(SkippedRun(str(folder), str(exc)))
    where = ", ".join(folders)
    _check_one_chooser([r for r, _ in ranked], [key for _, key in ranked], where)
    runs = sorted((r for r, _ in ranked), key=lambda r: (-r.kappa, r.run, r.path))
    if len(runs) < k:
        raise ConfigError(
            f"--ensemble-top {k} needs {k} runs with a kappa, but {where} holds {len(runs)}"
            + (f" ({len(skipped)} folder(s) skipped: {skipped[0].path}: {skipped[0].reason})" if skipped else ""),
            f"pass --ensemble-top {len(runs)}, or train more runs" if runs else "pass folders of runs written by `mura train`",
        )
    return TopRuns(k=k, folders=folders, selected_on=runs[0].selected_on, ranked_by=runs[0].ranked_by,
                   picked=runs[:k], not_picked=runs[k:], skipped=skipped)


class _Unranked(Exception):
    """A folder that cannot be ranked; the message says why."""


def _ranked(folder: Path) -> tuple[RankedRun, str]:
    """The run in ``folder`` with its kappa, and the key of the split that chose it (its select_on and seed)."""
    if not (folder / "best.pt").is_file():
        raise _Unranked("no best.pt")
    try:
        record = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        epochs = RunDir(folder).read_metrics()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _Unranked(f"config.json or metrics.csv is unreadable ({exc})") from exc
    config = record.get("config") if isinstance(record, dict) else None
    if not isinstance(config, dict):
        raise _Unranked("config.json has no training config")
    selected_on = str(config.get("select_on") or "valid")
    column = "valid_kappa" if selected_on == "valid" else "select_kappa"
    best, _ = best_epoch(epochs, "valid" if selected_on == "valid" else "select")  # as best.pt keeps it (EMA too)
    if best is None or not isinstance(best.get(column), (int, float)):
        raise _Unranked(f"no epoch with a {column} in metrics.csv")
    key = selected_on if selected_on == "valid" else f"{selected_on} (--select-seed {config.get('select_seed')})"
    run = RankedRun(run=Path(folder).resolve().name, path=str(folder), selected_on=selected_on, ranked_by=column,
                    kappa=float(best[column]), epoch=int(best["epoch"]))
    return run, key


def _check_one_chooser(runs: list[RankedRun], keys: list[str], where: str) -> None:
    """``ConfigError`` when the runs were chosen on different splits (or different held-out parts of train)."""
    distinct = sorted(set(keys))
    if len(distinct) < 2:
        return
    counts = ", ".join(f"{key}: {keys.count(key)} run(s), e.g. {runs[keys.index(key)].run}" for key in distinct)
    raise ConfigError(
        f"the runs in {where} chose their checkpoints on different splits ({counts}); "
        "their kappas do not rank together",
        "put the runs of one --select-on in a folder of their own, or name the members: mura evaluate RUN RUN ...",
    )
