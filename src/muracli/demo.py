"""The whole pipeline on a fresh synthetic dataset, for ``mura demo``.

``run_demo(DemoConfig(...))`` chains what the commands do one by one:

1. **dataset** - ``generate_synthetic`` into ``<dir>/data/MURA-v1.1``;
2. **stats** - the breakdown per split and body part, and ``<dir>/montage.png``;
3. **preprocess** - ``build_cache`` at the demo's image size;
4. **train** - the ``cnn`` into ``<dir>/run`` (CPU, or the GPU when present);
5. **evaluate** - study-level metrics with bootstrap CIs into ``<dir>/evaluation``;
6. **predict** - a few valid studies (normal and abnormal) with Grad-CAM
   overlays into ``<dir>/cams``;

then writes ``<dir>/report.md``, which links every picture (relative paths)
and gives the command line that redoes each step by hand.

A second run reuses what is already there and still valid: the dataset when
it was made with the same studies, seed, difficulty and image size (recorded
in ``<dir>/data/demo-dataset.json``), the cache when its manifest is complete,
the training run when its config matches and it finished (an interrupted one
is resumed from ``last.pt``). Evaluation and prediction take seconds and are
always redone.

The module never prints: stages report through ``progress`` (bars) and
``on_stage`` (one ``StageResult`` per finished stage); the result is a
``DemoResult``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli import __version__
from muracli.errors import ConfigError, DataError
from muracli.progress import ProgressFn, silent

if TYPE_CHECKING:
    from muracli.data.cache import Cache
    from muracli.data.layout import MuraLayout
    from muracli.evaluation.evaluate import Evaluation

DATASET_RECORD = "demo-dataset.json"
STAGES = ("dataset", "stats", "preprocess", "train", "evaluate", "predict")
# TrainConfig fields that change how a run executes but not what it learns: a finished
# run that differs only in these is reused.
EXECUTION_FIELDS = {"out", "data", "cache", "device", "workers", "eval_batch_images", "compile"}


@dataclass(frozen=True)
class DemoConfig:
    """The demo's options. The defaults finish in about a minute on a 2-core CPU (well under three)
    and give a model that is clearly better than chance (see the README)."""

    dir: Path = Path("mura-demo")
    studies: int = 600
    seed: int = 0
    # "easy": at 64 px and a few epochs the cnn learns the easy findings (measured with
    # these defaults: valid kappa 0.66, AUC 0.87) but not yet the default "normal"
    # ones (AUC about 0.6).
    difficulty: str = "easy"
    # The images are shrunk to image_size px for the model anyway; drawing them at
    # 256 px instead of MURA's 512 halves the time the dataset takes.
    max_side: int = 256
    image_size: int = 64
    epochs: int = 6
    batch_size: int = 32
    lr: float = 2e-3
    # Cosine decay over the few epochs: the default plateau schedule (patience 1)
    # would cut the rate after the first noisy epoch of such a short run.
    schedule: str = "cosine"
    # A run of a few epochs is over before regularisation pays off: without dropout and
    # augmentation the cnn learns the synthetic findings several times faster (measured:
    # valid AUC 0.74 against 0.64 after 8 epochs at 64 px); `mura train` keeps both on.
    dropout: float = 0.0
    augment: bool = False
    # The MURA paper's loss weights: without them a weak model calls most studies normal
    # (the rarer class), which costs kappa and leaves the abnormal examples unflagged.
    class_weights: bool = True
    device: str = "auto"  # auto (the GPU when present) | cpu | cuda
    bootstrap: int = 1000
    predict_normal: int = 2
    predict_abnormal: int = 2
    # CPU threads for torch; None picks by the load of the machine (see choose_threads).
    threads: int | None = None

    def validate(self) -> "DemoConfig":
        from muracli.synthetic import DIFFICULTIES

        def check(ok: bool, message: str, hint: str | None = None) -> None:
            if not ok:
                raise ConfigError(message, hint)

        check(self.studies >= 14, f"--studies must be at least 14 (two per body part), got {self.studies}")
        check(self.seed >= 0, f"--seed must be >= 0, got {self.seed}")
        check(self.difficulty in DIFFICULTIES, f"unknown difficulty {self.difficulty!r}",
              f"choose one of {', '.join(DIFFICULTIES)}")
        check(self.epochs >= 1, "--epochs must be at least 1")
        check(16 <= self.image_size <= 512, f"--image-size must be between 16 and 512, got {self.image_size}")
        check(64 <= self.max_side <= 4096, f"--max-side must be between 64 and 4096, got {self.max_side}")
        check(self.device in ("auto", "cpu", "cuda"), f"unknown device {self.device!r}")
        check(self.threads is None or self.threads >= 1, "--threads must be at least 1")
        check(self.bootstrap == 0 or self.bootstrap >= 100, "bootstrap needs at least 100 resamples (or 0)")
        return self


@dataclass
class StageResult:
    """One finished stage: ``summary`` is a short human phrase ("400 studies, 1080 images")."""

    name: str
    summary: str
    seconds: float
    reused: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    config: DemoConfig
    dir: Path
    stages: list[StageResult]
    kappa: float | None
    kappa_ci: list[float] | None
    auc: float | None
    auc_ci: list[float] | None
    n_valid_studies: int
    predictions: list[dict[str, Any]]
    files: dict[str, Path]
    device: str
    threads: int
    seconds: float
    commands: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``mura demo --json``): absolute paths, seconds per stage."""
        config = asdict(self.config)
        config["dir"] = str(self.config.dir)
        return {
            "dir": str(self.dir.resolve()),
            "kappa": self.kappa,
            "kappa_ci": self.kappa_ci,
            "auc": self.auc,
            "auc_ci": self.auc_ci,
            "n_valid_studies": self.n_valid_studies,
            "device": self.device,
            "cpu_threads": self.threads,
            "seconds": round(self.seconds, 2),
            "stages": {
                s.name: {"seconds": round(s.seconds, 2), "reused": s.reused, "summary": s.summary} for s in self.stages
            },
            "predictions": self.predictions,
            "files": {role: str(path.resolve()) for role, path in self.files.items()},
            "commands": self.commands,
            "config": config,
            "mura_version": __version__,
        }


