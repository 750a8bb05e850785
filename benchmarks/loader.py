"""Training-batch throughput: mura's cache path against the PIL-per-image pipeline.

The README promises that the training data path (cache + batched augmentation) must deliver
images at least 15x faster than the usual PIL-per-image pipeline with the
same DataLoader workers. Both sides deliver normalised, augmented float
batches of the same size, from the same synthetic dataset's train split:

(a) mura: the uint8 cache built by ``build_cache`` at that size, read by
    ``ImageDataset`` + ``EpochSampler`` through ``image_loader(threads=True)`` with
    ``LoaderPrepare``: each batch augmented with the default
    ``AugmentConfig`` (flip, rotation, zoom, shift, brightness, contrast: one
    bilinear affine warp per image) and normalised by one compiled pass per
    image straight from the memory map, on ``workers`` loader threads (in
    the consuming thread with 0). This is what ``mura train`` does on the
    CPU. Also timed: the same batches from a DataLoader with ``workers``
    worker processes (``image_loader``), and the uint8 batches that the CPU
    side of a GPU run delivers (the GPU augments them).
(b) baseline: as in the most-copied public MURA PyTorch code: a Dataset
    whose ``__getitem__`` opens the PNG with PIL (``.convert('RGB')``) and
    applies torchvision's Resize((S, S)), RandomHorizontalFlip(),
    RandomRotation(10), ToTensor(), Normalize(ImageNet mean, std), with
    the default collate.

Each configuration is warmed up, then a fixed number of batches is timed;
``--repeat`` runs are made (mura and baseline alternating, so background
load hits both alike) and medians reported. Also reported: the raw rate of
copying random batches out of the cache array (the ceiling for any loader)
and the time and peak memory of ``build_cache`` for the same data.

    python benchmarks/loader.py                      # ~300 synthetic studies, 224 and 320 px, 0 and 2 workers
    python benchmarks/loader.py --data /tmp/mura-bench/synthetic-300 --repeat 3 --out loader.json

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from muracli.batches.augment import AugmentConfig
from muracli.batches.datasets import LoaderPrepare, image_loader
from muracli.data.cache import open_cache
from muracli.data.layout import ROOT_NAME, read_layout

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# (b) the baseline ------------------------------------------------------------------------------


class PILImageDataset(Dataset):
    """One image per item, decoded and transformed per sample, as public MURA code does."""

    def __init__(self, paths: list[str], labels: list[int], transform) -> None:
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = Image.open(self.paths[i]).convert("RGB")
        return self.transform(image), self.labels[i]


def baseline_loader(paths: list[str], labels: list[int], size: int, batch_size: int, workers: int) -> DataLoader:
    transform = transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomRotation(10),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    # persistent_workers, as on mura's side, so neither pays for restarting
    # its workers at each epoch boundary.
    return DataLoader(
        PILImageDataset(paths, labels, transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


# timing ------------------------------------------------------------------------------------------


def endless(loader: DataLoader, sampler=None):
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def images_per_second(batches, consume, warmup: int, timed: int) -> float:
    for _ in range(warmup):
        consume(next(batches))
    images = 0
    start = time.perf_counter()
    for _ in range(timed):
        images += consume(next(batches))
    return images / (time.perf_counter() - start)


def run_mura(split, size: int, batch_size: int, workers: int, warmup: int, timed: int, mode: str) -> float:
    """mode "threads": ``image_loader(threads=True)`` + ``LoaderPrepare``, augmenting and
    normalising on ``workers`` threads (in this thread with 0), what ``mura
    train`` does on the CPU; "processes": the same batches from a DataLoader
    with ``workers`` worker processes (``image_loader``); "uint8": uint8
    batches from the threads, what the CPU side of a GPU run delivers
    (the GPU augments)."""
    prepare = LoaderPrepare(augment=AugmentConfig(), seed=0) if mode != "uint8" else None
    loader, sampler = image_loader(
        split, batch_size=batch_size, shuffle=True, seed=0, workers=workers, threads=mode != "processes", prepare=prepare
    )
    dtype = torch.uint8 if mode == "uint8" else torch.float32

    def consume(batch) -> int:
        x, y = batch
        assert x.dtype == dtype and x.shape[-1] == size
        return x.shape[0]

    batches = endless(loader, sampler)
    try:
        return images_per_second(batches, consume, warmup, timed)
    finally:
        batches.close()
        del loader
        gc.collect()


def run_baseline(paths, labels, size: int, batch_size: int, workers: int, warmup: int, timed: int) -> float:
    loader = baseline_loader(paths, labels, size, batch_size, workers)

    def consume(batch) -> int:
        x, y = batch
        assert x.dtype == torch.float32 and x.shape[-1] == size
        return x.shape[0]

    batches = endless(loader)
    try:
        return images_per_second(batches, consume, warmup, timed)
    finally:
        batches.close()
        del loader
        gc.collect()


def cache_read_rate(pixels: np.ndarray, batch_size: int, batches: int = 300, seed: int = 0) -> dict:
    """Copy random batches out of the memory-mapped array (page cache warm)."""
    rng = np.random.default_rng(seed)
    n = len(pixels)
    np.ascontiguousarray(pixels)  # warm the page cache
    rates = []
    for _ in range(3):
        picks = [np.sort(rng.choice(n, size=min(batch_size, n), replace=False)) for _ in range(batches)]
        start = time.perf_counter()
        for rows in picks:
            np.ascontiguousarray(pixels[rows])
        rates.append(batches * len(picks[0]) / (time.perf_counter() - start))
    rate = statistics.median(rates)
    return {"images_per_s": round(rate, 1), "mb_per_s": round(rate * pixels[0].nbytes / 1e6, 1)}


BUILD = """
import json, sys, time
from muracli.data.cache_build import build_cache
if __name__ == "__main__":
    start = time.perf_counter()
    cache = build_cache(sys.argv[1], size=int(sys.argv[2]), out=sys.argv[3])
    seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak over exec into ru_maxrss.
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    peak_kb = int(status["VmHWM"].split()[0])
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_kb / 1024, "images": sum(cache.manifest.counts.values())}))
"""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):  # children hang off the thread that made them
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return found


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_rss(pid: int) -> int:
    """RSS of a process and all its descendants (build_cache's workers run
    under a forkserver, out of reach of RUSAGE_CHILDREN)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += _rss_bytes(p)
        stack.extend(_children(p))
    return total


