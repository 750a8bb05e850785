"""Training throughput on one GPU: AMP (bf16) + channels_last against fp32, with model FLOPs utilisation.

For each model (default cnn, vgg16, densenet169) at each size (default 224
and 320 px), mura's own training path runs in two modes: the trainer's
loader over a real cache (pinned memory, its loader threads), ``prepare_batch``
augmenting on the GPU, and the trainer's ``_train_one_epoch`` /
``train_step`` (``MuraLoop`` from ``benchmarks/train.py``):

- ``amp``: what ``mura train`` does on CUDA: bf16 autocast (fp16 with a
  GradScaler on cards without bf16), channels_last, TF32 allowed;
- ``fp32``: no autocast, contiguous tensors, and TF32 **off** for matmuls
  and cuDNN convolutions, so the fp32 figure is real fp32.

cuDNN autotuning is on (``cudnn.benchmark``, as in the trainer). The loader
drops the short last batch of an epoch, so every step has one shape and
autotuning happens once, during warm-up.

FLOPs per image are counted with ``torch.utils.flop_counter.FlopCounterMode``
over one forward pass at that size (multiply-adds count 2); a training step
costs about 3x the forward. MFU = images/s x 3 x forward FLOPs / the card's
peak dense bf16 FLOP/s from a small table (H100 SXM and H200: 989 TFLOP/s;
``--peak-tflops`` for a card not in it). fp32 rows also give it against the
card's peak fp32 (non-tensor-core) FLOP/s.

Runs within ``--budget-s`` (configurations that would start later are listed
as skipped) and rewrites ``--out`` after every configuration, so a cut-off
run still leaves its figures.

    python benchmarks/gpu.py --data /tmp/d --out gpu.json      # on the GPU machine (benchmarks/gpu.sh does this)
    python benchmarks/gpu.py --device cpu --smoke              # checks the script on a CPU
    python benchmarks/gpu.py --summary gpu.json                # the table again, from a saved result

Prints one JSON object on stdout; progress and the summary table go to stderr
(and the table to ``--out`` with a ``.txt`` suffix).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train as train_bench  # benchmarks/train.py: data helpers and MuraLoop

DEFAULTS = {"models": "cnn,vgg16,densenet169", "sizes": "224,320", "batch_size": 64, "warmup": 5, "steps": None,
            "repeat": 3, "studies": 400, "max_side": 512}
SMOKE = {"models": "cnn", "sizes": "32", "batch_size": 8, "warmup": 1, "steps": 2, "repeat": 1, "studies": 24,
         "max_side": 128}

# Peak dense (no sparsity) tensor-core bf16 and plain fp32 TFLOP/s from NVIDIA's data sheets,
# matched against torch.cuda.get_device_name in this order (first match wins).
PEAK_TFLOPS = [
    ("H200 NVL", 835.0, 60.0),
    ("H200", 989.0, 67.0),
    ("H100 NVL", 835.0, 60.0),
    ("H100 PCIe", 756.0, 51.0),
    ("H100", 989.0, 67.0),  # SXM / HBM3
    ("A100", 312.0, 19.5),
    ("L40S", 362.0, 91.6),
    ("L4", 121.0, 30.3),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_tflops(name: str) -> tuple[float | None, float | None]:
    for key, bf16, fp32 in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return bf16, fp32
    return None, None


def forward_flops(name: str, size: int) -> int:
    """FLOPs of one forward pass over one image (FlopCounterMode: a multiply-add is 2).

    Counted on the meta device: the count depends on shapes only, and nothing runs or autotunes.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from muracli.models import ModelSpec, build_model

    model = build_model(ModelSpec(name=name, in_channels=1, num_classes=2)).eval().to("meta")
    x = torch.zeros(1, 1, size, size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def run_mode(name: str, size: int, mode: str, data, args, device: torch.device, flops: int, peaks) -> dict:
    from muracli.runtime.devices import Precision, choose_precision
    from muracli.training.config import TrainConfig

    config = TrainConfig(cache=str(data.cache_path), image_size=size, model=name, batch_size=args.batch_size, seed=0)
    amp = mode == "amp"
    precision = choose_precision(device, True) if amp else Precision(None)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    loop = train_bench.MuraLoop(config, device, data=data, precision=precision, channels_last=amp, tf32=amp)
    train_bench.warm_up(loop, args.warmup)
    warmup_seconds = time.perf_counter() - started
    runs = [loop.run(args.steps, None if args.steps else args.run_seconds) for _ in range(args.repeat)]
    rates = [images / seconds for images, seconds, _ in runs]
    rate = statistics.median(rates)
    achieved = rate * 3 * flops / 1e12
    bf16_peak, fp32_peak = peaks
    row = {
        "model": name,
        "size": size,
        "mode": mode,
        "precision": loop.precision.name,
        "channels_last": loop.channels_last,
        "tf32": amp and device.type == "cuda",
        "batch_size": args.batch_size,
        "images_per_s": round(rate, 1),
        "ms_per_step": round(statistics.median(1000 * seconds / steps for _, seconds, steps in runs), 2),
        "runs_images_per_s": [round(r, 1) for r in rates],
        "runs_steps": [steps for _, _, steps in runs],
        "forward_gflops_per_image": round(flops / 1e9, 3),
        "train_tflops_per_s": round(achieved, 2),
        "mfu": round(achieved / bf16_peak, 4) if bf16_peak else None,
        "warmup_s": round(warmup_seconds, 1),
    }
    if not amp:
        row["mfu_vs_fp32_peak"] = round(achieved / fp32_peak, 4) if fp32_peak else None
    if device.type == "cuda":
        row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    del loop
    gc.collect()
    return row


def summary_table(result: dict) -> str:
    speedups = {(s["model"], s["size"]): s["amp_over_fp32"] for s in result.get("speedups", [])}
    lines = [
        (f"{result.get('device_name', '?')}: peak dense bf16 {result.get('peak_bf16_tflops')} TFLOP/s, "
         f"batch {result.get('batch_size')}, torch {result.get('torch', '?')}"),
        f"{'model':<12} {'size':>4} {'mode':<5} {'img/s':>9} {'ms/step':>8} {'TFLOP/s':>8} {'MFU':>7} {'mem GB':>7} {'amp/fp32':>8}",
    ]
    for row in result["configs"]:
        if "skipped" in row:
            lines.append(f"{row['model']:<12} {row['size']:>4} {row['mode']:<5} skipped: {row['skipped']}")
            continue
        mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") is not None else "-"
        memory = f"{row['peak_cuda_mb'] / 1024:.1f}" if "peak_cuda_mb" in row else "-"
        speedup = speedups.get((row["model"], row["size"])) if row["mode"] == "amp" else None
        lines.append(
            f"{row['model']:<12} {row['size']:>4} {row['mode']:<5} {row['images_per_s']:>9.1f} {row['ms_per_step']:>8.2f} "
            f"{row['train_tflops_per_s']:>8.2f} {mfu:>7} {memory:>7} {'' if speedup is None else f'{speedup:.2f}x':>8}"
        )
    return "\n".join(lines)


def add_speedups(result: dict) -> None:
    rows = {(r["model"], r["size"], r["mode"]): r for r in result["configs"] if "skipped" not in r}
    result["speedups"] = [
        {"model": m, "size": s, "amp_over_fp32": round(rows[(m, s, "amp")]["images_per_s"] / rows[(m, s, "fp32")]["images_per_s"], 2)}
        for (m, s, mode) in rows
        if mode == "amp" and (m, s, "fp32") in rows
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help=f"comma-separated (default {DEFAULTS['models']})")
    parser.add_argument("--sizes", default=None, help=f"comma-separated pixels (default {DEFAULTS['sizes']})")
    parser.add_argument("--modes", default="amp,fp32", help="amp and/or fp32 (default both)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per configuration (default 5)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed run (default: --run-seconds)")
    parser.add_argument("--run-seconds", type=float, default=1.5,
                        help="without --steps, a timed run stops after the first step that ends this late (default 1.5)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per configuration (default 3)")
    parser.add_argument("--data", type=Path, default=None, help="synthetic dataset folder (generated there if missing)")
    parser.add_argument("--studies", type=int, default=None, help="studies to generate (default 400)")
    parser.add_argument("--max-side", type=int, default=None, help="long side of generated images (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=200.0,
                        help="start no configuration after this many seconds from launch (default 200)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's peak dense bf16 TFLOP/s, if not in the table")
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the script: cnn at 32 px, 2 steps")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the JSON here (after every configuration), and the table next to it as .txt")
    parser.add_argument("--summary", type=Path, default=None, help="print the table of a saved result and exit")
    args = parser.parse_args(argv)
    launched = time.monotonic()
    if args.summary:
        print(summary_table(json.loads(args.summary.read_text())))
        return 0
    for key, value in (SMOKE if args.smoke else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"amp", "fp32"}:
        raise SystemExit("--modes: amp and/or fp32")

    from muracli.runtime.devices import select_device
    from muracli.training.config import TrainConfig

    device = select_device(args.device)
    name = train_bench.device_name(device)
    peaks = peak_tflops(name) if device.type == "cuda" else (None, None)
    if args.peak_tflops:
        peaks = (args.peak_tflops, peaks[1])
    log(f"torch {torch.__version__} (CUDA {torch.version.cuda}); device: {name}; "
        f"peak dense bf16 used for MFU: {peaks[0]} TFLOP/s (fp32: {peaks[1]})")
    data_dir = args.data or train_bench.default_data_dir(args.studies, args.seed, args.max_side)
    train_bench.ensure_data(data_dir, args.studies, args.seed, args.max_side)
    caches = train_bench.ensure_caches(data_dir, sizes)
    log(f"data ready after {time.monotonic() - launched:.0f} s")

    result: dict = {
        "benchmark": "gpu",
        "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": str(device),
        "device_name": name,
        "peak_bf16_tflops": peaks[0],
        "peak_fp32_tflops": peaks[1],
        "flops_note": "FlopCounterMode over one forward pass; training counted as 3x forward; MFU against peak dense bf16",
        "fp32_note": "fp32 rows: no autocast, contiguous, TF32 off (torch.backends.cuda.matmul / cudnn allow_tf32 = False)",
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup,
        "repeat": args.repeat,
        "data": str(data_dir),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "configs": [],
    }

    def save() -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    for size in sizes:
        base = TrainConfig(cache=str(caches[size]), image_size=size, batch_size=args.batch_size, seed=0)
        data = train_bench.load_data(base, device, drop_last=True)
        if data.steps_per_epoch < 1:
            raise SystemExit(f"the train split has fewer than {args.batch_size} images: generate more --studies")
        for model in models:
            flops = None
            for mode in modes:
                if time.monotonic() - launched > args.budget_s:
                    result["configs"].append({"model": model, "size": size, "mode": mode, "skipped": "time budget"})
                    log(f"{model}@{size} {mode}: skipped (over --budget-s {args.budget_s:.0f})")
                    continue
                if flops is None:
                    flops = forward_flops(model, size)
                try:
                    row = run_mode(model, size, mode, data, args, device, flops, peaks)
                except torch.cuda.OutOfMemoryError:
                    row = {"model": model, "size": size, "mode": mode, "skipped": f"out of memory at batch {args.batch_size}"}
                if "skipped" in row:
                    result["configs"].append(row)
                    log(f"{model}@{size} {mode}: {row['skipped']}")
                    gc.collect()
                    torch.cuda.empty_cache()
                    continue
                result["configs"].append(row)
                log(f"{model}@{size} {mode}: {row['images_per_s']} img/s, {row['train_tflops_per_s']} TFLOP/s, "
                    f"MFU {row['mfu']}, warm-up {row['warmup_s']} s ({time.monotonic() - launched:.0f} s so far)")
                add_speedups(result)
                save()
        del data
        gc.collect()

    add_speedups(result)
    result["seconds"] = round(time.monotonic() - launched, 1)
    result["load_average_at_end"] = list(os.getloadavg())
    save()
    table = summary_table(result)
    if args.out:
        args.out.with_suffix(".txt").write_text(table + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    log(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
