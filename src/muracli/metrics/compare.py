"""Many run directories as rows of one table: the experiment tables of a thesis.

Each row comes from a run's ``config.json`` (the options it was trained
with) and ``metrics.csv`` (one row per epoch): the epoch with the best valid
kappa - the one ``best.pt`` holds - gives the row's kappa and AUC, and the
training time is the sum of the epochs' seconds. Standard library only: no
model, tensor or data frame is loaded, so comparing a hundred runs is
instant.
"""

from __future__ import annotations

import csv
import glob
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from muracli.choices import SORT_KEYS
from muracli.errors import DataError, MuraError


_RUN_FILES = ("config.json", "metrics.csv", "best.pt", "last.pt")


@dataclass
class RunSummary:
    """One run, as a row of ``mura compare``."""

    run: str  # the folder name
    path: str
    model: str
    pretrained: str  # "yes", "no" or the --weights file name
    image_size: int | None
    fit: str | None
    augment: bool | None
    dropout: float | None
    weight_decay: float | None
    optimizer: str | None
    lr: float | None
    batch_size: int | None
    schedule: str | None
    class_weights: bool | None
    freeze_backbone: bool | None
    seed: int | None
    epochs_planned: int | None
    epochs_run: int
    best_epoch: int | None
    best_kappa: float | None
    best_auc: float | None
    train_seconds: float | None
    device: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SkippedRun:
    path: str
    reason: str


@dataclass
class Comparison:
    runs: list[RunSummary] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [r.to_dict() for r in self.runs], "skipped": [asdict(s) for s in self.skipped]}

    def require_runs(self) -> "Comparison":
        """``self``, or ``MuraError`` (exit 1) when no run could be read."""
        if not self.runs:
            raise MuraError(
                "no readable run among the folders given",
                "pass run directories written by `mura train` (or a folder that holds them, e.g. runs/)",
            )
        return self


def compare_runs(paths: Iterable[str | Path], *, sort: str = "kappa") -> Comparison:
    """Read every run among ``paths`` into a row, sorted by ``sort`` (see ``SORT_KEYS``).

    A path may be a run directory, a folder of runs (e.g. ``runs/``) or a
    quoted glob pattern. A path that is not a folder is a ``DataError``;
    folders that are not readable runs are listed in ``skipped`` with the
    reason (``Comparison.require_runs`` turns "none readable" into an error).
    """
    if sort not in SORT_KEYS:
        raise DataError(f"unknown sort key {sort!r}", f"choose one of: {', '.join(SORT_KEYS)}")
    folders, skipped = find_runs(paths)
    comparison = Comparison(skipped=skipped)
    for folder in folders:
        try:
            comparison.runs.append(read_run(folder))
        except MuraError as exc:
            comparison.skipped.append(SkippedRun(str(folder), exc.message))
    comparison.runs = sort_runs(comparison.runs, sort)
    return comparison


def find_runs(paths: Iterable[str | Path]) -> tuple[list[Path], list[SkippedRun]]:
    """Run folders named by ``paths``: run directories as they are, folders of
    runs expanded to the runs inside (one level), glob patterns expanded.
    Duplicates are dropped; order is kept."""
    expanded: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists() and glob.has_magic(str(raw)):
            matches = sorted(Path(p) for p in glob.glob(str(raw)))
            if not matches:
                raise DataError(f"no folder matches {raw}", "pass run directories written by `mura train`")
            expanded.extend(m for m in matches if m.is_dir())
            continue
        if not path.is_dir():
            what = "does not exist" if not path.exists() else "is not a directory"
            raise DataError(f"{path} {what}", "pass run directories written by `mura train` (or a folder of them)")
        expanded.append(path)

    folders: list[Path] = []
    skipped: list[SkippedRun] = []
    for path in expanded:
        if is_run(path):
            folders.append(path)
            continue
        inside = sorted(child for child in _subfolders(path) if is_run(child))
        if inside:
            folders.extend(inside)
        else:
            skipped.append(SkippedRun(str(path), "not a run directory (no config.json or metrics.csv) and holds none"))
    seen: set[Path] = set()
    unique = []
    for folder in folders:
        key = folder.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(folder)
    return unique, skipped


