"""Many run directories as rows of one table: the experiment tables of a thesis.

Each row comes from a run's ``config.json`` (the options it was trained
with) and ``metrics.csv`` (one row per epoch): the epoch that ``best.pt``
holds - the best kappa on the split that chose the checkpoint (valid, or the
held-out part of train of ``--select-on train:FRACTION``), with the EMA
weights when they scored better there - gives the row's valid kappa and AUC,
and the training time is the sum of the epochs' seconds.

``fold_runs`` folds runs that differ only in their seed (and in options that
change how a run executes, not what it learns) into one configuration with
the mean and standard deviation of its kappa and AUC. Standard library only:
no model, tensor or data frame is loaded, so comparing a hundred runs is
instant.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import statistics
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
    selected_on: str = "valid"  # the split that chose best.pt: valid or train:FRACTION
    chosen_kappa: float | None = None  # that split's kappa at the best epoch (= best_kappa when valid chose)
    best_weights: str | None = None  # raw or ema: the weights best.pt holds
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # config.json's training options

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        del row["config"]
        return row


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

    def include(self, run: RunSummary) -> RunSummary:
        """``run`` as a row of this comparison: the row of the same folder, else ``run`` appended."""
        for row in self.runs:
            if Path(row.path).resolve() == Path(run.path).resolve():
                return row
        self.runs.append(run)
        return run


def read_baseline(path: str | Path) -> RunSummary:
    """The baseline run of ``--against``: a run directory with a best.pt, else a ``DataError``."""
    path = Path(path)
    hint = "pass a run directory written by `mura train` (with config.json, metrics.csv and best.pt)"
    if not path.is_dir():
        raise DataError(f"--against {path}: {'no such folder' if not path.exists() else 'not a folder'}", hint)
    if not (path / "best.pt").is_file() or not (path / "config.json").is_file():
        raise DataError(f"--against {path} is not a run (no config.json or best.pt)", hint)
    try:
        return read_run(path)
    except DataError as exc:
        raise DataError(f"--against {path}: {exc.message}", hint) from exc


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
    try:
        record = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"config.json is unreadable ({_short(exc)})") from exc
    config = record.get("config") if isinstance(record, dict) else None
    if not isinstance(config, dict):
        raise DataError("config.json has no training config (not written by `mura train`?)")
    epochs = _read_epochs(path / "metrics.csv")
    selected_on = str(config.get("select_on") or "valid")
    chooser = "valid" if selected_on == "valid" else "select"
    best, best_weights = best_epoch(epochs, chooser)
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
        selected_on=selected_on,
        chosen_kappa=best.get(f"{chooser}_kappa") if best else None,
        best_weights=best_weights,
        config=config,
    )


def best_epoch(epochs: list[dict[str, Any]], chooser: str) -> tuple[dict[str, Any] | None, str | None]:
    """The epoch row ``best.pt`` holds, as training chose it, and its weights (``raw`` or ``ema``).

    The best epoch is the first of highest ``<chooser>_kappa`` (``valid``, or ``select`` for a run
    chosen on a held-out part of train); an undefined kappa counts as -1. With EMA, an epoch is
    scored with the weights ``chosen_weights`` picks. Epochs without the chooser's column are
    passed over; ``(None, None)`` when none has it.
    """
    column = f"{chooser}_kappa"
    best, best_score, best_weights = None, -math.inf, None
    for row in epochs:
        if column not in row:
            continue
        weights, chosen = chosen_weights(row, chooser)
        if _score(chosen.get(column)) > best_score:
            best, best_score, best_weights = chosen, _score(chosen.get(column)), weights
    return best, best_weights


def chosen_weights(row: dict[str, Any], chooser: str) -> tuple[str, dict[str, Any]]:
    """``("ema", the row as the EMA weights scored)`` when an epoch's EMA weights have the better
    kappa on the choosing split (``ema_<chooser>_kappa``), else ``("raw", row)``; a tie, or a row
    without EMA metrics, keeps the raw weights. The one rule for the trainer (which weights
    best.pt keeps) and for reading metrics.csv back (``best_epoch``)."""
    column = f"{chooser}_kappa"
    if f"ema_{column}" not in row or _score(row[f"ema_{column}"]) <= _score(row.get(column)):
        return "raw", row
    keys = {f"{split}_{metric}" for split in (chooser, "valid") for metric in ("kappa", "auc")}
    return "ema", {**row, **{key: row.get(f"ema_{key}") for key in keys}}


def _score(kappa: float | None) -> float:
    return -1.0 if kappa is None else kappa


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
        parsed = {key: _number(value) for key, value in row.items() if key is not None and value is not None}
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
    values = {"kappa": lambda r: r.best_kappa, "auc": lambda r: r.best_auc, "time": lambda r: r.train_seconds,
              "image_size": lambda r: r.image_size}
    return _ordered(runs, key, values, lambda r: (r.run, r.path))


def sort_groups(groups: list["RunGroup"], key: str = "kappa") -> list["RunGroup"]:
    """Configurations sorted by ``key`` as ``sort_runs`` sorts runs: by mean kappa, AUC and time."""
    values = {"kappa": lambda g: g.kappa, "auc": lambda g: g.auc,
              "time": lambda g: mean_sd(r.train_seconds for r in g.runs)[0], "image_size": lambda g: g.first.image_size}
    return _ordered(groups, key, values, lambda g: (g.name, g.first.path))


def _ordered(items: list, key: str, values: dict, name) -> list:
    """``items`` by ``values[key]`` (kappa and auc best first, the others smallest first; missing
    values last, ties by ``name``), or by ``name`` alone for ``key="name"``."""
    if key not in SORT_KEYS:
        raise DataError(f"unknown sort key {key!r}", f"choose one of: {', '.join(SORT_KEYS)}")
    if key == "name":
        return sorted(items, key=name)
    value, descending = values[key], key in ("kappa", "auc")

    def order(item):
        v = value(item)
        if v is None:
            return (1, 0.0, *name(item))
        return (0, -v if descending else v, *name(item))

    return sorted(items, key=order)


#: Fields of config.json that never make two runs different configurations, besides the ones a caller
#: adds (``mura compare`` adds the training options that change how a run executes, not what it learns).
SEED_FIELDS = frozenset({"seed", "out"})


@dataclass
class RunGroup:
    """Runs of one configuration (equal configs but for the seed): one row of the folded table.

    ``kappa``/``auc`` are the mean over the runs of their valid kappa/AUC at the best epoch,
    ``kappa_sd``/``auc_sd`` the sample standard deviation (None for a single run)."""

    name: str
    runs: list[RunSummary]
    kappa: float | None
    kappa_sd: float | None
    auc: float | None
    auc_sd: float | None

    @property
    def first(self) -> RunSummary:
        return self.runs[0]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[int | None]:
        return [run.seed for run in self.runs]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "seeds": self.seeds, "runs": [run.run for run in self.runs],
                "kappa_mean": self.kappa, "kappa_sd": self.kappa_sd, "auc_mean": self.auc, "auc_sd": self.auc_sd}


def configuration_key(run: RunSummary, ignore: Iterable[str] = ()) -> str:
    """What makes ``run`` its configuration: its config without the seed, ``out`` and ``ignore``."""
    skip = SEED_FIELDS | set(ignore)
    return json.dumps({k: v for k, v in run.config.items() if k not in skip}, sort_keys=True, default=str)


def fold_runs(runs: list[RunSummary], ignore: Iterable[str] = ()) -> list[RunGroup]:
    """``runs`` grouped by ``configuration_key``, in the order each configuration first appears."""
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:
        groups.setdefault(configuration_key(run, ignore), []).append(run)
    return [group_of(members) for members in groups.values()]


def group_of(runs: list[RunSummary]) -> RunGroup:
    """One configuration's row: the mean and sd over ``runs`` of their kappa and AUC."""
    kappa, kappa_sd = mean_sd([run.best_kappa for run in runs])
    auc, auc_sd = mean_sd([run.best_auc for run in runs])
    return RunGroup(name=_common_name([run.run for run in runs]), runs=list(runs), kappa=kappa, kappa_sd=kappa_sd,
                    auc=auc, auc_sd=auc_sd)


