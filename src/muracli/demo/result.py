"""What a demo run hands back: one ``StageResult`` per stage, and the ``DemoResult`` of the whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli import __version__

if TYPE_CHECKING:
    from muracli.demo.config import DemoConfig


@dataclass
class StageResult:
    """One finished stage: ``summary`` is a short human phrase ("400 studies, 1080 images")."""

    name: str
    summary: str
    seconds: float
    reused: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    config: DemoConfig
    dir: Path
    stages: list[StageResult]
    kappa: float | None
    kappa_ci: list[float] | None
    auc: float | None
    auc_ci: list[float] | None
    n_valid_studies: int
    predictions: list[dict[str, Any]]
    files: dict[str, Path]
    device: str
    threads: int
    seconds: float
    commands: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``mura demo --json``): absolute paths, seconds per stage."""
        return {
            "dir": str(self.dir.resolve()),
            "kappa": self.kappa,
            "kappa_ci": self.kappa_ci,
            "auc": self.auc,
            "auc_ci": self.auc_ci,
            "n_valid_studies": self.n_valid_studies,
            "device": self.device,
            "cpu_threads": self.threads,
            "seconds": round(self.seconds, 2),
            "stages": {
                s.name: {"seconds": round(s.seconds, 2), "reused": s.reused, "summary": s.summary} for s in self.stages
            },
            "predictions": self.predictions,
            "files": {role: str(path.resolve()) for role, path in self.files.items()},
            "commands": self.commands,
            "config": self.config.to_dict(),
            "mura_version": __version__,
        }


def number(value: Any, digits: int = 3) -> str:
    """A metric as the stage summaries and the report print it: ``n/a`` when there is none."""
    return "n/a" if value is None else f"{value:.{digits}f}"
