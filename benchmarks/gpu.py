"""Training throughput on one GPU: mura's training loop against the plain loop people write, in the same run.

Every row trains one model at one image size, batch size, precision and
compile setting twice, alternating timed runs (medians of ``--repeat``):

- ``mura``: mura's own training path (``MuraLoop`` from ``benchmarks/train.py``):
  the trainer's loader over a real cache (pinned memory, loader threads),
  ``prepare_batch`` augmenting on the GPU, ``StepWindow`` and the trainer's
  ``_train_one_epoch`` (the loss summed on the device, read back at ticks);
- ``peer``: the torchvision-reference loop over random batches already on the
  device: same architecture, autocast to the same dtype, channels_last with
  AMP, a GradScaler with fp16, the same compile setting, Adam, and
  ``loss.item()`` every step as the reference's metric logger does.

``ratio`` = mura / peer images/s: below 1 is what mura's data path, augmentation
and bookkeeping cost; near 1 says mura trains as fast as a hand-written loop.
fp32 rows have TF32 off (an honest fp32 figure); AMP rows allow TF32.

Sections, in order of importance, each skipped with a note when what is left of
``--budget-s`` is below its estimate (``--sections`` picks and orders them):

``core``     densenet169@320 then vgg16@224, bf16, the default CUDA batch (``training.sizing``);
``profile``  the top 25 kernels by CUDA time of densenet169@320 bf16 (``$OUT/profile-densenet169-320.txt``);
``eval``     mura's evaluation path (``runtime.inference.image_probabilities``), images/s at batch 256 and 512;
``e2e``      ``mura train`` for 2 epochs on the benchmark's synthetic data (about 3,000 images), epoch 2's
             images/s in metrics.csv against the core row of the same model and size;
``compile``  torch.compile modes default and reduce-overhead for densenet169@320 and vgg16@224;
``matrix``   every model and size at batch 64/128/256 x bf16/fp16, plus fp32 at the default batch.

MFU: FLOPs per image from ``torch.utils.flop_counter.FlopCounterMode`` over one
forward (a multiply-add is 2), a training step about 3x the forward, against the
card's peak dense bf16 FLOP/s from a small table (``--peak-tflops`` otherwise);
fp32 rows also against peak fp32. ``epoch_projection``: seconds per full-MURA
epoch (36,808 training images) at the core rows' mura rate, per model.

The JSON (``--out``) and its table (``.txt`` beside it) are rewritten after every
configuration, so a cut-off run keeps what it measured.

    python benchmarks/gpu.py --data /tmp/d --out gpu.json      # on the GPU machine (benchmarks/gpu.sh does this)
    python benchmarks/gpu.py --device cpu --smoke              # checks the script on a CPU
    python benchmarks/gpu.py --summary gpu.json                # the table again, from a saved result
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train as train_bench  # benchmarks/train.py: data helpers and MuraLoop

MURA_TRAIN_IMAGES = 36808  # MURA v1.1's training split
SECTIONS = ("core", "profile", "eval", "e2e", "compile", "matrix")
DEFAULTS = {"models": "cnn,vgg16,densenet169", "sizes": "224,320", "batches": "64,128,256", "warmup": 5,
            "steps": None, "repeat": 3, "run_seconds": 1.0, "studies": 1100, "max_side": 384, "eval_batches": "256,512",
            "compile_modes": "default,reduce-overhead", "profile_steps": 10}
SMOKE = {"models": "cnn", "sizes": "32", "batches": "8", "warmup": 1, "steps": 2, "repeat": 1, "run_seconds": 1.0,
         "studies": 24, "max_side": 128, "eval_batches": "16", "compile_modes": "default", "profile_steps": 2}
#: Seconds a section's configuration is expected to take on an H100 (compiles dominate); a
#: configuration starts only when at least this much of --budget-s is left.
ESTIMATE_S = {"eager": 15, "eager_densenet169": 25, "profile": 20, "eval": 15, "e2e": 75,
              "compile": 60, "compile_densenet169": 150}
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}

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


def default_batch(device: torch.device, model: str, size: int, batches: list[int]) -> int:
    """The batch ``mura train`` picks on this device (on the CPU, the first of ``--batches``)."""
    if device.type != "cuda":
        return batches[0]
    from muracli.training.sizing import default_batch as sized, device_memory

    return sized("cuda", device_memory(device), model, size)


class PeerLoop:
    """The torchvision-reference training loop over random batches already on the device."""

    def __init__(self, name: str, size: int, batch: int, device: torch.device, precision: str,
                 compile_mode: str | None, model=None):
        from muracli.models import ModelSpec, build_model
        from muracli.runtime.devices import compile_model

        torch.manual_seed(0)
        self.device, self.dtype = device, PRECISIONS[precision]
        channels_last = self.dtype is not None
        model = (build_model(ModelSpec(name=name, in_channels=1, num_classes=2)) if model is None else model).to(device)
        self.x = torch.randn(batch, 1, size, size, device=device)
        self.y = torch.randint(0, 2, (batch,), device=device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        model.train()
        self.model = compile_model(model, compile_mode, device)[0] if compile_mode else model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def run(self, steps: int | None = None, seconds: float | None = None) -> tuple[int, float, int]:
        budget = train_bench.StepBudget(steps, seconds)
        train_bench.synchronize(self.device)
        started = time.perf_counter()
        while not budget.raised:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = F.cross_entropy(self.model(self.x), self.y)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss.item()  # the reference's metric logger reads the loss every step
            budget("train", budget.count + 1)
        train_bench.synchronize(self.device)
        return budget.count * len(self.y), time.perf_counter() - started, budget.count


def set_tf32(device: torch.device, allowed: bool) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = allowed
        torch.backends.cudnn.allow_tf32 = allowed


def mura_loop(name, size, batch, precision, compile_mode, data, device):
    from muracli.runtime.devices import Precision
    from muracli.training.config import TrainConfig

    config = TrainConfig(cache=str(data.cache_path), image_size=size, model=name, batch_size=batch, seed=0,
                         compile=compile_mode is not None, compile_mode=compile_mode)
    amp = PRECISIONS[precision] is not None
    return train_bench.MuraLoop(config, device, data=data, precision=Precision(PRECISIONS[precision]),
                                channels_last=amp, tf32=amp)


def timed(loop, args) -> list[tuple[int, float, int]]:
    return [loop.run(args.steps, None if args.steps else args.run_seconds)]


def stats(runs: list[tuple[int, float, int]]) -> dict:
    rates = [images / seconds for images, seconds, _ in runs]
    return {"images_per_s": round(statistics.median(rates), 1),
            "ms_per_step": round(statistics.median(1000 * seconds / max(1, steps) for _, seconds, steps in runs), 2),
            "runs_images_per_s": [round(r, 1) for r in rates], "runs_steps": [steps for _, _, steps in runs]}


def measure(section: str, name: str, size: int, batch: int, precision: str, compile_mode: str | None, *,
            data, device, args, flops: int, peaks) -> dict:
    """One row: mura and the peer, warmed up, then ``--repeat`` alternating timed runs each."""
    amp = PRECISIONS[precision] is not None
    set_tf32(device, amp)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    mura = mura_loop(name, size, batch, precision, compile_mode, data, device)
    set_tf32(device, amp)  # MuraLoop sets them as the trainer does; keep this row's
    train_bench.warm_up(mura, args.warmup)
    peer = PeerLoop(name, size, batch, device, precision, compile_mode)
    train_bench.warm_up(peer, args.warmup)
    warmup_seconds = time.perf_counter() - started
    mura_runs, peer_runs = [], []
    for _ in range(args.repeat):
        mura_runs += timed(mura, args)
        peer_runs += timed(peer, args)
    ours, theirs = stats(mura_runs), stats(peer_runs)
    bf16_peak, fp32_peak = peaks
    achieved = ours["images_per_s"] * 3 * flops / 1e12
    row = {
        "section": section, "model": name, "size": size, "batch_size": batch, "precision": precision,
        "compile": compile_mode, "channels_last": amp, "tf32": amp and device.type == "cuda",
        "mura_images_per_s": ours["images_per_s"], "peer_images_per_s": theirs["images_per_s"],
        "ratio": round(ours["images_per_s"] / theirs["images_per_s"], 3) if theirs["images_per_s"] else None,
        "mura": ours, "peer": theirs,
        "forward_gflops_per_image": round(flops / 1e9, 3),
        "train_tflops_per_s": round(achieved, 2),
        "mfu": round(achieved / bf16_peak, 4) if bf16_peak else None,
        "peer_mfu": round(theirs["images_per_s"] * 3 * flops / 1e12 / bf16_peak, 4) if bf16_peak else None,
        "warmup_s": round(warmup_seconds, 1),
    }
    if not amp:
        row["mfu_vs_fp32_peak"] = round(achieved / fp32_peak, 4) if fp32_peak else None
    if device.type == "cuda":
        row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    del mura, peer
    gc.collect()
    return row


def profile(name: str, size: int, batch: int, data, device, args, out_dir: Path | None) -> dict:
    """The top 25 kernels (CUDA time; CPU time on a CPU) of mura's loop, bf16, default batch."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    set_tf32(device, True)
    loop = mura_loop(name, size, batch, "bf16", None, data, device)
    train_bench.warm_up(loop, args.warmup)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        images, seconds, steps = loop.run(args.profile_steps)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=25)
    path = None
    if out_dir is not None:
        path = out_dir / f"profile-{name}-{size}.txt"
        path.write_text(f"{name}@{size} bf16 batch {batch}, {steps} steps under the profiler, sorted by {sort}\n\n"
                        + table + "\n", encoding="utf-8")
    del loop
    gc.collect()
    return {"section": "profile", "model": name, "size": size, "batch_size": batch, "precision": "bf16",
            "steps": steps, "sorted_by": sort, "file": str(path) if path else None, "top": table.splitlines()[3:8]}