def is_run(path: Path) -> bool:
    return any((path / name).is_file() for name in _RUN_FILES)


def _subfolders(path: Path) -> list[Path]:
    try:
        return [child for child in path.iterdir() if child.is_dir()]
    except OSError:
        return []


def read_run(path: str | Path) -> RunSummary:
    """One run's row from its config.json and metrics.csv; ``DataError`` when
    either is missing (config.json), unreadable or malformed."""
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise DataError("no config.json")
    import json

    try:
        record = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"config.json is unreadable ({_short(exc)})") from exc
    config = record.get("config") if isinstance(record, dict) else None
    if not isinstance(config, dict):
        raise DataError("config.json has no training config (not written by `mura train`?)")
    epochs = _read_epochs(path / "metrics.csv")

    best = None
    for row in epochs:  # first epoch with the highest kappa, as best.pt keeps it
        kappa = row.get("valid_kappa")
        if kappa is not None and (best is None or kappa > best["valid_kappa"]):
            best = row
    seconds = [row["seconds"] for row in epochs if row.get("seconds") is not None]
    device = record.get("device") if isinstance(record.get("device"), dict) else {}
    weights = config.get("weights")
    return RunSummary(
        run=Path(os.path.abspath(path)).name,  # abspath: a name for '.', symlinks kept
        path=str(path),
        model=str(config.get("model", "?")),
        pretrained=Path(str(weights)).name if weights else ("yes" if config.get("pretrained") else "no"),
        image_size=_int(config.get("image_size")),
        fit=_str(config.get("fit")),
        augment=_bool(config.get("augment")),
        dropout=_float(config.get("dropout")),
        weight_decay=_float(config.get("weight_decay")),
        optimizer=_str(config.get("optimizer")),
        lr=_float(config.get("lr")),
        batch_size=_int(config.get("batch_size")),
        schedule=_str(config.get("schedule")),
        class_weights=_bool(config.get("class_weights")),
        freeze_backbone=_bool(config.get("freeze_backbone")),
        seed=_int(config.get("seed")),
        epochs_planned=_int(config.get("epochs")),
        epochs_run=max((int(row["epoch"]) for row in epochs), default=0),
        best_epoch=int(best["epoch"]) if best else None,
        best_kappa=best["valid_kappa"] if best else None,
        best_auc=best.get("valid_auc") if best else None,
        train_seconds=sum(seconds) if seconds else None,
        device=_str(device.get("type")),
    )


def _read_epochs(path: Path) -> list[dict[str, Any]]:
    """metrics.csv as numbers; missing file = no epoch yet; anything malformed is a DataError."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"metrics.csv is unreadable ({_short(exc)})") from exc
    if rows and "epoch" not in rows[0]:
        raise DataError("metrics.csv has no epoch column")
    epochs = []
    for number, row in enumerate(rows, start=2):
        parsed = {key: _number(value) for key, value in row.items() if key is not None}
        if not isinstance(parsed.get("epoch"), float) or not parsed["epoch"].is_integer():
            raise DataError(f"metrics.csv line {number} has no valid epoch number")
        epochs.append(parsed)
    return epochs


def _number(value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None


def sort_runs(runs: list[RunSummary], key: str = "kappa") -> list[RunSummary]:
    """Runs sorted by ``key``; runs without the value come last, ties by name."""
    if key not in SORT_KEYS:
        raise DataError(f"unknown sort key {key!r}", f"choose one of: {', '.join(SORT_KEYS)}")
    if key == "name":
        return sorted(runs, key=lambda r: (r.run, r.path))
    value, descending = {
        "kappa": (lambda r: r.best_kappa, True),
        "auc": (lambda r: r.best_auc, True),
        "time": (lambda r: r.train_seconds, False),
        "image_size": (lambda r: r.image_size, False),
    }[key]

    def order(run: RunSummary):
        v = value(run)
        if v is None:
            return (1, 0.0, run.run, run.path)
        return (0, -v if descending else v, run.run, run.path)

    return sorted(runs, key=order)
