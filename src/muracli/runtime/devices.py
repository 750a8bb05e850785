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


def choose_precision(device: torch.device, amp: bool | None) -> Precision:
    """AMP is on by default on CUDA (bf16 where supported, else fp16) and off on CPU."""
    use_amp = (device.type == "cuda") if amp is None else amp
    if not use_amp:
        return Precision(None)
    if device.type == "cuda":
        return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return Precision(torch.bfloat16)  # CPU autocast supports bf16 only