def evaluation(name: str, size: int, batch_images: list[int], data, device, args) -> list[dict]:
    """Images/s of mura's evaluation path over the train split (the larger one), bf16 on CUDA."""
    from muracli.batches.augment import GREY_MEAN, GREY_STD
    from muracli.models import ModelSpec, build_model
    from muracli.runtime.devices import choose_precision
    from muracli.runtime.inference import image_probabilities

    set_tf32(device, True)
    precision = choose_precision(device, None)
    channels_last = device.type == "cuda"
    model = build_model(ModelSpec(name=name, in_channels=1, num_classes=2)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    split = data.train
    rows = []
    for images in batch_images:
        options = dict(device=device, mean=GREY_MEAN, std=GREY_STD, precision=precision, max_images=images,
                       channels_last=channels_last)
        image_probabilities(model, split, **options)  # warm-up (cuDNN autotuning)
        rates = []
        for _ in range(args.repeat):
            train_bench.synchronize(device)
            started = time.perf_counter()
            image_probabilities(model, split, **options)
            train_bench.synchronize(device)
            rates.append(len(split.index) / (time.perf_counter() - started))
        rows.append({"section": "eval", "model": name, "size": size, "batch_images": images,
                     "precision": precision.name, "images": len(split.index),
                     "images_per_s": round(statistics.median(rates), 1), "runs_images_per_s": [round(r, 1) for r in rates]})
    del model
    gc.collect()
    return rows


def end_to_end(name: str, size: int, data_dir: Path, work: Path, device, epochs: int, reference: dict | None,
               timeout: float | None = None) -> dict:
    """``mura train`` for ``epochs`` epochs in a subprocess; epoch ``epochs``'s images/s from metrics.csv.
    A run still going after ``timeout`` seconds (what is left of the budget) is stopped and the row skipped."""
    run = work / f"e2e-{name}-{size}"
    command = [sys.executable, "-m", "muracli", "train", "--data", str(data_dir), "--model", name,
               "--image-size", str(size), "--epochs", str(epochs), "--out", str(run),
               "--gpu" if device.type == "cuda" else "--cpu"]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"section": "e2e", "model": name, "size": size, "epochs": epochs, "command": " ".join(command[1:]),
                "skipped": f"mura train still running after {timeout:.0f} s (the budget left), stopped"}
    row = {"section": "e2e", "model": name, "size": size, "epochs": epochs, "command": " ".join(command[1:]),
           "seconds": round(time.perf_counter() - started, 1)}
    if done.returncode != 0:
        row["skipped"] = f"mura train exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"
        return row
    with (run / "metrics.csv").open() as handle:
        last = list(csv.DictReader(handle))[-1]
    config = json.loads((run / "config.json").read_text())
    row.update({"batch_size": config["config"]["batch_size"], "lr": config["config"]["lr"],
                "precision": config["device"]["precision"], "train_images": config["data"]["train_images"],
                "images_per_s": float(last["images_per_s"]), "epoch_seconds": float(last["seconds"])})
    if reference is not None:
        row["benchmark_images_per_s"] = reference["mura_images_per_s"]
        row["over_benchmark"] = round(row["images_per_s"] / reference["mura_images_per_s"], 3)
    return row


