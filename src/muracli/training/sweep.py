"""`mura sweep`: a grid of training runs from one TOML file, run one after another, resumable.

A grid file holds ``[base]`` (options every run shares), ``[axes]`` (lists
whose product gives the runs) and/or ``[[runs]]`` (tables, each merged over
base; with axes too, each of them is crossed with the axes). Keys are
``mura train``'s option names with ``_`` for ``-`` (``image_size``,
``cpu = true``, ``no_augment = true`` or ``augment = false``, ``rotate``,
``body_part``): they are read through ``TrainConfig``'s own table (flags,
``cli_type``, ``to_config``), so the grid accepts exactly what ``mura train``
does. Everything is checked before the first run starts.

Each run has its own directory under the sweep's folder, named after the
values that vary (``image_size-64_seed-1``). Its state on disk decides what
happens to it, so re-running the same command after a crash completes the
grid: a run whose ``last.pt`` says it finished is left untouched; one with a
``last.pt`` is resumed from it; a directory a run began without finishing an
epoch (no ``last.pt``) is cleared and started again.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from muracli.errors import ConfigError, MuraError, TrainingInterrupted
from muracli.files import write_atomic
from muracli.progress import ProgressFn, silent
from muracli.runtime.rundir import RunDir
from muracli.training.config import (
    EXECUTION_FIELDS, FIELDS, RESUMABLE_FIELDS, TrainConfig, check_range, declarations, sized_to_cache, value_type,
)
from muracli.training.sizing import RESOLVED_AT_START

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Grid keys that are not options of a run.
_NOT_IN_GRID = {"out": "each run's directory is chosen by the sweep (mura sweep --out DIR sets the folder)"}
#: The files a run directory holds before its first epoch ends (cleared to restart such a run).
_RUN_FILES = ("config.json", "metrics.csv", "best.pt", "log.txt", "curves.png", "selection.csv")


@dataclass(frozen=True)
class GridKey:
    """One key a grid may use: the ``TrainConfig`` field, the value type ``mura train`` takes,
    and, for the negative name of a switch (``cpu`` of ``--gpu/--cpu``), ``negate``."""

    name: str
    field: str
    kind: type
    negate: bool = False


def grid_keys() -> dict[str, GridKey]:
    """Every key a grid may use, derived from ``TrainConfig``'s option table (its flags)."""
    hints = typing.get_type_hints(TrainConfig)
    keys: dict[str, GridKey] = {}
    for name, f in FIELDS.items():
        meta = f.metadata
        if meta["help"] is None or name in _NOT_IN_GRID:
            continue
        kind = value_type(f, hints[name])
        long = next(d for d in declarations(f, kind) if d.startswith("--"))
        names = [part[2:].replace("-", "_") for part in long.split("/")]
        keys[names[0]] = GridKey(names[0], name, kind)
        if len(names) > 1:
            keys[names[1]] = GridKey(names[1], name, kind, negate=True)
    return keys


@dataclass
class PlannedRun:
    """One run of the grid: its name, the values that make it differ, its config and directory."""

    name: str
    varying: dict[str, Any]
    config: TrainConfig
    status: str = "new"  # new, restart (a directory without last.pt), resume, done
    epoch: int = 0  # completed epochs found in last.pt
    best_kappa: float | None = None
    best_epoch: int | None = None
    seconds: float | None = None
    result: str | None = None  # after the sweep: trained, resumed, skipped, interrupted

    @property
    def path(self) -> Path:
        return Path(self.config.out)

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name, "dir": str(self.path), "options": self.varying, "status": self.status,
            "epoch": self.epoch, "epochs": self.config.epochs, "result": self.result, "best_kappa": self.best_kappa,
            "best_epoch": self.best_epoch, "seconds": None if self.seconds is None else round(self.seconds, 2),
        }


@dataclass
class Grid:
    path: Path
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    tables: list[dict[str, Any]]
    out: Path
    runs: list[PlannedRun] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "grid": str(self.path), "out": str(self.out),
            "base": self.base, "axes": self.axes, "runs_tables": self.tables,
            "runs": [run.record() for run in self.runs],
        }


def default_out(grid_path: Path | str) -> Path:
    return Path("runs") / Path(grid_path).stem