StageCallback = Callable[[StageResult], None]


def run_demo(
    config: DemoConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    on_stage: StageCallback | None = None,
) -> DemoResult:
    """Run every stage (reusing what is valid) and write ``report.md``; see the module docstring."""
    config = (config or DemoConfig()).validate()
    progress = progress or silent
    started = time.monotonic()
    root = Path(config.dir)
    from muracli.runtime.devices import select_device

    device = select_device(config.device)  # --gpu without CUDA fails before anything is written
    _prepare_dir(root)
    stages: list[StageResult] = []

    def finished(stage: StageResult) -> None:
        stages.append(stage)
        if on_stage is not None:
            on_stage(stage)

    threads = config.threads or choose_threads()
    with torch_threads(threads if device.type == "cpu" else None):
        layout, stage = _dataset(root, config, progress)
        finished(stage)
        finished(_stats(root, layout, regenerated=not stage.reused))
        cache, stage = _preprocess(root, layout, config, progress)
        finished(stage)
        run_dir, history, stage = _train(root, cache, config, device.type, progress)
        finished(stage)
        evaluation, stage = _evaluate(root, run_dir, cache, config, device.type, progress)
        finished(stage)
        predictions, stage = _predict(root, layout, run_dir, config, device, progress)
        finished(stage)

    overall = evaluation.report["overall"]
    ci = overall.get("ci") or {}
    files = {
        "report": root / "report.md",
        "montage": root / "montage.png",
        "data": layout.root,
        "cache": cache.path,
        "run": run_dir,
        "checkpoint": run_dir / "best.pt",
        "curves": run_dir / "curves.png",
        "evaluation": root / "evaluation",
        "metrics": evaluation.files.get("metrics", root / "evaluation" / "metrics.json"),
        "roc": evaluation.files.get("roc", root / "evaluation" / "roc.png"),
        "confusion": evaluation.files.get("confusion", root / "evaluation" / "confusion.png"),
        "cams": root / "cams",
    }
    result = DemoResult(
        config=config,
        dir=root,
        stages=stages,
        kappa=overall.get("kappa"),
        kappa_ci=ci.get("kappa"),
        auc=overall.get("auc"),
        auc_ci=ci.get("auc"),
        n_valid_studies=int(overall["n"]),
        predictions=predictions,
        files=files,
        device=str(device),
        threads=threads if device.type == "cpu" else 0,
        seconds=0.0,
        commands=reproduce_commands(config, predictions, device.type, threads),
    )
    result.seconds = time.monotonic() - started
    write_report(result, layout, evaluation, history)
    return result


