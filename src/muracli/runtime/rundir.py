"""The run directory and the record of the latest run.

``config.json`` (every option, versions, data fingerprint, device),
``metrics.csv`` (one row per epoch), ``best.pt``, ``last.pt``, ``log.txt``,
``curves.png`` and, for a run that chooses its checkpoint on a part of train
(``--select-on train:FRACTION``), ``selection.csv``: the studies held out.
The latest run is recorded in a small state file so that ``mura evaluate``
and ``mura predict`` can default to it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli.errors import CheckpointError
from muracli.files import write_atomic

if TYPE_CHECKING:
    import pandas as pd

#: The select_* columns are empty unless a part of train chose the checkpoint (``--select-on train:FRACTION``).
METRIC_COLUMNS = [
    "epoch", "train_loss", "valid_loss", "valid_kappa", "valid_auc", "valid_accuracy",
    "select_loss", "select_kappa", "select_auc",
    "lr", "seconds", "images_per_s",
]
#: Added after them in the metrics.csv of an --ema run: the moving-average weights' validation.
EMA_METRIC_COLUMNS = [
    "ema_valid_loss", "ema_valid_kappa", "ema_valid_auc", "ema_valid_accuracy",
    "ema_select_loss", "ema_select_kappa", "ema_select_auc",
]


def epoch_line(row: dict[str, Any], total: int | None = None) -> str:
    """One epoch's row of metrics.csv as a line for people (the console and log.txt)."""

    def f(value: Any, spec: str = ".3f") -> str:
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return "n/a" if missing else format(value, spec)

    epoch = f"{row['epoch']}/{total}" if total else str(row["epoch"])
    select = ""
    if row.get("select_loss") is not None:
        select = f"select loss {f(row['select_loss'])}  kappa {f(row.get('select_kappa'))}  "
    return (
        f"epoch {epoch}  train loss {f(row['train_loss'])}  {select}valid loss {f(row['valid_loss'])}  "
        f"kappa {f(row['valid_kappa'])}  AUC {f(row['valid_auc'])}  lr {row['lr']:.2g}  "
        f"{f(row['seconds'], '.1f')} s  {f(row['images_per_s'], '.0f')} img/s"
    )


def default_run_dir(model: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{model}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{model}-{stamp}-{n}"
    return path


class RunDir:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.csv")
    best_path = property(lambda self: self.path / "best.pt")
    last_path = property(lambda self: self.path / "last.pt")
    log_path = property(lambda self: self.path / "log.txt")
    curves_path = property(lambda self: self.path / "curves.png")
    selection_path = property(lambda self: self.path / "selection.csv")
    epochs_path = property(lambda self: self.path / "epochs")
    averaged_path = property(lambda self: self.path / "averaged.pt")

    def epoch_path(self, epoch: int) -> Path:
        """Where ``--keep-epochs`` keeps the weights of ``epoch``: ``epochs/epoch-007.pt``."""
        return self.epochs_path / f"epoch-{epoch:03d}.pt"

    def epoch_checkpoints(self) -> list[Path]:
        """The kept epochs' checkpoints, oldest first."""
        found = [p for p in self.epochs_path.glob("epoch-*.pt") if p.stem[6:].isdigit()]
        return sorted(found, key=lambda p: int(p.stem[6:]))

    def holds_run(self) -> bool:
        """Whether a run was already written here (never mix two runs' metrics)."""
        return any(p.exists() for p in (self.config_path, self.metrics_path, self.last_path, self.best_path,
                                        self.selection_path))

    def create(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def write_config(self, config: dict[str, Any]) -> None:
        write_atomic(self.config_path, (json.dumps(config, indent=2, default=str) + "\n").encode())

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read {self.config_path}: {exc}", "is this a run directory written by `mura train`?") from exc

    def write_selection(self, studies: "pd.DataFrame") -> None:
        """selection.csv: one row per held-out study (study, patient, body_part, label)."""
        write_atomic(self.selection_path, studies.to_csv(index=False, lineterminator="\n").encode("utf-8"))

    def read_selection(self) -> "pd.DataFrame":
        import pandas as pd

        try:
            return pd.read_csv(self.selection_path, dtype={"study": str, "patient": str, "body_part": str},
                               keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {self.selection_path}: {exc}",
                                  "it lists the run's held-out studies; restore it, or start a new run") from exc

    def append_metrics(self, row: dict[str, Any]) -> None:
        new = not self.metrics_path.exists()
        with self.metrics_path.open("a", newline="") as handle:
            columns = METRIC_COLUMNS + (EMA_METRIC_COLUMNS if "ema_valid_kappa" in row else [])
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k)) for k in columns})

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        with self.metrics_path.open(newline="") as handle:
            return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(handle)]

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the rows of the first ``epochs`` epochs (a resume from an older last.pt)."""
        rows = [r for r in self.read_metrics() if r["epoch"] is not None and r["epoch"] <= epochs]
        self.metrics_path.unlink(missing_ok=True)
        for row in rows:
            self.append_metrics(row)

    def log(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.log_path.open("a") as handle:
            handle.write(f"{stamp} {line}\n")


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _parse(value: str) -> Any:
    if value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value else number


def state_dir() -> Path:
    if os.environ.get("MURA_STATE_DIR"):
        return Path(os.environ["MURA_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "mura"


def record_latest(run: Path) -> None:
    folder = state_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "latest-run").write_text(str(Path(run).resolve()) + "\n")
    except OSError:
        pass  # a read-only home must not fail a finished training run


def latest_run() -> Path | None:
    """The most recent run: the recorded one if it still exists, else the newest ``./runs/*``."""
    record = state_dir() / "latest-run"
    if record.is_file():
        path = Path(record.read_text().strip())
        if (path / "best.pt").is_file() or (path / "last.pt").is_file():
            return path
    candidates = [p for p in Path("runs").glob("*") if (p / "best.pt").is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None