def load_grid(path: Path | str, out: Path | str | None = None) -> Grid:
    """Read, check and expand a grid file; every run's config validated, statuses read from disk."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the grid file {path}: {exc.strerror or exc}",
                          "pass a TOML file with [base] and [axes] (see examples/)") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else len(text.splitlines()))
        raise ConfigError(f"{path}, line {line}: not valid TOML: {exc}", "fix that line (see examples/ for a grid)") from exc
    unknown = sorted(set(data) - {"base", "axes", "runs"})
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r}", "a grid has [base], [axes] and/or [[runs]]")
    base = _table(data.get("base", {}), "[base]", path)
    axes = _table(data.get("axes", {}), "[axes]", path)
    tables = data.get("runs", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: runs must be an array of tables ([[runs]])", "write each run as a [[runs]] table")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: axis {key!r} must be a non-empty list, got {values!r}",
                              f"e.g. {key} = [a, b]; put a single value in [base]")
    grid = Grid(path, base, axes, tables, Path(out) if out is not None else default_out(path))
    grid.runs = _expand(grid)
    return grid


def _table(value: Any, where: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {where} must be a table", "see examples/ for the form of a grid")
    return value


def _expand(grid: Grid) -> list[PlannedRun]:
    keys = grid_keys()
    tables = [dict(t) for t in grid.tables] or [{}]
    runs: list[PlannedRun] = []
    seen: dict[str, dict[str, Any]] = {}
    for table in tables:
        label = table.pop("name", None)
        for combo in itertools.product(*grid.axes.values()):
            varying = {**table, **dict(zip(grid.axes, combo))}
            options = {**grid.base, **varying}
            config = _config(options, keys, grid)
            named = dict(zip(grid.axes, combo)) if label is not None else varying
            parts = ([_safe(label)] if label is not None else []) + [f"{key}-{_safe(value)}" for key, value in named.items()]
            name = "_".join(parts) or "base"
            if name in seen:
                raise ConfigError(f"{grid.path}: two runs would share the directory {name!r}",
                                  "give [[runs]] tables distinct values, or a name = \"...\" each")
            seen[name] = varying
            config.out = str(grid.out / name)
            runs.append(PlannedRun(name, varying, config))
    return runs


def _safe(value: Any) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else format(value, "g") if isinstance(
        value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+=-]+", "-", text).strip("-") or "empty"


def _config(options: dict[str, Any], keys: dict[str, GridKey], grid: Grid) -> TrainConfig:
    """The ``TrainConfig`` of one run's merged options, as ``mura train`` would build it."""
    given: dict[str, Any] = {}
    for key, value in options.items():
        if key in _NOT_IN_GRID:
            raise ConfigError(f"{grid.path}: {key!r} cannot be set in a grid", _NOT_IN_GRID[key])
        spec = keys.get(key)
        if spec is None:
            raise ConfigError(f"{grid.path}: unknown option {key!r}",
                              "keys are `mura train` options with _ for - (see mura train --help)")
        value = _typed(key, value, spec, grid.path)
        convert = FIELDS[spec.field].metadata["to_config"]
        try:
            given[spec.field] = convert(value) if convert else value
        except ConfigError as exc:
            raise ConfigError(f"{grid.path}: {key}: {exc.message}", exc.hint) from exc
    try:
        return TrainConfig(**sized_to_cache(given)).validate()
    except ConfigError as exc:
        raise ConfigError(f"{grid.path}: {exc.message}", exc.hint) from exc


def _typed(key: str, value: Any, spec: GridKey, path: Path) -> Any:
    kind = spec.kind
    if spec.field == "body_parts" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        shown = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "a string")
        raise ConfigError(f"{path}: {key} must be {shown}, got {value!r}", f"e.g. see mura train --help for --{key.replace('_', '-')}")
    meta = FIELDS[spec.field].metadata
    if meta["choices"] and kind is str and value not in meta["choices"]:
        raise ConfigError(f"{path}: {key} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if kind in (int, float):
        try:
            check_range(value, meta["low"], meta["high"], key)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc.message}", exc.hint) from exc
    return (not value) if spec.negate else value


# -- the state of each run on disk


def read_statuses(grid: Grid) -> None:
    """Set each run's ``status`` from its directory; a run whose recorded options differ from the grid's is a ``ConfigError``."""
    for run in grid.runs:
        _read_status(run, grid)