# -- CPU threads ------------------------------------------------------------------


def choose_threads() -> int:
    """Torch threads for this machine now: every core, less those other programs keep busy.

    torch's CPU kernels split each operation over all cores and wait for the
    slowest; when other work already occupies the cores, that wait dominates
    (a loaded 2-core machine trains the cnn about four times faster on one
    thread than on two).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return cores
    return max(1, min(cores, int(cores - busy + 0.5)))


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: leave as is), then restore."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- stages -----------------------------------------------------------------------


def _prepare_dir(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} exists and is not a folder", "pass another --dir")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {root}: {exc.strerror or exc}", "pass a writable --dir") from exc


def _dataset_record(config: DemoConfig) -> dict[str, Any]:
    return {
        "studies": config.studies,
        "seed": config.seed,
        "difficulty": config.difficulty,
        "max_side": config.max_side,
    }


def _dataset(root: Path, config: DemoConfig, progress: ProgressFn) -> tuple["MuraLayout", StageResult]:
    from muracli.data.cache import CACHE_DIRNAME
    from muracli.data.layout import ROOT_NAME, read_layout
    from muracli.synthetic import generate_synthetic

    started = time.monotonic()
    data = root / "data"
    record_path = data / DATASET_RECORD
    wanted = _dataset_record(config)
    existing = data / ROOT_NAME
    recorded = _read_json(record_path)
    reused = False
    if existing.exists() and recorded is not None and {k: recorded.get(k) for k in wanted} == wanted:
        try:
            layout = read_layout(data)
            reused = not layout.errors
        except DataError:
            reused = False
    if not reused:
        if existing.exists() and recorded is None:
            # Not ours: never overwrite a dataset someone put there.
            raise DataError(
                f"{existing} exists but was not written by `mura demo`",
                "pass another --dir, or remove that folder",
            )
        record_path.unlink(missing_ok=True)  # stays absent until the new dataset is complete
        # Caches of the replaced dataset can never be used again (their fingerprint is gone).
        shutil.rmtree(data / CACHE_DIRNAME, ignore_errors=True)
        generate_synthetic(
            data, studies=config.studies, seed=config.seed, difficulty=config.difficulty,
            max_side=config.max_side, progress=progress, overwrite=True,
        )
        record_path.write_text(json.dumps({**wanted, "mura_version": __version__}, indent=2) + "\n")
        layout = read_layout(data)
    studies = layout.studies
    summary = (
        f"{len(studies)} studies ({int(studies['label'].sum())} abnormal), {len(layout.images)} images, "
        f"difficulty {config.difficulty}"
    )
    return layout, StageResult("dataset", summary, time.monotonic() - started, reused, {"root": str(layout.root)})


def _stats(root: Path, layout: "MuraLayout", *, regenerated: bool) -> StageResult:
    from muracli.data.layout import SPLITS
    from muracli.data.montage import draw_montage
    from muracli.data.stats import breakdown

    started = time.monotonic()
    montage = root / "montage.png"
    reused = montage.is_file() and not regenerated
    if not reused:
        draw_montage(layout, montage)
    table = breakdown(layout)
    totals = table[(table["body_part"] == "total") & table["split"].isin(SPLITS)]
    parts = [f"{row.split} {row.studies} studies ({row.abnormal} abnormal)" for row in totals.itertuples(index=False)]
    summary = ", ".join(parts) + f"; montage {montage}"
    details = {"breakdown": table.to_dict(orient="records"), "montage": str(montage)}
    return StageResult("stats", summary, time.monotonic() - started, reused, details)


def _preprocess(root: Path, layout: "MuraLayout", config: DemoConfig, progress: ProgressFn) -> tuple["Cache", StageResult]:
    from muracli.data.cache import default_cache_dir
    from muracli.data.cache_build import build_cache

    started = time.monotonic()
    out = default_cache_dir(layout, config.image_size, "pad")
    cache = build_cache(layout=layout, size=config.image_size, fit="pad", out=out, progress=progress)
    counts = cache.manifest.counts
    summary = f"{sum(counts.values())} images at {cache.size} px in {_below(root, cache.path)}"
    if cache.manifest.skipped:
        summary += f" ({len(cache.manifest.skipped)} skipped)"
    return cache, StageResult("preprocess", summary, time.monotonic() - started, bool(cache.reused),
                              {"cache": str(cache.path), "counts": counts})


def train_config(cache: "Cache", config: DemoConfig, run_dir: Path, device: str) -> "Any":
    """The ``TrainConfig`` of the demo's run."""
    from muracli.training.config import TrainConfig

    return TrainConfig(
        cache=str(cache.path.resolve()), image_size=cache.size, fit=cache.fit, model="cnn", epochs=config.epochs,
        batch_size=config.batch_size, lr=config.lr, schedule=config.schedule, dropout=config.dropout,
        augment=config.augment, class_weights=config.class_weights, seed=config.seed, device=device,
        out=str(run_dir),
    )


