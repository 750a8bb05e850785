"""Write a synthetic MURA v1.1 tree: folders, PNGs, the four CSVs and the finding boxes.

Studies are rendered in a process pool, a chunk of studies per task; every
study draws from its own seed stream, and the CSVs follow the plan's order,
not the order in which workers finish, so the bytes on disk do not depend on
``workers``. Everything is written into a hidden temporary folder inside
``dest`` and renamed to ``dest/MURA-v1.1`` only when complete: an interrupted
run leaves no half dataset that looks like a whole one.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from muracli.data.layout import BODY_PARTS, ROOT_NAME, SPLITS
from muracli.errors import ConfigError, DataError
from muracli.machine import usable_cores
from muracli.progress import ProgressFn
from muracli.synthetic.plan import StudyPlan, check_arguments, plan_studies

FINDINGS_CSV = "synthetic_findings.csv"
FINDINGS_HEADER = "image,kind,x0,y0,x1,y1"
# Fixed PNG settings: the same pixels always give the same bytes.
PNG_OPTIONS = {"format": "PNG", "compress_level": 1, "optimize": False}
STUDIES_PER_TASK = 6


@dataclass(frozen=True)
class SyntheticSummary:
    """What ``generate_synthetic`` wrote."""

    root: Path  # the MURA-v1.1 folder
    seed: int
    difficulty: str
    max_side: int
    studies: dict[str, int]  # per split
    abnormal: dict[str, int]  # abnormal studies per split
    images: dict[str, int]  # per split
    patients: dict[str, int]  # per split
    by_body_part: dict[str, dict[str, int]]  # part -> {train, valid, train_abnormal, valid_abnormal, images}
    findings: dict[str, int]  # boxes in synthetic_findings.csv per kind of finding
    seconds: float
    workers: int = 1
    files: list[str] = field(default_factory=list)  # the CSVs written, relative to root

    @property
    def total_studies(self) -> int:
        return sum(self.studies.values())

    @property
    def total_images(self) -> int:
        return sum(self.images.values())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["root"] = str(self.root)
        return data


def generate_synthetic(
    dest: Path | str,
    *,
    studies: int = 400,
    seed: int = 0,
    difficulty: str = "normal",
    max_side: int = 512,
    valid_fraction: float = 0.2,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
    visibility: float | None = None,
) -> SyntheticSummary:
    """Write a synthetic MURA dataset to ``dest/MURA-v1.1`` and describe it.

    ``visibility`` overrides the difficulty's chance that each further view of
    an abnormal study shows its finding (the first always does; hardware and
    dislocations show on every film), for experiments on multi-view models.

    Raises ``ConfigError`` for arguments out of range and ``DataError`` when
    ``dest/MURA-v1.1`` exists and ``overwrite`` is false.
    """
    started = time.perf_counter()
    check_arguments(studies, difficulty, valid_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative whole number, got {seed!r}")
    if isinstance(max_side, bool) or not isinstance(max_side, int) or not 64 <= max_side <= 4096:
        raise ConfigError(f"max_side must be a whole number of pixels from 64 to 4096, got {max_side!r}",
                          "MURA's images are at most 512 pixels on the long side")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a positive whole number, got {workers!r}")
    dest = Path(dest)
    final = dest / ROOT_NAME
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest} exists and is not a folder", "choose a folder to write the dataset into")
    if final.exists() and not overwrite:
        raise DataError(f"{final} already exists",
                        "pass --force (overwrite=True) to replace it, or choose another destination folder")

    plans = plan_studies(studies, seed=seed, difficulty=difficulty, valid_fraction=valid_fraction,
                         visibility=visibility)
    n_workers = workers or usable_cores()
    chunks = [plans[i:i + STUDIES_PER_TASK] for i in range(0, len(plans), STUDIES_PER_TASK)]
    n_workers = max(1, min(n_workers, len(chunks)))
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{ROOT_NAME}.partial-", dir=dest))
    try:
        for split in SPLITS:
            for part in BODY_PARTS:
                (partial / split / part).mkdir(parents=True)
        rows: dict[int, list[tuple[str, tuple | None, str | None]]] = {}
        done = 0
        if progress:
            progress("synthetic studies", 0, len(plans))
        for chunk_rows in _render_chunks(chunks, partial, seed, difficulty, max_side, n_workers):
            rows.update(chunk_rows)
            done += len(chunk_rows)
            if progress:
                progress("synthetic studies", done, len(plans))
        summary_files = _write_csvs(partial, plans, rows)
        _move_into_place(partial, final, overwrite)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if created:
            try:
                dest.rmdir()  # only if still empty
            except OSError:
                pass
        raise
    return _summarise(final, plans, rows, seed=seed, difficulty=difficulty, max_side=max_side,
                      seconds=time.perf_counter() - started, workers=n_workers, files=summary_files)


def _render_chunks(chunks, partial: Path, seed: int, difficulty: str, max_side: int, workers: int):
    """Yield ``{plan.index: [(image path, box, kind), ...]}`` per chunk, as chunks finish."""
    if workers == 1:
        for chunk in chunks:
            yield _render_chunk(str(partial), chunk, seed, difficulty, max_side)
        return
    # Forking a process that has loaded torch (and its threads) can deadlock; start fresh
    # interpreters then. Otherwise fork is the cheapest start.
    method = "fork" if "torch" not in sys.modules and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_render_chunk, str(partial), chunk, seed, difficulty, max_side) for chunk in chunks]
        try:
            for future in cf.as_completed(futures):
                yield future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _render_chunk(root: str, chunk: list[StudyPlan], seed: int, difficulty: str, max_side: int) -> dict:
    from muracli.synthetic.study import render_study

    out = {}
    base = Path(root)
    for plan in chunk:
        folder = base.joinpath(*plan.study_path.rstrip("/").split("/")[1:])
        folder.mkdir(parents=True, exist_ok=True)
        rendered = render_study(plan, seed=seed, difficulty=difficulty, max_side=max_side)
        for view in rendered:
            mode = "RGB" if view.pixels.ndim == 3 else "L"
            Image.fromarray(view.pixels, mode).save(base.joinpath(*view.path.split("/")[1:]), **PNG_OPTIONS)
        out[plan.index] = [(v.path, v.box, v.kind) for v in rendered]
    return out


def _write_csvs(root: Path, plans: list[StudyPlan], rows: dict) -> list[str]:
    images = {s: [] for s in SPLITS}
    labelled = {s: [] for s in SPLITS}
    boxes = [FINDINGS_HEADER]
    for plan in plans:
        labelled[plan.split].append(f"{plan.study_path},{plan.label}")
        for path, box, kind in rows[plan.index]:
            images[plan.split].append(path)
            if box is not None:
                boxes.append(f"{path},{kind},{box[0]},{box[1]},{box[2]},{box[3]}")
    written = []
    for split in SPLITS:
        for name, lines in ((f"{split}_image_paths.csv", images[split]), (f"{split}_labeled_studies.csv", labelled[split])):
            _write_lines(root / name, lines)
            written.append(name)
    _write_lines(root / FINDINGS_CSV, boxes)
    written.append(FINDINGS_CSV)
    return written


def _write_lines(path: Path, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:  # LF endings on every platform, as MURA
        fh.write("".join(line + "\n" for line in lines))


def _move_into_place(partial: Path, final: Path, overwrite: bool) -> None:
    if final.exists():
        if not overwrite:
            raise DataError(f"{final} appeared while the dataset was being written", "run again with --overwrite")
        old = Path(tempfile.mkdtemp(prefix=f".{ROOT_NAME}.old-", dir=final.parent))
        old.rmdir()
        final.rename(old)
        partial.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(final)


def _summarise(root: Path, plans, rows, *, seed, difficulty, max_side, seconds, workers, files) -> SyntheticSummary:
    studies = {s: 0 for s in SPLITS}
    abnormal = {s: 0 for s in SPLITS}
    images = {s: 0 for s in SPLITS}
    patients: dict[str, set] = {s: set() for s in SPLITS}
    parts = {p: {"train": 0, "valid": 0, "train_abnormal": 0, "valid_abnormal": 0, "images": 0} for p in BODY_PARTS}
    findings: dict[str, int] = {}
    for plan in plans:
        n = len(rows[plan.index])
        studies[plan.split] += 1
        abnormal[plan.split] += plan.label
        images[plan.split] += n
        patients[plan.split].add(plan.patient)
        parts[plan.body_part][plan.split] += 1
        parts[plan.body_part][f"{plan.split}_abnormal"] += plan.label
        parts[plan.body_part]["images"] += n
        for _, box, kind in rows[plan.index]:
            if box is not None:
                findings[kind] = findings.get(kind, 0) + 1
    return SyntheticSummary(root.resolve(), seed, difficulty, max_side, studies, abnormal, images,
                            {s: len(p) for s, p in patients.items()}, parts, dict(sorted(findings.items())),
                            round(seconds, 3), workers, files)