def _read_status(run: PlannedRun, grid: Grid) -> None:
    rundir = RunDir(run.path)
    if not rundir.last_path.is_file():
        run.status = "restart" if rundir.holds_run() else "new"
        return
    recorded = TrainConfig.from_dict(rundir.read_config()["config"])
    fixed = EXECUTION_FIELDS | RESUMABLE_FIELDS
    differ = [
        name for name in FIELDS
        if name not in fixed and getattr(recorded, name) != getattr(run.config, name)
        and not (name in RESOLVED_AT_START and getattr(run.config, name) is None)  # left to the device
    ]
    if differ:
        what = ", ".join(f"{name} {getattr(recorded, name)!r} → {getattr(run.config, name)!r}" for name in differ)
        raise ConfigError(
            f"{run.path} was trained with other options than {grid.path} now asks: {what}",
            f"restore the grid file, pass another --out, or remove {run.path} to train it again",
        )
    from muracli.runtime.checkpoint import load_checkpoint

    state = load_checkpoint(rundir.last_path).get("progress", {})
    run.epoch = int(state.get("epoch", 0))
    run.best_epoch = state.get("best_epoch")
    run.best_kappa = state.get("best_kappa") if run.best_epoch is not None else None
    finished = run.epoch >= run.config.epochs or bool(state.get("stopped_early"))
    run.status = "done" if finished else "resume"


# -- running the grid


def write_record(grid: Grid) -> None:
    write_atomic(grid.out / "sweep.json", (json.dumps(grid.record(), indent=2, default=str) + "\n").encode())


def run_sweep(
    grid: Grid,
    *,
    command: str,
    progress: ProgressFn | None = None,
    on_epoch: Callable[[PlannedRun, dict[str, Any]], None] | None = None,
    on_start: Callable[[PlannedRun], None] | None = None,
    on_run: Callable[[PlannedRun], None] | None = None,
) -> Grid:
    """Train every run of ``grid`` that is not done, one after another, in this process.

    ``command`` is how to continue after an interruption (for the hint).
    Under torchrun every rank walks the same list; only rank 0 writes sweep.json
    or clears a directory.
    """
    from muracli.runtime import distributed
    from muracli.runtime.devices import select_device

    world = distributed.world_from_environment()
    read_statuses(grid)
    if world.is_main:
        write_record(grid)
    todo = [run for run in grid.runs if run.status != "done"]
    # One process group for every run: each train() call finds it started and leaves it so.
    started = bool(todo) and distributed.start(world, select_device(todo[0].config.device, world.local_rank))
    try:
        _run_all(grid, command, progress or silent, on_epoch, on_start, on_run, world)
    finally:
        if started:
            distributed.stop(world)
    return grid


def _run_all(grid: Grid, command: str, progress: ProgressFn, on_epoch, on_start, on_run, world) -> None:
    from muracli.training.trainer import resume_config, train

    main_rank = world.is_main

    for run in grid.runs:
        if run.status == "done":
            run.result = "skipped"
            if on_run is not None:
                on_run(run)
            continue
        if on_start is not None:
            on_start(run)
        if run.status == "restart":
            _clear(RunDir(run.path), world)
        if run.status == "resume":  # to the grid's epochs, with its way of executing (device, workers ...)
            config = resume_config(run.path, **{name: getattr(run.config, name) for name in RESUMABLE_FIELDS})
            resume: Path | None = run.path
        else:
            config, resume = dataclasses.replace(run.config), None
        callback = (lambda row, run=run: on_epoch(run, row)) if on_epoch is not None else None
        started = time.monotonic()
        try:
            result = train(config, resume=resume, progress=progress, on_epoch=callback)
        except (MuraError, KeyboardInterrupt) as exc:
            # Ctrl-C in an epoch (last.pt saved), or while the data loads or the cache builds
            code = getattr(exc, "exit_code", 130)
            if code < 128 and isinstance(exc, MuraError):
                raise
            run.result, run.seconds = "interrupted", time.monotonic() - started
            if main_rank:
                write_record(grid)
            message = exc.message if isinstance(exc, MuraError) else "interrupted"
            raise TrainingInterrupted(f"sweep interrupted in run {run.name}: {message}", code - 128,
                                      hint=f"continue the sweep with: {command}") from exc
        run.result = "resumed" if resume is not None else "trained"
        run.seconds = time.monotonic() - started
        run.epoch, run.best_epoch, run.best_kappa = result.epochs, result.best_epoch, result.best_kappa
        if main_rank:
            write_record(grid)
        if on_run is not None:
            on_run(run)


def _clear(rundir: RunDir, world) -> None:
    """Remove what a run left before finishing its first epoch, so it starts clean.

    Rank 0 removes; every rank meets it at a barrier after (the trainer refuses a directory holding a run).
    """
    from muracli.runtime import distributed

    if world.is_main:
        for name in _RUN_FILES:
            (rundir.path / name).unlink(missing_ok=True)
        for kept in rundir.epoch_checkpoints():
            kept.unlink(missing_ok=True)
    distributed.barrier(world)
