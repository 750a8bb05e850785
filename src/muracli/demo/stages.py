"""The six stages of ``mura demo``, each a function that does one command's work and returns its ``StageResult``.

Each stage decides for itself whether what an earlier run left is still valid
(see ``muracli.demo``); ``run_demo`` calls them in the order of ``STAGES``.

The muracli modules that pull in torch (the trainer, inference, checkpoint
loading) and pandas are imported inside the functions that use them: importing
this module (for ``STAGES`` or ``pick_studies``) loads neither.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from muracli import __version__
from muracli.data.cache import CACHE_DIRNAME, Cache, default_cache_dir
from muracli.data.cache_build import build_cache
from muracli.data.layout import ROOT_NAME, SPLITS, MuraLayout, read_layout
from muracli.data.montage import draw_montage
from muracli.data.stats import breakdown
from muracli.demo.config import DemoConfig, train_config
from muracli.demo.result import StageResult, number
from muracli.errors import DataError
from muracli.evaluation.evaluate import Evaluation, evaluate_run
from muracli.predict.cam import CamWriter
from muracli.predict.discover import discover_studies
from muracli.predict.output import study_record
from muracli.progress import ProgressFn
from muracli.runtime.rundir import RunDir
from muracli.synthetic import FINDINGS_CSV, generate_synthetic
from muracli.training.config import EXECUTION_FIELDS, TrainConfig

if TYPE_CHECKING:
    import pandas as pd
    import torch

DATASET_RECORD = "demo-dataset.json"
STAGES = ("dataset", "stats", "preprocess", "train", "evaluate", "predict")


# -- dataset ----------------------------------------------------------------------


def _dataset_record(config: DemoConfig) -> dict[str, Any]:
    return {
        "studies": config.studies,
        "seed": config.seed,
        "difficulty": config.difficulty,
        "max_side": config.max_side,
    }


def dataset_stage(root: Path, config: DemoConfig, progress: ProgressFn) -> tuple[MuraLayout, StageResult]:
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


# -- stats ------------------------------------------------------------------------


def stats_stage(root: Path, layout: MuraLayout, *, regenerated: bool) -> StageResult:
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


# -- preprocess -------------------------------------------------------------------


def preprocess_stage(root: Path, layout: MuraLayout, config: DemoConfig, progress: ProgressFn) -> tuple[Cache, StageResult]:
    started = time.monotonic()
    out = default_cache_dir(layout, config.image_size, "pad")
    cache = build_cache(layout=layout, size=config.image_size, fit="pad", out=out, progress=progress)
    counts = cache.manifest.counts
    summary = f"{sum(counts.values())} images at {cache.size} px in {_below(root, cache.path)}"
    if cache.manifest.skipped:
        summary += f" ({len(cache.manifest.skipped)} skipped)"
    return cache, StageResult("preprocess", summary, time.monotonic() - started, bool(cache.reused),
                              {"cache": str(cache.path), "counts": counts})


# -- train ------------------------------------------------------------------------


def _finished_run(run_dir: Path, wanted: dict[str, Any], fingerprint: str, epochs: int) -> tuple[bool, bool]:
    """(matches, finished) for an existing run directory."""
    run = RunDir(run_dir)
    record = _read_json(run.config_path)
    if record is None:
        return False, False
    # a field the run's mura did not have yet (e.g. amp_dtype) counts as its default, as --resume reads it
    stored = {**TrainConfig().to_dict(), **(record.get("config") or {})}
    same = all(stored.get(k) == v for k, v in wanted.items() if k not in EXECUTION_FIELDS)
    same = same and (record.get("data") or {}).get("fingerprint") == fingerprint
    if not same:
        return False, False
    rows = run.read_metrics()
    done = run.best_path.is_file() and len(rows) >= epochs and rows[-1].get("epoch") == epochs
    return True, done


def train_stage(
    root: Path, cache: Cache, config: DemoConfig, device: str, progress: ProgressFn
) -> tuple[Path, list[dict], StageResult]:
    from muracli.training.trainer import train  # torch

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
    summary = f"{train_cfg.model}, {config.epochs} epoch{'s' if config.epochs != 1 else ''} at {cache.size} px"
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


# -- evaluate ---------------------------------------------------------------------


def evaluate_stage(
    root: Path, run_dir: Path, cache: Cache, config: DemoConfig, device: str, progress: ProgressFn
) -> tuple[Evaluation, StageResult]:
    started = time.monotonic()
    evaluation = evaluate_run(
        run_dir, cache=cache.path, split="valid", bootstrap=config.bootstrap, seed=config.seed, device=device,
        out=root / "evaluation", progress=progress,
    )
    overall = evaluation.report["overall"]
    ci = (overall.get("ci") or {})
    summary = f"kappa {number(overall.get('kappa'))}"
    if ci.get("kappa"):
        summary += f" (95% CI {ci['kappa'][0]:.2f} to {ci['kappa'][1]:.2f})"
    summary += f", AUC {number(overall.get('auc'))} on {overall['n']} valid studies"
    return evaluation, StageResult("evaluate", summary, time.monotonic() - started, False,
                                   {"out": str(root / "evaluation")})


# -- predict ----------------------------------------------------------------------


def pick_studies(layout: MuraLayout, *, normal: int, abnormal: int, seed: int = 0) -> "pd.DataFrame":
    """Valid studies to predict on: ``normal`` + ``abnormal`` of them, from different body
    parts where possible; abnormal ones whose finding shows in at least one view (a CAM
    of an invisible finding teaches nothing). Deterministic for a seed."""
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


def _studies_with_visible_findings(layout: MuraLayout) -> set[str]:
    path = layout.root / FINDINGS_CSV
    if not path.is_file():
        return set()
    with path.open(newline="") as handle:
        return {row["image"].rsplit("/", 1)[0] + "/" for row in csv.DictReader(handle)}


def predict_stage(
    root: Path, layout: MuraLayout, run_dir: Path, config: DemoConfig, device: "torch.device", progress: ProgressFn
) -> tuple[list[dict[str, Any]], StageResult]:
    from muracli.predict.infer import predict_studies  # torch
    from muracli.runtime.checkpoint import load_model  # torch

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


# -- helpers ----------------------------------------------------------------------


def _below(root: Path, path: Path) -> Path:
    """``path`` spelled from ``root`` as the user gave it (``mura-demo/data/...``), when it is inside."""
    try:
        return root / Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return Path(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