def _finished_run(run_dir: Path, wanted: dict[str, Any], fingerprint: str, epochs: int) -> tuple[bool, bool]:
    """(matches, finished) for an existing run directory."""
    from muracli.runtime.rundir import RunDir

    run = RunDir(run_dir)
    record = _read_json(run.config_path)
    if record is None:
        return False, False
    stored = record.get("config") or {}
    same = all(stored.get(k) == v for k, v in wanted.items() if k not in EXECUTION_FIELDS)
    same = same and (record.get("data") or {}).get("fingerprint") == fingerprint
    if not same:
        return False, False
    rows = run.read_metrics()
    done = run.best_path.is_file() and len(rows) >= epochs and rows[-1].get("epoch") == epochs
    return True, done


def _train(root: Path, cache: "Cache", config: DemoConfig, device: str, progress: ProgressFn):
    from muracli.runtime.rundir import RunDir
    from muracli.training.trainer import train

    started = time.monotonic()
    run_dir = root / "run"
    run = RunDir(run_dir)
    train_cfg = train_config(cache, config, run_dir, device)
    matches, done = _finished_run(run_dir, train_cfg.to_dict(), cache.fingerprint, config.epochs)
    resumed = False
    if not done:
        if matches and run.last_path.is_file():
            resumed = True  # the same run, interrupted: carry on from last.pt
        elif run_dir.exists():
            _remove_run(run_dir)
        result = train(train_cfg, resume=run_dir if resumed else None, progress=progress)
        history = result.history
    else:
        history = run.read_metrics()
    best = max(
        (r for r in history if r.get("valid_kappa") is not None), key=lambda r: r["valid_kappa"], default=None
    )
    summary = f"cnn, {config.epochs} epoch{'s' if config.epochs != 1 else ''} at {cache.size} px"
    if best is not None:
        summary += f", best valid kappa {best['valid_kappa']:.3f} at epoch {best['epoch']}"
    if resumed:
        summary += " (resumed)"
    details = {"run": str(run_dir), "best_epoch": best["epoch"] if best else None, "resumed": resumed}
    return run_dir, history, StageResult("train", summary, time.monotonic() - started, done, details)


def _remove_run(run_dir: Path) -> None:
    """Delete an outdated run of the demo, but never a folder that is not a run directory."""
    names = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    known = {"config.json", "metrics.csv", "best.pt", "last.pt", "log.txt", "curves.png"}
    if not run_dir.is_dir() or not names <= known | {n for n in names if n.startswith(".")}:
        raise DataError(f"{run_dir} holds files that are not from a training run", "pass another --dir, or remove it")
    shutil.rmtree(run_dir)


def _evaluate(root: Path, run_dir: Path, cache: "Cache", config: DemoConfig, device: str, progress: ProgressFn):
    from muracli.evaluation.evaluate import evaluate_run

    started = time.monotonic()
    evaluation = evaluate_run(
        run_dir, cache=cache.path, split="valid", bootstrap=config.bootstrap, seed=config.seed, device=device,
        out=root / "evaluation", progress=progress,
    )
    overall = evaluation.report["overall"]
    ci = (overall.get("ci") or {})
    summary = f"kappa {_number(overall.get('kappa'))}"
    if ci.get("kappa"):
        summary += f" (95% CI {ci['kappa'][0]:.2f} to {ci['kappa'][1]:.2f})"
    summary += f", AUC {_number(overall.get('auc'))} on {overall['n']} valid studies"
    return evaluation, StageResult("evaluate", summary, time.monotonic() - started, False,
                                   {"out": str(root / "evaluation")})


