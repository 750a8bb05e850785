"""``run_demo``: the six stages in order, with the torch threads chosen, then the result and the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from muracli.demo.commands import reproduce_commands
from muracli.demo.config import DemoConfig
from muracli.demo.report import write_report
from muracli.demo.result import DemoResult, StageResult
from muracli.demo.stages import (
    dataset_stage,
    evaluate_stage,
    predict_stage,
    preprocess_stage,
    stats_stage,
    train_stage,
)
from muracli.demo.threads import choose_threads, torch_threads
from muracli.errors import DataError
from muracli.progress import ProgressFn, silent
from muracli.runtime.devices import select_device

if TYPE_CHECKING:
    from muracli.data.cache import Cache
    from muracli.data.layout import MuraLayout
    from muracli.evaluation.evaluate import Evaluation

StageCallback = Callable[[StageResult], None]


def run_demo(
    config: DemoConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    on_stage: StageCallback | None = None,
) -> DemoResult:
    """Run every stage (reusing what is valid) and write ``report.md``; see ``muracli.demo``."""
    config = (config or DemoConfig()).validate()
    progress = progress or silent
    started = time.monotonic()
    root = Path(config.dir)
    device = select_device(config.device)  # --gpu without CUDA fails before anything is written
    _prepare_dir(root)
    stages: list[StageResult] = []

    def finished(stage: StageResult) -> None:
        stages.append(stage)
        if on_stage is not None:
            on_stage(stage)

    threads = config.threads or choose_threads()
    with torch_threads(threads if device.type == "cpu" else None):
        layout, stage = dataset_stage(root, config, progress)
        finished(stage)
        finished(stats_stage(root, layout, regenerated=not stage.reused))
        cache, stage = preprocess_stage(root, layout, config, progress)
        finished(stage)
        run_dir, history, stage = train_stage(root, cache, config, device.type, progress)
        finished(stage)
        evaluation, stage = evaluate_stage(root, run_dir, cache, config, device.type, progress)
        finished(stage)
        predictions, stage = predict_stage(root, layout, run_dir, config, device, progress)
        finished(stage)

    overall = evaluation.report["overall"]
    ci = overall.get("ci") or {}
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
        files=_files(root, layout, cache, run_dir, evaluation),
        device=str(device),
        threads=threads if device.type == "cpu" else 0,
        seconds=0.0,
        commands=reproduce_commands(config, predictions, device.type, threads),
    )
    result.seconds = time.monotonic() - started
    write_report(result, layout, evaluation, history)
    return result


def _prepare_dir(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} exists and is not a folder", "pass another --dir")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {root}: {exc.strerror or exc}", "pass a writable --dir") from exc


def _files(root: Path, layout: "MuraLayout", cache: "Cache", run_dir: Path, evaluation: "Evaluation") -> dict[str, Path]:
    """What the demo made, by role (``DemoResult.files``)."""
    return {
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