def epoch_projection(rows: list[dict]) -> list[dict]:
    """Seconds per full-MURA epoch at each model's fastest measured default-batch mura rate, per size."""
    best: dict[tuple[str, int], dict] = {}
    for row in rows:
        if row.get("section") in ("core", "matrix", "compile") and "skipped" not in row and row.get("mura_images_per_s"):
            key = (row["model"], row["size"])
            if key not in best or row["mura_images_per_s"] > best[key]["mura_images_per_s"]:
                best[key] = row
    return [{"model": m, "size": s, "images_per_s": r["mura_images_per_s"], "precision": r["precision"],
             "batch_size": r["batch_size"], "compile": r["compile"],
             "seconds_per_epoch": round(MURA_TRAIN_IMAGES / r["mura_images_per_s"], 1)}
            for (m, s), r in sorted(best.items())]


def summary_table(result: dict) -> str:
    lines = [
        (f"{result.get('device_name', '?')}: peak dense bf16 {result.get('peak_bf16_tflops')} TFLOP/s, "
         f"torch {result.get('torch', '?')}, {result.get('seconds', '?')} s"),
        f"{'section':<8} {'model':<12} {'size':>4} {'batch':>5} {'prec':<5} {'compile':<15} {'mura':>8} {'peer':>8} "
        f"{'ratio':>6} {'MFU':>6} {'mem GB':>6}",
    ]
    for row in result["configs"]:
        where = (f"{row.get('section', ''):<8} {row.get('model', ''):<12} {row.get('size', ''):>4} "
                 f"{row.get('batch_size', row.get('batch_images', '')):>5} {row.get('precision', ''):<5}")
        if "skipped" in row:
            lines.append(f"{where} skipped: {row['skipped']}")
        elif row["section"] in ("core", "compile", "matrix"):
            mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") is not None else "-"
            memory = f"{row['peak_cuda_mb'] / 1024:.1f}" if "peak_cuda_mb" in row else "-"
            lines.append(f"{where} {str(row['compile'] or '-'):<15} {row['mura_images_per_s']:>8.1f} "
                         f"{row['peer_images_per_s']:>8.1f} {row['ratio']:>6.2f} {mfu:>6} {memory:>6}")
        elif row["section"] == "eval":
            lines.append(f"{where} {'evaluation':<15} {row['images_per_s']:>8.1f}")
        elif row["section"] == "e2e":
            versus = f"  ({row['over_benchmark']:.2f}x the benchmark's {row['benchmark_images_per_s']})" \
                if "over_benchmark" in row else ""
            lines.append(f"{where} {'mura train':<15} {row['images_per_s']:>8.1f}  epoch {row['epochs']}{versus}")
        elif row["section"] == "profile":
            lines.append(f"{where} {'profile':<15} {row['file'] or '(no $OUT)'}")
    for p in result.get("epoch_projection", []):
        lines.append(f"full-MURA epoch: {p['model']}@{p['size']} {p['seconds_per_epoch']:.0f} s "
                     f"({p['images_per_s']} img/s, {p['precision']}, batch {p['batch_size']}, compile {p['compile'] or 'off'})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help=f"comma-separated (default {DEFAULTS['models']})")
    parser.add_argument("--sizes", default=None, help=f"comma-separated pixels (default {DEFAULTS['sizes']})")
    parser.add_argument("--batches", default=None, help=f"the matrix's batch sizes (default {DEFAULTS['batches']})")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"which, in this order (default {','.join(SECTIONS)})")
    parser.add_argument("--compile-modes", default=None, help=f"default {DEFAULTS['compile_modes']}")
    parser.add_argument("--eval-batches", default=None, help=f"default {DEFAULTS['eval_batches']}")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per loop (default 5)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed run (default: --run-seconds)")
    parser.add_argument("--run-seconds", type=float, default=None, help="a timed run's length without --steps (default 1)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per loop and configuration (default 3)")
    parser.add_argument("--profile-steps", type=int, default=None)
    parser.add_argument("--data", type=Path, default=None, help="synthetic dataset folder (generated there if missing)")
    parser.add_argument("--studies", type=int, default=None, help="studies to generate (default 1100: about 3,000 images)")
    parser.add_argument("--max-side", type=int, default=None, help="long side of generated images (default 384)")
    parser.add_argument("--e2e-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=270.0,
                        help="start nothing expected to end later than this many seconds from launch (default 270)")
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
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not set(sections) <= set(SECTIONS):
        raise SystemExit(f"--sections: choose from {', '.join(SECTIONS)}")
    compile_modes = [m.strip() for m in args.compile_modes.split(",") if m.strip()]
    if args.smoke and args.device == "cpu":
        os.environ.setdefault("MURA_COMPILE_BACKEND", "eager")  # the compile plumbing in seconds, not minutes

    from muracli.runtime.devices import compile_backend, select_device
    from muracli.training.config import TrainConfig

    device = select_device(args.device)
    name = train_bench.device_name(device)
    peaks = peak_tflops(name) if device.type == "cuda" else (None, None)
    if args.peak_tflops:
        peaks = (args.peak_tflops, peaks[1])
    log(f"torch {torch.__version__} (CUDA {torch.version.cuda}); device: {name}; "
        f"peak dense bf16 used for MFU: {peaks[0]} TFLOP/s (fp32: {peaks[1]}); compile backend {compile_backend()}")
    data_dir = args.data or train_bench.default_data_dir(args.studies, args.seed, args.max_side)
    train_bench.ensure_data(data_dir, args.studies, args.seed, args.max_side)
    caches = train_bench.ensure_caches(data_dir, sizes)
    log(f"data ready after {time.monotonic() - launched:.0f} s")
    out_dir = args.out.parent if args.out else None

    result: dict = {
        "benchmark": "gpu",
        "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": str(device), "device_name": name,
        "peak_bf16_tflops": peaks[0], "peak_fp32_tflops": peaks[1],
        "flops_note": "FlopCounterMode over one forward pass; training counted as 3x forward; MFU against peak dense bf16",
        "fp32_note": "fp32 rows: no autocast, contiguous, TF32 off (torch.backends.cuda.matmul / cudnn allow_tf32 = False)",
        "peer_note": "peer: torchvision-reference loop over random batches on the device, same model, precision "
                     "(autocast, channels_last, GradScaler with fp16) and compile setting; loss.item() every step",
        "compile_backend": compile_backend(),
        "sections": sections, "batches": batches, "warmup_steps": args.warmup, "repeat": args.repeat,
        "data": str(data_dir), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "configs": [], "notes": [],
    }

    def save() -> None:
        result["epoch_projection"] = epoch_projection(result["configs"])
        result["seconds"] = round(time.monotonic() - launched, 1)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            args.out.with_suffix(".txt").write_text(summary_table(result) + "\n", encoding="utf-8")

    def fits(what: str, estimate: float) -> bool:
        left = args.budget_s - (time.monotonic() - launched)
        if left >= estimate:
            return True
        note = f"{what}: skipped, {left:.0f} s of --budget-s left, about {estimate:.0f} s needed"
        result["notes"].append(note)
        log(note)
        return False

    loaded: dict[tuple[int, int], object] = {}

    def data_for(size: int, batch: int):
        if (size, batch) not in loaded:
            base = TrainConfig(cache=str(caches[size]), image_size=size, batch_size=batch, seed=0)
            loaded[(size, batch)] = train_bench.load_data(base, device, drop_last=True)
        return loaded[(size, batch)]

    flops_of: dict[tuple[str, int], int] = {}
    done: set = set()

    def row(section: str, model: str, size: int, batch: int, precision: str, compile_mode: str | None = None):
        key = (model, size, batch, precision, compile_mode)
        kind = "compile" if compile_mode else "eager"
        estimate = ESTIMATE_S.get(f"{kind}_{model}", ESTIMATE_S[kind])
        what = f"{model}@{size} batch {batch} {precision} compile {compile_mode or 'off'}"
        if key in done or not fits(what, estimate):
            return None
        done.add(key)
        if (model, size) not in flops_of:
            flops_of[(model, size)] = forward_flops(model, size)
        data = data_for(size, batch)
        if data.steps_per_epoch < 1:
            measured = {"section": section, "model": model, "size": size, "batch_size": batch, "precision": precision,
                        "compile": compile_mode, "skipped": f"the train split has fewer than {batch} images"}
        else:
            try:
                measured = measure(section, model, size, batch, precision, compile_mode, data=data, device=device,
                                   args=args, flops=flops_of[(model, size)], peaks=peaks)
            except torch.cuda.OutOfMemoryError:
                measured = {"section": section, "model": model, "size": size, "batch_size": batch,
                            "precision": precision, "compile": compile_mode, "skipped": "out of memory"}
                gc.collect()
                torch.cuda.empty_cache()
        result["configs"].append(measured)
        if "skipped" in measured:
            log(f"{what}: {measured['skipped']}")
        else:
            log(f"{what}: mura {measured['mura_images_per_s']} img/s, peer {measured['peer_images_per_s']} img/s, "
                f"ratio {measured['ratio']}, MFU {measured['mfu']} ({time.monotonic() - launched:.0f} s so far)")
        save()
        return measured

    focus = [(m, s) for m, s in (("densenet169", 320), ("vgg16", 224)) if m in models and s in sizes] \
        or [(models[0], sizes[0])]
    lead_model, lead_size = focus[0]
    lead_batch = default_batch(device, lead_model, lead_size, batches)
    core: dict[tuple[str, int], dict] = {}
    for section in sections:
        if section == "core":
            for model, size in focus:
                measured = row("core", model, size, default_batch(device, model, size, batches), "bf16")
                if measured and "skipped" not in measured:
                    core[(model, size)] = measured
        elif section == "profile" and fits(f"profile {lead_model}@{lead_size}", ESTIMATE_S["profile"]):
            result["configs"].append(profile(lead_model, lead_size, lead_batch, data_for(lead_size, lead_batch),
                                             device, args, out_dir))
            save()
        elif section == "eval" and fits(f"evaluation {lead_model}@{lead_size}", ESTIMATE_S["eval"]):
            eval_batches = [int(b) for b in args.eval_batches.split(",") if b.strip()]
            result["configs"].extend(evaluation(lead_model, lead_size, eval_batches, data_for(lead_size, lead_batch),
                                                device, args))
            save()
        elif section == "e2e" and fits(f"mura train {lead_model}@{lead_size}", ESTIMATE_S["e2e"]):
            e2e_dir = data_dir.parent / "e2e-runs"  # beside the data, not in $OUT: checkpoints are large
            measured = end_to_end(lead_model, lead_size, data_dir, e2e_dir, device, args.e2e_epochs,
                                  core.get((lead_model, lead_size)),
                                  timeout=max(ESTIMATE_S["e2e"], args.budget_s - (time.monotonic() - launched)))
            result["configs"].append(measured)
            log(f"mura train {lead_model}@{lead_size}: {measured.get('images_per_s', measured.get('skipped'))} img/s "
                f"in epoch {args.e2e_epochs}")
            save()
        elif section == "compile":
            for mode in compile_modes:
                for model, size in focus:
                    row("compile", model, size, default_batch(device, model, size, batches), "bf16", mode)
        elif section == "matrix":
            for size in sizes:
                for model in models:
                    for batch in batches:
                        for precision in ("bf16", "fp16"):
                            row("matrix", model, size, batch, precision)
                    row("matrix", model, size, default_batch(device, model, size, batches), "fp32")

    result["load_average_at_end"] = list(os.getloadavg())
    save()
    table = summary_table(result)
    print(json.dumps(result, indent=2))
    log(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