def pick_studies(layout: "MuraLayout", *, normal: int, abnormal: int, seed: int = 0) -> "Any":
    """Valid studies to predict on: ``normal`` + ``abnormal`` of them, from different body
    parts where possible; abnormal ones whose finding shows in at least one view (a CAM
    of an invisible finding teaches nothing). Deterministic for a seed."""
    import numpy as np
    import pandas as pd

    studies = layout.studies[layout.studies["split"] == "valid"].reset_index(drop=True)
    visible = _studies_with_visible_findings(layout)
    order = np.random.default_rng(seed).permutation(len(studies))
    studies = studies.iloc[order].reset_index(drop=True)
    chosen = []
    for label, count in ((0, normal), (1, abnormal)):
        pool = studies[studies["label"] == label]
        if label == 1 and visible:
            shown = pool[pool["study"].isin(visible)]
            pool = pd.concat([shown, pool[~pool["study"].isin(visible)]])
        seen_parts: set[str] = set()
        picked = []
        for row in pool.itertuples(index=False):  # one per body part first, then any
            if row.body_part not in seen_parts and len(picked) < count:
                picked.append(row)
                seen_parts.add(row.body_part)
        for row in pool.itertuples(index=False):
            if len(picked) >= count:
                break
            if row not in picked:
                picked.append(row)
        chosen.extend(picked)
    return pd.DataFrame(chosen, columns=studies.columns)


def _studies_with_visible_findings(layout: "MuraLayout") -> set[str]:
    import csv

    from muracli.synthetic import FINDINGS_CSV

    path = layout.root / FINDINGS_CSV
    if not path.is_file():
        return set()
    with path.open(newline="") as handle:
        return {row["image"].rsplit("/", 1)[0] + "/" for row in csv.DictReader(handle)}


def _predict(root: Path, layout: "MuraLayout", run_dir: Path, config: DemoConfig, device, progress: ProgressFn):
    from muracli.predict.cam import CamWriter
    from muracli.predict.discover import discover_studies
    from muracli.predict.infer import predict_studies
    from muracli.predict.output import study_record
    from muracli.runtime.checkpoint import load_model

    started = time.monotonic()
    chosen = pick_studies(layout, normal=config.predict_normal, abnormal=config.predict_abnormal, seed=config.seed)
    cams = root / "cams"
    if cams.is_dir():
        for old in cams.glob("*_cam.png"):  # overlays of an earlier run's studies
            old.unlink()
    writer = CamWriter(cams)
    loaded = load_model(run_dir / "best.pt", device)
    folders = [Path(p) for p in chosen["abs_path"]]
    studies = []
    for study, row in zip(discover_studies(folders), chosen.itertuples(index=False)):
        # XR_WRIST/patient11185/study1_positive: readable, unique overlay names
        studies.append(replace(study, key="/".join(row.study.rstrip("/").split("/")[2:])))
    records = []
    for result, row in zip(predict_studies(loaded, studies, cam=writer, progress=progress), chosen.itertuples(index=False)):
        record = study_record(result)
        record["study"] = row.study
        record["truth"] = "abnormal" if row.label == 1 else "normal"
        record["correct"] = None if record["prediction"] is None else bool(int(record["prediction"]) == int(row.label))
        records.append(record)
    right = sum(1 for r in records if r["correct"])
    summary = f"{len(records)} valid studies, {right} right; Grad-CAM overlays in {cams}"
    return records, StageResult("predict", summary, time.monotonic() - started, False, {"cams": str(cams)})


# -- the report -------------------------------------------------------------------


