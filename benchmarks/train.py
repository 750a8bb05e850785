"""Training throughput and peak memory: mura's training loop against a plain PyTorch loop.

Training images/s and peak memory, as the README reports them. For each ``--models``
entry (``name@size``) two loops train the same architecture (``build_model``
of the same ``ModelSpec``, same seed), batch size, input shape and optimiser
(Adam, lr 1e-3):

(a) mura: exactly what ``mura train`` does per step, through the trainer's
    own code: ``load_train_data`` (the cache, ``image_loader`` on threads with the
    trainer's loader threads and pinned memory), the trainer's set-up
    (``choose_precision``, channels_last on CUDA, ``build_optimizer``,
    ``Schedule``, the GradScaler, ``AugmentConfig``), and its epoch loop
    ``_train_one_epoch``: on CUDA uint8 batch -> ``prepare_batch``
    (augmentation on, on the GPU) -> ``train_step`` with bf16 autocast +
    channels_last; on the CPU the loader threads' augmented, normalised
    batch -> ``train_step`` in fp32.
(b) plain: the textbook loop over float32 batches that are already
    normalised and already on the device (a few real batches from the same
    cache, cycled): ``model(x)``, ``F.cross_entropy``, ``backward()``,
    ``optimizer.step()``, ``loss.item()``; fp32, contiguous, torch's default
    backend settings.

``ratio`` is mura / plain images/s (medians): below 1 is what mura's data
path and augmentation cost on top of the model's own step, above 1 what AMP
and channels_last win back on a GPU.

Each side runs in a worker process of its own, so its peak RSS
(``VmHWM``; on CUDA also ``torch.cuda.max_memory_allocated``) is its own.
Both workers of a configuration start once, build the model and warm up
(``--warmup`` steps); then ``--repeat`` timed runs of ``--steps`` steps
alternate between them (ABBA order), so background load hits both alike, and
medians are reported. A run is ``--steps`` steps, or by default the whole steps that
fit in ``--run-seconds`` (at least one).

    python benchmarks/train.py                      # cnn@128, resnet18@224, densenet169@224 on this machine
    python benchmarks/train.py --models resnet18@224 --repeat 5 --out train.json
    python benchmarks/train.py --smoke              # cnn@32, 2 steps: checks that the script works

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_MODELS = "cnn@128,resnet18@224,densenet169@224"
SMOKE = {"models": "cnn@32", "steps": 2, "warmup": 1, "repeat": 1, "studies": 24, "max_side": 128}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# data ------------------------------------------------------------------------------------------


def default_data_dir(studies: int, seed: int, max_side: int) -> Path:
    """The folder benchmarks/loader.py uses for the same options, so both reuse one dataset."""
    name = f"synthetic-{studies}-seed{seed}" + ("" if max_side == 512 else f"-side{max_side}")
    return Path(tempfile.gettempdir()) / "mura-bench" / name


def ensure_data(data: Path, studies: int, seed: int, max_side: int = 512) -> Path:
    from muracli.data.layout import ROOT_NAME

    if (data / ROOT_NAME).is_dir():
        log(f"reusing the dataset in {data}")
        return data
    from muracli.synthetic import generate_synthetic

    log(f"generating {studies} synthetic studies into {data} (once; pass --data {data} to reuse)")
    generate_synthetic(data, studies=studies, seed=seed, max_side=max_side)
    return data


def ensure_caches(data: Path, sizes: list[int]) -> dict[int, Path]:
    """The trainer's caches (``<data>/mura-cache/...``), built once and reused.

    ``build_cache`` starts a forkserver pool: call this under ``if __name__ == "__main__"``.
    """
    from muracli.runtime.caches import open_or_build_cache

    caches = {}
    for size in sorted(set(sizes)):
        started = time.perf_counter()
        cache = open_or_build_cache(data=data, size=size)
        log(f"{size} px cache: {cache.path} ({time.perf_counter() - started:.1f} s)")
        caches[size] = cache.path
    return caches


def parse_models(text: str) -> list[tuple[str, int]]:
    """``"cnn@128,resnet18@224"`` -> ``[("cnn", 128), ("resnet18", 224)]``."""
    configs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, size = item.partition("@")
        if not sep or not size.isdigit():
            raise SystemExit(f"--models: expected name@size, got {item!r}")
        configs.append((name, int(size)))
    if not configs:
        raise SystemExit("--models: nothing to run")
    return configs


# memory ----------------------------------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else round(kb / 1024, 1)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss where there is no /proc)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024, 1)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# the two loops -----------------------------------------------------------------------------------


class StepBudget:
    """Both the progress callback and the stop flag handed to ``_train_one_epoch``: counts the
    steps (those it is told of, or what ``counter`` returns: the trainer reports progress only at
    ticks on CUDA) and asks the loop to stop after ``steps`` steps, or after the first step queued
    ``seconds`` or more after the start (the caller synchronises the device before reading the
    clock, so on CUDA the figure is honest too)."""

    def __init__(self, steps: int | None = None, seconds: float | None = None, counter=None) -> None:
        if steps is None and seconds is None:
            raise ValueError("give steps or seconds")
        self.steps, self.told, self.counter = steps, 0, counter
        self.deadline = None if seconds is None else time.perf_counter() + seconds

    @property
    def count(self) -> int:
        return self.counter() if self.counter is not None else self.told

    def __call__(self, task: str, completed: int, total: int | None = None, **fields) -> None:
        if task == "train":
            self.told += 1

    @property
    def raised(self) -> bool:
        count = self.count
        if self.steps is not None and count >= self.steps:
            return True
        return self.deadline is not None and count > 0 and time.perf_counter() >= self.deadline


def load_data(config, device: torch.device, *, drop_last: bool = False):
    """The trainer's ``TrainData``; with ``drop_last`` the same loader without the short last batch
    (one batch shape, so cuDNN autotunes once per configuration in a short benchmark)."""
    import dataclasses

    from muracli.batches.datasets import image_loader
    from muracli.runtime.distributed import World
    from muracli.training.data import load_train_data

    data = load_train_data(config, World(), device)
    if not drop_last:
        return data
    loader, sampler = image_loader(
        data.loader.dataset, batch_size=config.batch_size, shuffle=True, seed=config.seed, workers=data.loader.workers,
        threads=True,
        balanced=config.balanced_sampling, pin_memory=device.type == "cuda", drop_last=True,
    )
    return dataclasses.replace(data, loader=loader, sampler=sampler, steps_per_epoch=len(sampler))


class MuraLoop:
    """``mura train``'s set-up (as in ``trainer._train``) and its own epoch loop, stopped after N steps.

    ``precision`` and ``channels_last`` default to the trainer's choice for the device; ``tf32``
    (CUDA only) is on, as the trainer has it.
    """

    def __init__(self, config, device: torch.device, *, data=None, precision=None, channels_last: bool | None = None,
                 tf32: bool = True, model=None):
        from torch import nn

        from muracli.models import ModelSpec, build_model
        from muracli.runtime.devices import choose_precision
        from muracli.runtime.distributed import World
        from muracli.training.checkpointer import Progress
        from muracli.training.optim import Schedule, build_optimizer
        from muracli.training.trainer import Session

        from muracli.training.sizing import device_memory, resolve_sizes

        self.config, self.device = resolve_sizes(config, device.type, device_memory(device)), device
        if device.type == "cuda":  # as trainer._train sets them (tf32=False for an honest fp32 figure)
            torch.backends.cudnn.benchmark = not config.deterministic
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        self.precision = precision or choose_precision(device, config.amp)
        if channels_last is None:
            channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
        self.channels_last = channels_last
        self.data = data if data is not None else load_data(config, device)
        torch.manual_seed(config.seed)
        spec = ModelSpec(name=config.model, in_channels=1, num_classes=2, dropout=config.dropout, init=config.init)
        model = build_model(spec).to(device) if model is None else model
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        trained = model
        if config.compile:  # as trainer._start does it
            from muracli.runtime.devices import compile_model

            trained = compile_model(model, config.compile_mode or "default", device)[0]
        self.optimizer = build_optimizer(model.parameters(), config)
        self.schedule = Schedule(self.optimizer, config, self.data.steps_per_epoch)
        self.scaler = self.precision.scaler(device)
        from muracli.batches.mix import BatchMix
        from muracli.training.loss import TrainLoss
        from muracli.training.window import StepWindow

        weights = self.data.class_weights if config.class_weights else None
        self.loss_fn = TrainLoss(weights.to(device) if weights is not None else None, config.label_smoothing)
        window = StepWindow(
            model=trained, raw=model, optimizer=self.optimizer, scaler=self.scaler, loss_fn=self.loss_fn,
            autocast=lambda: self.precision.autocast(device), class_weights=weights, clip_grad=config.clip_grad,
            ema=None,
        )
        self.augment = config.augmentation()
        self.augment_rng = torch.Generator().manual_seed(config.seed * 1000)
        self.world = World()
        self.state = Progress()
        self.epoch = 1
        # the trainer's own Session: _train_one_epoch below is the code `mura train` runs
        self.session = Session(
            config=config, world=self.world, device=device, precision=self.precision, channels_last=channels_last,
            data=self.data, spec=spec, model=model, trained=trained, optimizer=self.optimizer, schedule=self.schedule,
            scaler=self.scaler, loss_fn=self.loss_fn, augment=self.augment, augment_rng=self.augment_rng,
            mix=BatchMix(0.0, 0.0, torch.Generator().manual_seed(config.seed)), window=window,
            steps_per_epoch=self.data.steps_per_epoch, ema=None,
        )

    def run(self, steps: int | None = None, seconds: float | None = None) -> tuple[int, float, int]:
        """Train ``steps`` steps, or for about ``seconds`` (whole steps), continuing the epoch and
        starting the next when it ends: (images, seconds, steps)."""
        from muracli.training.trainer import _train_one_epoch

        synchronize(self.device)
        started = time.perf_counter()
        done, base = [0], [self.state.step]
        budget = StepBudget(steps, seconds, counter=lambda: done[0] + self.state.step - base[0])
        seen = self.state.seen
        while not budget.raised:
            if self.state.step >= self.data.steps_per_epoch:
                self.epoch, self.state.step, base[0] = self.epoch + 1, 0, 0
            before = budget.count
            _train_one_epoch(self.session, self.state, self.epoch, stop=budget, progress=budget)
            done[0] += self.state.step - base[0]
            base[0] = self.state.step
            if budget.count == before and self.state.step < self.data.steps_per_epoch:
                raise RuntimeError("the training loop made no progress")
        synchronize(self.device)  # the loop queues steps ahead of the GPU: wait for them all
        return self.state.seen - seen, time.perf_counter() - started, budget.count

    def steps_to_epoch_end(self) -> int:
        return self.data.steps_per_epoch - self.state.step


class PlainLoop:
    """The textbook loop: normalised float32 batches already on the device, fp32, no augmentation."""

    def __init__(self, name: str, cache_path: Path, batch_size: int, device: torch.device, *, seed: int = 0,
                 lr: float = 1e-3, pool_batches: int = 4):
        from muracli.batches.augment import GREY_MEAN, GREY_STD
        from muracli.data.cache import open_cache
        from muracli.models import ModelSpec, build_model

        split = open_cache(cache_path).split("train")
        # Real images, cycled modulo the split so even a tiny one gives full batches.
        rows = np.arange(batch_size * pool_batches) % len(split.pixels)
        x = torch.from_numpy(np.asarray(split.pixels[rows])).unsqueeze(1).float().div_(255).sub_(GREY_MEAN).div_(GREY_STD)
        y = torch.as_tensor(split.index["label"].to_numpy()[rows], dtype=torch.long)
        self.batches = [(x[i:i + batch_size].to(device), y[i:i + batch_size].to(device))
                        for i in range(0, len(rows), batch_size)]
        self.device, self.position, self.running_loss = device, 0, 0.0
        torch.manual_seed(seed)
        self.model = build_model(ModelSpec(name=name, in_channels=1, num_classes=2)).to(device)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)

    def run(self, steps: int | None = None, seconds: float | None = None) -> tuple[int, float, int]:
        images = 0
        synchronize(self.device)
        started = time.perf_counter()
        budget = StepBudget(steps, seconds)
        while not budget.raised:
            x, y = self.batches[self.position % len(self.batches)]
            self.position += 1
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            self.running_loss += loss.item()
            images += len(y)
            budget("train", budget.count + 1)
        synchronize(self.device)
        return images, time.perf_counter() - started, budget.count


def warm_up(loop, steps: int, *, through_epoch_end: bool = False) -> float:
    """Run ``steps`` untimed steps (with ``through_epoch_end`` on to the end of the first epoch
    too, so the short last batch's kernels are tuned before timing); returns their seconds."""
    started = time.perf_counter()
    loop.run(steps)
    if through_epoch_end and isinstance(loop, MuraLoop) and loop.steps_to_epoch_end() > 0:
        loop.run(loop.steps_to_epoch_end())
    return time.perf_counter() - started


# worker processes --------------------------------------------------------------------------------


def worker(job: dict) -> int:
    """One side of one configuration: set up, warm up, then obey run/quit commands on stdin."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to stderr, never into the replies

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    if job["side"] == "mura":
        from muracli.training.config import TrainConfig

        config = TrainConfig(cache=job["cache"], image_size=job["size"], model=job["model"],
                             batch_size=job["batch_size"], device=device.type, seed=0)
        loop = MuraLoop(config, device)
        described = {"precision": loop.precision.name, "channels_last": loop.channels_last,
                     "loader_threads": loop.data.loader.workers, "augment": loop.augment is not None}
    else:
        loop = PlainLoop(job["model"], Path(job["cache"]), job["batch_size"], device)
        described = {"precision": "fp32", "channels_last": False, "loader_threads": None, "augment": False}
    rss_start = rss_mb()
    warmup_seconds = warm_up(loop, job["warmup"], through_epoch_end=device.type == "cuda")
    reply({"ready": True, "rss_start_mb": rss_start, "warmup_s": round(warmup_seconds, 2), **described})
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] != "run":
            break
        before = resource.getrusage(resource.RUSAGE_SELF)
        images, seconds, steps = loop.run(command.get("steps"), command.get("seconds"))
        after = resource.getrusage(resource.RUSAGE_SELF)
        # CPU time of this process (not of loader workers): on a shared machine images per CPU
        # second varies far less than images per wall second; minor faults show allocator churn.
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        reply({"images": images, "seconds": seconds, "steps": steps, "cpu_seconds": cpu,
               "minor_faults": after.ru_minflt - before.ru_minflt})
    final = {"peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        final["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    reply(final)
    return 0


class WorkerProcess:
    """The parent's handle on a worker: JSON lines both ways; its stderr is ours."""

    def __init__(self, job: dict) -> None:
        self.job = job
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )

    def receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise SystemExit(f"the {self.job['side']} worker for {self.job['model']}@{self.job['size']} exited with {code}")
        return json.loads(line)

    def send(self, command: dict) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self.receive()

    def finish(self) -> dict:
        final = self.send({"op": "quit"})
        self.proc.stdin.close()
        self.proc.wait()
        return final

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_config(name: str, size: int, cache: Path, args, device: torch.device) -> dict:
    load_at_start = list(os.getloadavg())
    job = {"model": name, "size": size, "cache": str(cache), "batch_size": args.batch_size,
           "device": str(device), "threads": args.threads, "warmup": args.warmup}
    workers: dict[str, WorkerProcess] = {}
    try:
        ready = {}
        for side in ("mura", "plain"):  # one at a time, so their warm-ups do not overlap
            log(f"{name}@{size}: starting the {side} worker")
            workers[side] = WorkerProcess({**job, "side": side})
            ready[side] = workers[side].receive()
        command = {"op": "run", "steps": args.steps} if args.steps else {"op": "run", "seconds": args.run_seconds}
        runs: dict[str, list[dict]] = {"mura": [], "plain": []}
        for r in range(args.repeat):
            # Alternate which side goes first (ABBA), so neither always runs in the other's wake.
            for side in ("mura", "plain") if r % 2 == 0 else ("plain", "mura"):
                runs[side].append(workers[side].send(command))
            log(f"{name}@{size} run {r + 1}/{args.repeat}: " + ", ".join(
                f"{side} {run[-1]['images'] / run[-1]['seconds']:.1f} img/s" for side, run in runs.items()))
        finals = {side: workers[side].finish() for side in ("mura", "plain")}
    finally:
        for handle in workers.values():
            handle.kill()

    result: dict = {"model": name, "size": size, "batch_size": args.batch_size,
                    "run": {"steps": args.steps} if args.steps else {"seconds": args.run_seconds}}
    for side in ("mura", "plain"):
        rates = [run["images"] / run["seconds"] for run in runs[side]]
        step_ms = [1000 * run["seconds"] / run["steps"] for run in runs[side]]
        info = {k: v for k, v in ready[side].items() if k != "ready"}
        result[side] = {
            "images_per_s": round(statistics.median(rates), 2),
            "ms_per_step": round(statistics.median(step_ms), 1),
            # None when a run was too short for the kernel's CPU-time accounting to see it
            "images_per_cpu_s": round(statistics.median(run["images"] / run["cpu_seconds"] for run in runs[side]), 2)
            if all(run["cpu_seconds"] > 0 for run in runs[side]) else None,
            "cpu_share": round(statistics.median(run["cpu_seconds"] / run["seconds"] for run in runs[side]), 2),
            "minor_faults_per_step": round(statistics.median(run["minor_faults"] / run["steps"] for run in runs[side])),
            **finals[side],
            **info,
            "runs_images_per_s": [round(rate, 2) for rate in rates],
            "runs_steps": [run["steps"] for run in runs[side]],
        }
    result["ratio"] = round(result["mura"]["images_per_s"] / result["plain"]["images_per_s"], 3)
    per_cpu = (result["mura"]["images_per_cpu_s"], result["plain"]["images_per_cpu_s"])
    result["ratio_per_cpu_s"] = round(per_cpu[0] / per_cpu[1], 3) if None not in per_cpu else None
    result["peak_rss_ratio"] = round(result["mura"]["peak_rss_mb"] / result["plain"]["peak_rss_mb"], 3)
    result["load_average_at_start"] = load_at_start
    return result