def build_timed(data: Path, size: int, out: Path) -> dict:
    """Build a fresh cache in a subprocess: wall time, peak RSS of the building
    process, and the peak of its whole process tree (sampled every 50 ms)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD, str(data), str(size), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    peak_tree = 0
    while proc.poll() is None:
        peak_tree = max(peak_tree, _tree_rss(proc.pid))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"build_cache failed:\n{stderr}")
    stats = json.loads(stdout.strip().splitlines()[-1])
    stats["peak_rss_tree_mb"] = peak_tree / 2**20
    stats["workers"] = len(os.sched_getaffinity(0))
    stats["images_per_s"] = stats["images"] / stats["seconds"]
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()}


# main --------------------------------------------------------------------------------------------


def ensure_data(data: Path, studies: int, seed: int) -> Path:
    if (data / ROOT_NAME).is_dir():
        log(f"reusing the dataset in {data}")
        return data
    from muracli.synthetic import generate_synthetic

    log(f"generating {studies} synthetic studies into {data} (once; pass --data {data} to reuse)")
    generate_synthetic(data, studies=studies, seed=seed)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="synthetic dataset folder (generated there if missing)")
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5, help="batches before timing starts")
    parser.add_argument("--batches", type=int, default=30, help="batches timed per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads of this process, for both pipelines (default: torch's choice; "
                        "on a busy machine 1 avoids threads waiting on each other; workers always use 1)")
    parser.add_argument("--no-build-timing", action="store_true", help="reuse caches in --cache-dir instead of timing fresh builds")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where caches go (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data or Path(tempfile.gettempdir()) / "mura-bench" / f"synthetic-{args.studies}-seed{args.seed}"
    ensure_data(data, args.studies, args.seed)
    layout = read_layout(data)
    train = layout.images[layout.images["split"] == "train"]
    paths, labels = train["abs_path"].astype(str).tolist(), train["label"].astype(int).tolist()

    result: dict = {
        "benchmark": "loader",
        "command": "python benchmarks/loader.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": str(data),
        "train_images": len(paths),
        "batch_size": args.batch_size,
        "warmup_batches": args.warmup,
        "timed_batches": args.batches,
        "repeat": args.repeat,
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_at_start": list(os.getloadavg()),
        },
        "build_cache": {},
        "cache_read": {},
        "configs": [],
    }

    with tempfile.TemporaryDirectory(prefix="mura-bench-cache-") as tmp:
        cache_root = args.cache_dir or Path(tmp)
        for size in args.sizes:
            out = cache_root / f"cache-{size}"
            if args.no_build_timing and (out / "manifest.json").exists():
                log(f"reusing the {size} px cache in {out}")
            else:
                if out.exists() and args.cache_dir is not None:
                    raise SystemExit(f"{out} exists: remove it, or pass --no-build-timing to reuse it")
                log(f"building the {size} px cache (timed, in a subprocess)")
                result["build_cache"][str(size)] = build_timed(data, size, out)
            split = open_cache(out).split("train")
            result["cache_read"][str(size)] = cache_read_rate(split.pixels, args.batch_size)

            for workers in args.workers:
                runs: dict[str, list[float]] = {"mura": [], "baseline": [], "mura_processes": [], "mura_uint8": []}
                for r in range(args.repeat):
                    log(f"{size} px, {workers} workers, run {r + 1}/{args.repeat}")
                    common = (args.batch_size, workers, args.warmup, args.batches)
                    runs["mura"].append(run_mura(split, size, *common, mode="threads"))
                    runs["baseline"].append(run_baseline(paths, labels, size, *common))
                    runs["mura_processes"].append(run_mura(split, size, *common, mode="processes"))
                    runs["mura_uint8"].append(run_mura(split, size, *common, mode="uint8"))
                medians = {k: statistics.median(v) for k, v in runs.items()}
                result["configs"].append(
                    {
                        "size": size,
                        "workers": workers,
                        "mura_images_per_s": round(medians["mura"], 1),
                        "baseline_images_per_s": round(medians["baseline"], 1),
                        "ratio": round(medians["mura"] / medians["baseline"], 2),
                        "mura_processes_images_per_s": round(medians["mura_processes"], 1),
                        "ratio_processes": round(medians["mura_processes"] / medians["baseline"], 2),
                        "mura_uint8_images_per_s": round(medians["mura_uint8"], 1),
                        "of_cache_read": round(medians["mura"] / result["cache_read"][str(size)]["images_per_s"], 4),
                        "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
                    }
                )
                log(json.dumps(result["configs"][-1]))
            del split
            gc.collect()

    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
