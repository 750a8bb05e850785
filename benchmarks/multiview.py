"""Study-level kappa and AUC: per-image model + aggregation vs the multi-view study model.

On synthetic MURA where an abnormal study's finding is visible in only some
of its views (``--visibility``: the chance that each view after the first
shows it; hardware and dislocations show on every film), compare at equal epochs and image size:

  (a) image model, study probability = mean of views (the MURA paper)
  (b) the same image model, max of views
  (c) study model (shared backbone, pooled view features): mean, max, attention

Prints a Markdown table on stderr and one JSON object on stdout (medians
over ``--seeds``), and writes the JSON to ``--out`` when given.

    python benchmarks/multiview.py                       # 600 easy studies, visibility 0.4, 64 px, 6 epochs, seed 0
    python benchmarks/multiview.py --seeds 0,1,2 --out benchmarks/results/multiview-<machine>-<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=600)
    parser.add_argument("--difficulty", default="easy")
    parser.add_argument("--visibility", type=float, default=0.4,
                        help="chance that each further view of an abnormal study shows its finding (the first always does)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam, cosine schedule, for every method")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step; study models get batch/3 studies (about as many images)")
    parser.add_argument("--max-views", type=int, default=4)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds; medians are reported")
    parser.add_argument("--data", type=Path, help="reuse this synthetic dataset (the folder holding MURA-v1.1/)")
    parser.add_argument("--work", type=Path, help="folder for caches and runs (default: a temporary folder)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--smoke", action="store_true", help="tiny and fast: 60 studies, 32 px, 1 epoch")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.studies, args.image_size, args.epochs = 60, 32, 1

    os.environ.setdefault("MURA_STATE_DIR", tempfile.mkdtemp(prefix="mura-bench-state-"))
    from muracli.data.cache_build import build_cache
    from muracli.evaluation.evaluate import evaluate_run
    from muracli.synthetic import generate_synthetic
    from muracli.training.config import TrainConfig
    from muracli.training.trainer import train

    work = args.work or Path(tempfile.mkdtemp(prefix="mura-multiview-"))
    data = args.data or work / f"synthetic-{args.studies}-{args.difficulty}-visibility{args.visibility:g}"
    if not (data / "MURA-v1.1").exists():
        log(f"generating {args.studies} synthetic studies into {data}")
        generate_synthetic(data, studies=args.studies, seed=0, difficulty=args.difficulty, max_side=256,
                           visibility=args.visibility)
    cache = build_cache(data, size=args.image_size, out=work / f"cache-{args.image_size}")

    def trained(name: str, seed: int, **options) -> Path:
        out = work / f"{name}-seed{seed}"
        config = TrainConfig(
            cache=str(cache.path), image_size=args.image_size, model=args.model, epochs=args.epochs,
            device=args.device, out=str(out), seed=seed, lr=args.lr, schedule="cosine", **options,
        )
        started = time.monotonic()
        result = train(config)
        log(f"  trained {name} (seed {seed}) in {time.monotonic() - started:.0f} s, best epoch {result.best_epoch}")
        return out

    def scores(run: Path, **options) -> dict[str, float | None]:
        report = evaluate_run(run, cache=cache.path, device=args.device, **options).report["overall"]
        return {"kappa": report["kappa"], "auc": report["auc"]}

    per_seed: dict[str, list[dict]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        log(f"seed {seed}")
        image_run = trained("image", seed, batch_size=args.batch_size)
        per_seed.setdefault("image model, mean of views", []).append(scores(image_run, aggregate="mean"))
        per_seed.setdefault("image model, max of views", []).append(scores(image_run, aggregate="max"))
        for pool in ("mean", "max", "attention"):
            run = trained(
                f"study-{pool}", seed, batch_size=max(1, args.batch_size // 3), study_model=True,
                view_pool=pool, max_views=args.max_views,
            )
            per_seed.setdefault(f"study model, {pool} pooling", []).append(scores(run))

    rows = [
        {
            "method": method,
            "kappa": median([r["kappa"] for r in results]),
            "auc": median([r["auc"] for r in results]),
            "runs": results,
        }
        for method, results in per_seed.items()
    ]
    result = {
        "benchmark": "multiview",
        "studies": args.studies,
        "difficulty": args.difficulty,
        "visibility": None if args.data else args.visibility,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "model": args.model,
        "seeds": args.seeds,
        "valid_studies": int(cache.manifest.study_counts.get("valid", 0)),
        "rows": rows,
        "load_average": os.getloadavg(),
    }
    log("")
    log("| method | study kappa | study AUC |")
    log("|---|---|---|")
    for row in rows:
        log(f"| {row['method']} | {fmt(row['kappa'])} | {fmt(row['auc'])} |")
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