# main --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help=f"name@size, comma-separated (default {DEFAULT_MODELS})")
    parser.add_argument("--data", type=Path, default=None, help="synthetic dataset folder (generated there if missing)")
    parser.add_argument("--studies", type=int, default=None, help="studies to generate (default 300)")
    parser.add_argument("--max-side", type=int, default=None, help="long side of generated images (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="default 16 on the CPU, 64 on CUDA")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per worker first (default 2)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed run (default: --run-seconds)")
    parser.add_argument("--run-seconds", type=float, default=5.0,
                        help="without --steps, a timed run stops after the first step that ends this late (default 5)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per side (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads in both workers (default: 1 on the CPU, where several threads "
                        "wait on each other whenever other jobs share the cores; torch's choice on CUDA); 0 = torch's choice")
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the script: cnn@32, 2 steps, 1 run")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(json.loads(args.worker))

    defaults = {"models": DEFAULT_MODELS, "steps": None, "warmup": 2, "repeat": 3, "studies": 300, "max_side": 512}
    for key, value in (SMOKE if args.smoke else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.warmup < 1 or args.repeat < 1 or (args.steps is not None and args.steps < 1):
        raise SystemExit("--warmup, --repeat and --steps must be at least 1")

    from muracli.runtime.devices import select_device

    device = select_device(args.device)
    if args.batch_size is None:
        args.batch_size = 64 if device.type == "cuda" else 16
    if args.threads is None:
        args.threads = 1 if device.type == "cpu" else 0
    configs = parse_models(args.models)
    load_at_start = list(os.getloadavg())
    data = args.data or default_data_dir(args.studies, args.seed, args.max_side)
    ensure_data(data, args.studies, args.seed, args.max_side)
    caches = ensure_caches(data, [size for _, size in configs])

    result: dict = {
        "benchmark": "train",
        "command": "python benchmarks/train.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": str(data),
        "device": str(device),
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup,
        "repeat": args.repeat,
        "machine": {
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": args.threads or torch.get_num_threads(),
            "device_name": device_name(device),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_at_start": load_at_start,
        },
        "configs": [],
    }
    for name, size in configs:
        result["configs"].append(run_config(name, size, caches[size], args, device))
        row = result["configs"][-1]
        log(f"{name}@{size}: mura {row['mura']['images_per_s']} img/s, plain {row['plain']['images_per_s']} img/s, "
            f"ratio {row['ratio']} (per CPU second {row['ratio_per_cpu_s']}); peak RSS {row['mura']['peak_rss_mb']} / {row['plain']['peak_rss_mb']} MB")

    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
