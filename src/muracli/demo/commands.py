"""The ``mura`` command line that redoes each stage of the demo by hand (the report gives them)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from muracli.demo.config import DemoConfig, training_options
from muracli.machine import usable_cores


def reproduce_commands(config: DemoConfig, predictions: list[dict[str, Any]], device: str, threads: int) -> dict[str, str]:
    """The ``mura`` command line that redoes each stage by hand, by stage (paths as ``--dir`` was given)."""
    d = Path(config.dir)
    data, run = d / "data", d / "run"
    device_flag = "--gpu" if device == "cuda" else "--cpu"
    threads_env = f"OMP_NUM_THREADS={threads} " if device == "cpu" and threads < usable_cores() else ""
    download = (
        f"mura download --synthetic --studies {config.studies} --seed {config.seed} "
        f"--difficulty {config.difficulty} --max-side {config.max_side} --dest {_q(data)}"
    )
    study_paths = " ".join(_q(data / p["study"].rstrip("/")) for p in predictions)
    return {
        "dataset": download,
        "stats": f"mura stats --data {_q(data)} --montage {_q(d / 'montage.png')}",
        "preprocess": f"mura preprocess --data {_q(data)} --size {config.image_size}",
        "train": (
            f"{threads_env}mura train --data {_q(data)} {train_flags(training_options(config))} "
            f"{device_flag} --out {_q(run)}"
        ),
        "evaluate": (
            f"mura evaluate {_q(run)} --data {_q(data)} --bootstrap {config.bootstrap} --seed {config.seed} "
            f"{device_flag} --out {_q(d / 'evaluation')}"
        ),
        "predict": f"mura predict {study_paths} --checkpoint {_q(run)} {device_flag} --cam {_q(d / 'cams')}",
    }


def train_flags(options: dict[str, Any]) -> str:
    """``mura train``'s flags for ``TrainConfig`` field values: ``--batch-size 32``, ``--lr 0.002``,
    ``--no-augment``."""
    flags = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return " ".join(flags)


def _q(path: Path) -> str:
    return shlex.quote(str(path))