def reproduce_commands(config: DemoConfig, predictions: list[dict[str, Any]], device: str, threads: int) -> dict[str, str]:
    """The ``mura`` command line that redoes each stage by hand, by stage (paths as ``--dir`` was given)."""
    d = Path(config.dir)

    def q(path: Path) -> str:
        return shlex.quote(str(path))

    data, run = d / "data", d / "run"
    device_flag = "--gpu" if device == "cuda" else "--cpu"
    threads_env = f"OMP_NUM_THREADS={threads} " if device == "cpu" and threads < _cores() else ""
    download = (
        f"mura download --synthetic --studies {config.studies} --seed {config.seed} "
        f"--difficulty {config.difficulty} --max-side {config.max_side} --dest {q(data)}"
    )
    study_paths = " ".join(q(data / p["study"].rstrip("/")) for p in predictions)
    return {
        "dataset": download,
        "stats": f"mura stats --data {q(data)} --montage {q(d / 'montage.png')}",
        "preprocess": f"mura preprocess --data {q(data)} --size {config.image_size}",
        "train": (
            f"{threads_env}mura train --data {q(data)} --model cnn --image-size {config.image_size} "
            f"--epochs {config.epochs} --batch-size {config.batch_size} --lr {config.lr:g} "
            f"--schedule {config.schedule} --dropout {config.dropout:g} {'--augment' if config.augment else '--no-augment'} "
            f"{'--class-weights ' if config.class_weights else ''}--seed {config.seed} {device_flag} --out {q(run)}"
        ),
        "evaluate": (
            f"mura evaluate {q(run)} --data {q(data)} --bootstrap {config.bootstrap} --seed {config.seed} "
            f"{device_flag} --out {q(d / 'evaluation')}"
        ),
        "predict": f"mura predict {study_paths} --checkpoint {q(run)} {device_flag} --cam {q(d / 'cams')}",
    }


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def write_report(result: DemoResult, layout: "MuraLayout", evaluation: "Evaluation", history: list[dict]) -> Path:
    """``<dir>/report.md``: the numbers, the pictures (relative links) and the commands."""
    root = result.dir
    path = root / "report.md"
    text = report_markdown(result, layout, evaluation, history)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def report_markdown(result: DemoResult, layout: "MuraLayout", evaluation: "Evaluation", history: list[dict]) -> str:
    root = result.dir
    config = result.config
    report = evaluation.report
    overall = report["overall"]
    ci = overall.get("ci") or {}
    stage = {s.name: s for s in result.stages}
    reused = [s.name for s in result.stages if s.reused]

    def rel(path: Path | str) -> str:
        return Path(os.path.relpath(Path(path).resolve(), root.resolve())).as_posix()

    def with_ci(name: str) -> str:
        text = _number(overall.get(name))
        if ci.get(name):
            text += f" | {ci[name][0]:.3f} to {ci[name][1]:.3f}"
        else:
            text += " | n/a"
        return text

    def how(name: str) -> str:
        s = stage[name]
        return "reused" if s.reused else f"{s.seconds:.1f} s"

    commands = result.commands
    lines = [
        "# mura demo",
        "",
        f"The whole pipeline on a synthetic MURA, made by `mura demo` (mura {__version__}) on "
        f"{datetime.now().strftime('%Y-%m-%d %H:%M')} in {result.seconds:.0f} s on {result.device}"
        + (f" ({result.threads} CPU thread{'s' if result.threads != 1 else ''})" if result.threads else "")
        + (f", reusing the earlier {', '.join(reused)}" if reused else "")
        + ".",
        "The images are synthetic, not radiographs of people, and mura is research software, not a medical device.",
        "",
        "The `sh` blocks give the `mura` command that does each step by hand. They write to the same places as "
        "the demo: pass `--force` to `mura download`, and remove a step's output (e.g. the run folder) before "
        "redoing it, or point them at another folder.",
        "",
        "## Result",
        "",
        f"Study-level metrics of the `cnn` on the {overall['n']} valid studies "
        f"({report.get('n_images', '?')} images; {report['aggregate']} of the view probabilities, threshold "
        f"{report['threshold']:g}), with 95% bootstrap intervals over studies ({config.bootstrap} resamples):",
        "",
        "| metric | value | 95% CI |",
        "|---|---|---|",
        f"| Cohen's kappa | {with_ci('kappa')} |",
        f"| AUC | {with_ci('auc')} |",
        f"| accuracy | {with_ci('accuracy')} |",
        f"| sensitivity | {with_ci('sensitivity')} |",
        f"| specificity | {with_ci('specificity')} |",
        "",
        "| stage | time | |",
        "|---|---|---|",
    ]
    lines += [f"| {s.name} | {how(s.name)} | {_md(s.summary)} |" for s in result.stages]
    lines += [
        "",
        "## 1. Data",
        "",
        f"{len(layout.studies)} synthetic studies (seed {config.seed}, difficulty `{config.difficulty}`, "
        f"longest side {config.max_side} px) in `{rel(layout.root)}/`, in MURA v1.1's layout.",
        "",
        "| split | body part | normal | abnormal | images |",
        "|---|---|---|---|---|",
    ]
    for row in stage["stats"].details["breakdown"]:
        if row["split"] not in ("train", "valid") and row["body_part"] != "total":
            continue  # the per-part rows of both splits together repeat the two tables above
        part = f"**{row['body_part']}**" if row["body_part"] == "total" else row["body_part"]
        lines.append(f"| {row['split']} | {part} | {row['normal']} | {row['abnormal']} | {row['images']} |")
    lines += [
        "",
        "Normal and abnormal examples per body part (boxes: the synthetic ground-truth findings):",
        "",
        f"![montage]({rel(result.files['montage'])})",
        "",
        "```sh",
        commands["dataset"],
        commands["stats"],
        "```",
        "",
        "## 2. Preprocessing",
        "",
        f"Every image decoded once, padded to a square and resized to {config.image_size} px, in the cache "
        f"`{rel(result.files['cache'])}/`.",
        "",
        "```sh",
        commands["preprocess"],
        "```",
        "",
        "## 3. Training",
        "",
        f"The from-scratch `cnn`, {config.epochs} epochs, batch {config.batch_size}, Adam at lr {config.lr:g} with "
        f"{config.schedule} decay, dropout {config.dropout:g}, augmentation {'on' if config.augment else 'off'}"
        f"{', class weights as in the MURA paper' if config.class_weights else ''}; the checkpoint of the best "
        f"valid kappa is `{rel(result.files['checkpoint'])}`.",
        "",
        f"![training curves]({rel(result.files['curves'])})",
        "",
        "| epoch | train loss | valid loss | valid kappa | valid AUC | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in history:
        lines.append(
            f"| {row.get('epoch')} | {_number(row.get('train_loss'))} | {_number(row.get('valid_loss'))} | "
            f"{_number(row.get('valid_kappa'))} | {_number(row.get('valid_auc'))} | {_number(row.get('seconds'), 1)} |"
        )
    lines += [
        "",
        "```sh",
        commands["train"],
        "```",
        "",
        "## 4. Evaluation",
        "",
        f"![ROC curve]({rel(result.files['roc'])}) ![confusion matrix]({rel(result.files['confusion'])})",
        "",
        "| body part | studies | kappa | AUC |",
        "|---|---|---|---|",
    ]
    for part, block in report["by_body_part"].items():
        lines.append(f"| {part} | {block['n']} | {_number(block.get('kappa'))} | {_number(block.get('auc'))} |")
    lines += [
        "",
        f"All numbers: `{rel(result.files['metrics'])}`; per study: "
        f"`{rel(result.files['evaluation'] / 'predictions.csv')}`.",
        "",
        "```sh",
        commands["evaluate"],
        "```",
        "",
        "## 5. Prediction with Grad-CAM",
        "",
        "Valid studies the model saw only in validation; the overlays colour where the evidence for "
        "\"abnormal\" lies (red: strongest).",
        "",
        "| study | truth | p(abnormal) | prediction |",
        "|---|---|---|---|",
    ]
    for record in result.predictions:
        probability = "error" if record["probability"] is None else f"{record['probability']:.3f}"
        label = record["label"] or record["error"] or "?"
        mark = "" if record["correct"] is None else (" (right)" if record["correct"] else " (wrong)")
        lines.append(f"| `{record['study']}` | {record['truth']} | {probability} | {label}{mark} |")
    lines.append("")
    for record in result.predictions:
        images = [i for i in record["images"] if i.get("cam")]
        if not images:
            continue
        name = "/".join(record["study"].rstrip("/").split("/")[2:])
        lines.append(f"**{name}** ({record['truth']}, p = {record['probability']:.3f}):")
        lines.append("")
        lines.append(" ".join(f"![{Path(i['path']).name}]({rel(i['cam'])})" for i in images))
        lines.append("")
    lines += [
        "```sh",
        commands["predict"],
        "```",
        "",
        "## Files",
        "",
    ]
    for role in ("data", "cache", "montage", "run", "checkpoint", "curves", "evaluation", "cams"):
        lines.append(f"- {role}: `{rel(result.files[role])}`")
    lines += [
        "",
        f"Run `mura demo --dir {shlex.quote(str(config.dir))}` again to redo evaluation and prediction and reuse the rest.",
        "",
    ]
    return "\n".join(lines)


def _below(root: Path, path: Path) -> Path:
    """``path`` spelled from ``root`` as the user gave it (``mura-demo/data/...``), when it is inside."""
    try:
        return root / Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return Path(path)


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
