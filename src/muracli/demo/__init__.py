"""The whole pipeline on a fresh synthetic dataset, for ``mura demo``.

``run_demo(DemoConfig(...))`` chains what the commands do one by one:

1. **dataset** - ``generate_synthetic`` into ``<dir>/data/MURA-v1.1``;
2. **stats** - the breakdown per split and body part, and ``<dir>/montage.png``;
3. **preprocess** - ``build_cache`` at the demo's image size;
4. **train** - the ``cnn`` into ``<dir>/run`` (CPU, or the GPU when present);
5. **evaluate** - study-level metrics with bootstrap CIs into ``<dir>/evaluation``;
6. **predict** - a few valid studies (normal and abnormal) with Grad-CAM
   overlays into ``<dir>/cams``;

then writes ``<dir>/report.md``, which links every picture (relative paths)
and gives the command line that redoes each step by hand.

A second run reuses what is already there and still valid: the dataset when
it was made with the same studies, seed, difficulty and image size (recorded
in ``<dir>/data/demo-dataset.json``), the cache when its manifest is complete,
the training run when its config matches and it finished (an interrupted one
is resumed from ``last.pt``). Evaluation and prediction take seconds and are
always redone.

The package never prints: stages report through ``progress`` (bars) and
``on_stage`` (one ``StageResult`` per finished stage); the result is a
``DemoResult``.

Its modules: ``config`` (the options, and the demo's training choices),
``result`` (what a run hands back), ``stages`` (the six stages), ``run``
(``run_demo``), ``threads`` (torch's CPU threads), ``commands`` (the command
line of each stage) and ``report`` (``report.md``). Only ``config`` and
``result`` are imported with the package, which ``mura demo --help`` imports;
the rest load on first use, since the stages pull in numpy, PIL and torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from muracli.demo.config import TRAINING, DemoConfig, train_config, training_options
from muracli.demo.result import DemoResult, StageResult
from muracli.lazy import lazy_attributes

if TYPE_CHECKING:
    from muracli.demo.commands import reproduce_commands
    from muracli.demo.report import report_markdown, write_report
    from muracli.demo.run import StageCallback, run_demo
    from muracli.demo.stages import DATASET_RECORD, STAGES, pick_studies
    from muracli.demo.threads import choose_threads, torch_threads

__all__ = [
    "DATASET_RECORD",
    "STAGES",
    "TRAINING",
    "DemoConfig",
    "DemoResult",
    "StageCallback",
    "StageResult",
    "choose_threads",
    "pick_studies",
    "report_markdown",
    "reproduce_commands",
    "run_demo",
    "torch_threads",
    "train_config",
    "training_options",
    "write_report",
]

_LAZY = {
    "DATASET_RECORD": "muracli.demo.stages",
    "STAGES": "muracli.demo.stages",
    "pick_studies": "muracli.demo.stages",
    "StageCallback": "muracli.demo.run",
    "run_demo": "muracli.demo.run",
    "choose_threads": "muracli.demo.threads",
    "torch_threads": "muracli.demo.threads",
    "reproduce_commands": "muracli.demo.commands",
    "report_markdown": "muracli.demo.report",
    "write_report": "muracli.demo.report",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