def mean_sd(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """The mean and sample standard deviation of the defined ``values``; sd is None below two."""
    defined = [v for v in values if v is not None]
    if not defined:
        return None, None
    return statistics.fmean(defined), statistics.stdev(defined) if len(defined) > 1 else None


def _common_name(names: list[str]) -> str:
    """``cnn-s1``, ``cnn-s2`` -> ``cnn``: the names' common start without trailing separators."""
    if len(names) == 1:
        return names[0]
    prefix = os.path.commonprefix(names).rstrip("-_. ")
    if prefix.lower().endswith(("seed", "-s", "_s")):
        prefix = prefix[: -4 if prefix.lower().endswith("seed") else -2].rstrip("-_. ")
    return prefix or names[0]


def varying_fields(groups: list[RunGroup], ignore: Iterable[str] = ()) -> list[str]:
    """The training options whose value differs between configurations (besides ``ignore``)."""
    skip = SEED_FIELDS | set(ignore)
    keys = sorted({key for group in groups for key in group.first.config} - skip)
    return [key for key in keys
            if len({json.dumps(g.first.config.get(key), sort_keys=True, default=str) for g in groups}) > 1]


@dataclass
class SweepPoint:
    """One configuration in the sweep plot: its axis value, mean kappa and error bar below/above."""

    x: Any
    kappa: float
    below: float
    above: float
    n: int


def sweep_axis(groups: list[RunGroup], axis: str | None = None, ignore: Iterable[str] = ()) -> str:
    """The option to plot kappa against: ``axis`` when it varies among ``groups``, else the one option
    besides ``model`` that varies; ``ConfigError`` when none (or, without ``axis``, several) vary."""
    from muracli.errors import ConfigError

    varying = [key for key in varying_fields(groups, ignore) if key != "model"]
    if axis is not None:
        known = {key for group in groups for key in group.first.config}
        if axis not in known:
            raise ConfigError(f"--axis {axis}: no run has that option",
                              f"choose one of the options that vary: {', '.join(varying) or 'none'}")
        if axis not in varying:
            raise ConfigError(f"--axis {axis}: every run has the same {axis}",
                              f"choose one of the options that vary: {', '.join(varying) or 'none'}")
        return axis
    if not varying:
        raise ConfigError("--plot: no option varies among the runs, so there is no axis to plot kappa against",
                          "compare runs of a sweep (e.g. several --image-size), or leave --plot out")
    if len(varying) > 1:
        raise ConfigError(f"--plot: several options vary among the runs ({', '.join(varying)})",
                          "choose the one to plot against with --axis NAME")
    return varying[0]


def sweep_series(
    groups: list[RunGroup], axis: str, *, intervals: dict[str, tuple[float, float, float]] | None = None,
    ignore: Iterable[str] = (),
) -> dict[str, list[SweepPoint]]:
    """Kappa against ``axis``: one series per model (and per value of any other option that varies),
    points sorted by the axis value. Error bars: the sd over a configuration's seeds, or for a
    single run its bootstrap interval ``intervals[path] = (kappa, low, high)`` when given (the
    point is then that evaluation's kappa), else none."""
    others = [key for key in varying_fields(groups, ignore) if key not in (axis, "model")]
    series: dict[str, list[SweepPoint]] = {}
    for group in groups:
        config = group.first.config
        label = ", ".join([str(config.get("model", group.first.model))]
                          + [f"{key}={config.get(key)}" for key in others])
        interval = (intervals or {}).get(group.first.path) if group.n == 1 else None
        if interval is not None:
            kappa, low, high = interval
            point = SweepPoint(config.get(axis), kappa, max(kappa - low, 0.0), max(high - kappa, 0.0), group.n)
        elif group.kappa is not None:
            sd = group.kappa_sd or 0.0
            point = SweepPoint(config.get(axis), group.kappa, sd, sd, group.n)
        else:
            continue
        series.setdefault(label, []).append(point)
    for points in series.values():
        points.sort(key=lambda p: (not isinstance(p.x, (int, float)), p.x if isinstance(p.x, (int, float)) else 0,
                                   str(p.x)))
    return series
