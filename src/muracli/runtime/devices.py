"""Device and precision choices, made once per run.

One precision setting decides both the autocast dtype and whether a
GradScaler is active, so a single train step serves CPU, fp16 and bf16
(nanoGPT's habit): bf16 keeps fp32's exponent range and needs no loss
scaling; fp16 does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from muracli.errors import DeviceError


def cuda_available() -> bool:
    return torch.cuda.is_available()


def select_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without CUDA is an error."""
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda":
        if not cuda_available():
            raise DeviceError(
                "--gpu was given but no CUDA device is available",
                "drop --gpu (or pass --cpu) to run on the CPU; check `nvidia-smi` and that torch was built with CUDA",
            )
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if cuda_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    """``dtype`` is the autocast dtype (None: plain fp32); ``scaled`` turns on the GradScaler."""

    dtype: torch.dtype | None = None

    @property
    def scaled(self) -> bool:
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self, device: torch.device):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def scaler(self, device: torch.device) -> "torch.amp.GradScaler":
        return torch.amp.GradScaler(device.type, enabled=self.scaled)


def autocast_supported(device_type: str, dtype: torch.dtype) -> bool:
    """Whether this torch autocasts to ``dtype`` on ``device_type`` (fp16 on the CPU needs a recent torch:
    an older one warns and turns autocast off, which is what this looks for)."""
    import warnings

    if not torch.amp.is_autocast_available(device_type):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = torch.autocast(device_type=device_type, dtype=dtype)
    return bool(getattr(context, "_enabled", True)) and getattr(context, "fast_dtype", dtype) == dtype


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def choose_precision(device: torch.device, amp: bool | None, dtype: str = "auto") -> Precision:
    """AMP is on by default on CUDA and off on CPU; ``dtype`` (``--amp-dtype``) picks its dtype:
    ``auto`` is bf16 where supported, else fp16 (on the CPU bf16). An fp16 or bf16 this torch
    cannot autocast to on the device is a ``DeviceError``."""
    use_amp = (device.type == "cuda") if amp is None else amp
    if not use_amp:
        return Precision(None)
    if dtype == "auto":
        if device.type == "cuda":
            return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        return Precision(torch.bfloat16)  # the one dtype every torch's CPU autocast supports
    wanted = _DTYPES[dtype]
    supported = torch.cuda.is_bf16_supported() if device.type == "cuda" and wanted == torch.bfloat16 else \
        autocast_supported(device.type, wanted)
    if not supported:
        raise DeviceError(
            f"--amp-dtype {dtype}: this torch ({torch.__version__}) cannot autocast to {dtype} on {device.type}",
            "use --amp-dtype auto (bf16 on the CPU), or --no-amp",
        )
    return Precision(wanted)


#: torch.compile modes that only pay off (or only work) on CUDA: CUDA graphs, Triton autotuning.
CUDA_COMPILE_MODES = ("reduce-overhead", "max-autotune")


def compile_backend() -> str:
    """torch.compile's backend: inductor, or ``$MURA_COMPILE_BACKEND`` (for tests and debugging:
    ``eager`` or ``aot_eager`` check the compile plumbing in seconds, without generating code)."""
    import os

    return os.environ.get("MURA_COMPILE_BACKEND", "").strip() or "inductor"


def compile_model(model: torch.nn.Module, mode: str, device: torch.device) -> tuple[torch.nn.Module, list[str]]:
    """``model`` under torch.compile in ``mode`` (``--compile-mode``), and notes for the user.

    On the CPU the CUDA-only modes fall back to ``default`` (with a note). Shapes are static
    (``dynamic=False``): a loader's short last batch compiles once more rather than making every
    step's graph dynamic, which CUDA graphs (``reduce-overhead``) could not replay.
    """
    notes = []
    if mode in CUDA_COMPILE_MODES and device.type != "cuda":
        notes.append(f"--compile-mode {mode} needs CUDA; compiling with mode default on {device.type}")
        mode = "default"
    backend = compile_backend()
    options = {"mode": mode} if backend == "inductor" else {}  # other backends take no mode
    return torch.compile(model, backend=backend, dynamic=False, **options), notes
