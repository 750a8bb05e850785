"""Does Grad-CAM point at the finding? The pointing game on synthetic MURA.

Synthetic MURA records a ground-truth box for every finding it draws
(``MURA-v1.1/synthetic_findings.csv``). For each abnormal valid image that
shows a finding, the Grad-CAM map of a trained model (target: abnormal) is
mapped back onto the original image exactly as ``mura predict --cam`` does,
and its maximum is a *hit* when it falls inside one of the image's boxes
(optionally grown by ``--tolerance`` pixels). Abnormal images whose finding
is not visible in that view have no box and are left out (and counted).

Two baselines on the same images:

* ``random``: a point drawn uniformly over the image; its hit rate is the
  exact expectation, the area of the (grown) boxes over the image area;
* ``centre``: the centre of the image (findings cluster on the bones).

Train a model here (default: cnn, 128 px, easy findings) or score an existing
run on the synthetic dataset it was trained on:

    python benchmarks/cam.py                                   # ~3 min on 2 CPU cores
    python benchmarks/cam.py --run runs/cnn-... --data data    # an existing run
    python benchmarks/cam.py --smoke                           # seconds: checks the script

Prints a Markdown table on stderr and one JSON object on stdout; ``--out``
writes the JSON too.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="score this run (its best.pt) instead of training one")
    parser.add_argument("--data", type=Path, help="the synthetic dataset (folder holding MURA-v1.1/); generated when missing")
    parser.add_argument("--studies", type=int, default=600)
    parser.add_argument("--difficulty", default="easy")
    parser.add_argument("--max-side", type=int, default=256, help="longest side of generated images")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=int, default=0, help="grow each box by this many original pixels")
    parser.add_argument("--work", type=Path, help="folder for the cache and the run (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="tiny and fast: 60 studies, 32 px, 1 epoch")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.studies, args.max_side, args.image_size, args.epochs = 60, 96, 32, 1

    os.environ.setdefault("MURA_STATE_DIR", tempfile.mkdtemp(prefix="mura-bench-state-"))
    import torch

    from muracli.batches.augment import prepare_batch
    from muracli.data.cache_build import build_cache
    from muracli.models.gradcam import grad_cam
    from muracli.predict.cam import heatmap_to_original
    from muracli.runtime.checkpoint import load_model
    from muracli.synthetic import generate_synthetic

    work = args.work or Path(tempfile.mkdtemp(prefix="mura-cam-"))
    data = args.data or work / f"synthetic-{args.studies}-{args.difficulty}"
    if not (data / "MURA-v1.1").exists():
        log(f"generating {args.studies} synthetic studies ({args.difficulty}) into {data}")
        generate_synthetic(data, studies=args.studies, seed=args.seed, difficulty=args.difficulty, max_side=args.max_side)
    boxes = read_boxes(data / "MURA-v1.1" / "synthetic_findings.csv")
    if not boxes:
        sys.exit(f"Error: {data}/MURA-v1.1/synthetic_findings.csv holds no boxes; pass a synthetic dataset")

    trained_seconds, cache = None, None
    if args.run is None:
        from muracli.training.config import TrainConfig
        from muracli.training.trainer import train

        cache = build_cache(data, size=args.image_size, out=work / f"cache-{args.image_size}")
        config = TrainConfig(
            cache=str(cache.path), image_size=args.image_size, model=args.model, epochs=args.epochs,
            lr=2e-3, schedule="cosine", dropout=0.0, augment=False, device="cpu", seed=args.seed,
            out=str(work / f"run-{args.model}-{args.image_size}"),
        )
        log(f"training {args.model} at {args.image_size} px for {args.epochs} epochs")
        started = time.perf_counter()
        run_dir = train(config).run_dir
        trained_seconds = time.perf_counter() - started
    else:
        run_dir = args.run

    loaded = load_model(run_dir)
    model = loaded.model.as_image_model() if loaded.study_model else loaded.model
    if cache is None:  # an existing run: the cache of its own image size and fit
        cache = build_cache(data, size=loaded.image_size, fit=loaded.fit, out=work / f"cache-{loaded.image_size}-{loaded.fit}")
    split = cache.split("valid")
    index = split.index.reset_index(drop=True)

    rows = []
    skipped_without_box = 0
    for position, row in index.iterrows():
        if int(row["label"]) != 1:
            continue
        image_boxes = boxes.get(relative_path(row["path"]))
        if not image_boxes:
            skipped_without_box += 1
            continue
        rows.append((position, row, image_boxes))
    if not rows:
        sys.exit("Error: no abnormal valid image with a finding box; generate more studies")

    hits, random_rates, centre_hits = [], [], []
    empty_maps = 0  # no positive evidence anywhere: the maximum is arbitrary, scored as it falls
    by_kind: dict[str, list[int]] = defaultdict(list)
    started = time.perf_counter()
    for chunk_start in range(0, len(rows), 32):
        chunk = rows[chunk_start:chunk_start + 32]
        pixels = torch.from_numpy(np.stack([np.asarray(split.pixels[p]) for p, _, _ in chunk]))[:, None]
        batch = prepare_batch(pixels, device="cpu", mean=loaded.mean, std=loaded.std)
        heat = grad_cam(model, batch, target_class=1).numpy()
        for (_, row, image_boxes), h in zip(chunk, heat):
            width, height = int(row["width"]), int(row["height"])
            full = heatmap_to_original(h, height, width, loaded.fit)
            empty_maps += int(not full.any())
            y, x = np.unravel_index(int(np.argmax(full)), full.shape)
            grown = [grow(box, args.tolerance, width, height) for _, box in image_boxes]
            hit = any(inside(x, y, box) for box in grown)
            hits.append(hit)
            random_rates.append(covered_fraction(grown, width, height))
            centre_hits.append(any(inside(width // 2, height // 2, box) for box in grown))
            for kind in {kind for kind, _ in image_boxes}:
                by_kind[kind].append(hit)
    cam_seconds = time.perf_counter() - started

    result = {
        "benchmark": "cam-pointing-game",
        "run": str(run_dir),
        "model": loaded.model_name,
        "image_size": loaded.image_size,
        "fit": loaded.fit,
        "data": str(data),
        "tolerance_px": args.tolerance,
        "images": len(hits),
        "abnormal_images_without_box": skipped_without_box,
        "empty_maps": empty_maps,
        "hit_rate": round(float(np.mean(hits)), 4),
        "random_point_hit_rate": round(float(np.mean(random_rates)), 4),
        "centre_point_hit_rate": round(float(np.mean(centre_hits)), 4),
        "ratio_vs_random": round(float(np.mean(hits)) / max(float(np.mean(random_rates)), 1e-12), 2),
        "by_kind": {kind: {"images": len(v), "hit_rate": round(float(np.mean(v)), 4)} for kind, v in sorted(by_kind.items())},
        "valid_metrics": best_epoch_metrics(run_dir),
        "train_seconds": None if trained_seconds is None else round(trained_seconds, 1),
        "cam_seconds": round(cam_seconds, 2),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }
    log(table(result))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


def read_boxes(path: Path) -> dict[str, list[tuple[str, tuple[int, int, int, int]]]]:
    """``{"MURA-v1.1/...png": [(kind, (x0, y0, x1, y1)), ...]}``; x1/y1 exclusive."""
    boxes: dict[str, list] = defaultdict(list)
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            box = tuple(int(float(row[k])) for k in ("x0", "y0", "x1", "y1"))
            boxes[relative_path(row["image"])].append((row["kind"], box))
    return dict(boxes)


def relative_path(path: str) -> str:
    """The part of a path from ``MURA-v1.1/`` on, the key both tables share."""
    text = str(path).replace("\\", "/")
    at = text.rfind("MURA-v1.1/")
    return text[at:] if at >= 0 else text


def grow(box, by: int, width: int, height: int):
    x0, y0, x1, y1 = box
    return max(0, x0 - by), max(0, y0 - by), min(width, x1 + by), min(height, y1 + by)


def inside(x: int, y: int, box) -> bool:
    x0, y0, x1, y1 = box
    return x0 <= x < x1 and y0 <= y < y1


def covered_fraction(boxes, width: int, height: int) -> float:
    """Fraction of the image inside any box: a uniform random point's hit probability."""
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return float(mask.mean())


def best_epoch_metrics(run_dir: Path) -> dict | None:
    """Valid kappa and AUC of the epoch best.pt holds, from the run's metrics.csv."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        epochs = list(csv.DictReader(fh))
    if not epochs:
        return None

    def kappa(row):
        try:
            return float(row["valid_kappa"])
        except (TypeError, ValueError):
            return float("-inf")

    best = max(epochs, key=kappa)
    return {"epoch": int(best["epoch"]), "valid_kappa": best.get("valid_kappa"), "valid_auc": best.get("valid_auc")}


def table(result: dict) -> str:
    lines = [
        f"Pointing game, {result['model']} at {result['image_size']} px, {result['images']} abnormal valid images with a finding box",
        "",
        "| point | hit rate |",
        "|---|---:|",
        f"| Grad-CAM maximum | {result['hit_rate']:.3f} |",
        f"| random point (expected) | {result['random_point_hit_rate']:.3f} |",
        f"| image centre | {result['centre_point_hit_rate']:.3f} |",
        "",
        "| finding | images | Grad-CAM hit rate |",
        "|---|---:|---:|",
    ]
    lines += [f"| {kind} | {v['images']} | {v['hit_rate']:.3f} |" for kind, v in result["by_kind"].items()]
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
