"""Building the cache: parallel, resumable, skipping bad images.

How a build runs (``build``):

1. Read the layout, fingerprint it, pick the folder. A valid manifest for the
   same dataset and options means the work is done: return it.
2. Stage: ``.staging/plan.json`` records what is being built; one staging
   array per split ``.staging/<split>.npy`` holds a row for *every* listed
   image, in CSV order, preallocated so a full disk fails up front.
3. Chunks of ``CHUNK_SIZE`` images go to a process pool. A worker decodes and
   fits its images, writes their rows into the staging file at their offset,
   syncs them, and only then writes the chunk's marker
   ``.staging/<split>/<chunk>.json`` (original sizes, skipped images). A chunk
   with a marker is finished; a re-run after a kill does only the others.
   Workers write the pixels themselves so 6.5 MB per chunk never crosses a
   pipe, and the marker is the proof that the rows are on disk.
4. Finalise each split from the markers: the index CSV lists the images that
   decoded, and the pixels are the staging array itself (hard-linked) or,
   when images were skipped, a compacted copy without their rows, so row i of
   the pixels is always row i of the index. This step only reads staging, so
   it can be repeated after a crash.
5. Write ``manifest.json`` last and atomically, then remove ``.staging``.

Every step is a pure function of (dataset, size, fit), so a resumed build is
byte-identical to an uninterrupted one, whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import multiprocessing
import operator
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from muracli import __version__
from muracli.data.cache import (
    CACHE_DIRNAME,
    FORMAT_VERSION,
    INDEX_COLUMNS,
    LOCK_NAME,
    MANIFEST_NAME,
    STAGING_NAME,
    Cache,
    CacheManifest,
    cache_folder_name,
    open_cache,
)
from muracli.data.decode import JUNK_NAMES, MAX_PIXELS, read_greyscale
from muracli.choices import FITS, check_choice
from muracli.data.fit import RESAMPLE, fit_square
from muracli.errors import ConfigError, DataError, ImageReadError, MuraError
from muracli.files import fsync_dir, write_atomic
from muracli.machine import usable_cores

if TYPE_CHECKING:
    from muracli.data.layout import MuraLayout
    from muracli.progress import ProgressFn

CHUNK_SIZE = 64  # images per task: ~0.1-0.3 s of work, small loss on a kill
MIN_SIZE, MAX_SIZE = 16, 4096
_OUR_NAMES = {MANIFEST_NAME, STAGING_NAME, LOCK_NAME}


class PreprocessInterrupted(MuraError):
    """Ctrl-C during a build: finished chunks are kept for the next run."""

    exit_code = 130


@dataclass(frozen=True)
class ChunkJob:
    """One task for a worker: images ``start..stop`` of a split."""

    split: str
    number: int
    start: int
    images: tuple[tuple[str, str], ...]  # (CSV path, absolute path)
    staging: str  # the split's staging .npy
    data_offset: int  # byte offset of row 0 in the staging file
    marker: str
    size: int
    fit: str
    max_pixels: int


@dataclass(frozen=True)
class ChunkResult:
    split: str
    number: int
    images: int
    skipped: int


def process_chunk(job: ChunkJob) -> ChunkResult:
    """Decode and fit one chunk, write its rows, then its marker. Runs in a worker."""
    row_bytes = job.size * job.size
    block = np.zeros((len(job.images), job.size, job.size), np.uint8)
    sizes: list[list[int] | None] = []
    skipped: list[dict[str, Any]] = []
    for i, (rel, abs_path) in enumerate(job.images):
        try:
            img = read_greyscale(abs_path, max_pixels=job.max_pixels)
            block[i] = fit_square(img, job.size, job.fit)
            sizes.append([int(img.shape[1]), int(img.shape[0])])
        except ImageReadError as exc:
            sizes.append(None)
            skipped.append({"row": job.start + i, "path": rel, "reason": exc.reason, "detail": _detail(exc.message, abs_path)})
        except Exception as exc:  # a decoder bug must not stop the job; report it instead
            sizes.append(None)
            skipped.append({"row": job.start + i, "path": rel, "reason": "unreadable",
                            "detail": f"{type(exc).__name__}: {_detail(str(exc), abs_path)}"})
    with open(job.staging, "r+b") as f:
        f.seek(job.data_offset + job.start * row_bytes)
        f.write(block.data)
        f.flush()
        _datasync(f.fileno())
    marker = {"split": job.split, "chunk": job.number, "start": job.start, "stop": job.start + len(job.images),
              "sizes": sizes, "skipped": skipped}
    tmp = f"{job.marker}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(marker, f)
    os.replace(tmp, job.marker)
    return ChunkResult(job.split, job.number, len(job.images), len(skipped))


def _detail(message: str, abs_path: str) -> str:
    # The manifest lists the CSV path beside the detail; keep the detail
    # free of this machine's absolute paths.
    return message.replace(abs_path, os.path.basename(abs_path))


def _datasync(fd: int) -> None:
    sync = getattr(os, "fdatasync", os.fsync)
    try:
        sync(fd)
    except OSError:  # pragma: no cover - filesystems without sync support
        pass


# ----------------------------------------------------------------------------


def build_cache(
    data: str | os.PathLike[str] | None = None,
    *,
    size: int = 320,
    fit: str = "pad",
    out: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: "ProgressFn | None" = None,
    layout: "MuraLayout | None" = None,
    manifest: str | os.PathLike[str] | None = None,
    body_parts: list[str] | None = None,
) -> Cache:
    """Decode, greyscale and fit every listed image once into a cache folder.

    ``data`` is the dataset folder, or ``manifest`` a CSV manifest of images
    (``muracli.data.manifest``), or pass a parsed ``layout``; ``out`` the
    cache folder (default ``default_cache_dir``). ``workers``: processes
    (default every available core; 0 decodes in this process). Progress is
    reported as ``progress("preprocess <split>", done, total)``. ``body_parts``
    keeps only those parts' images (``MuraLayout.restricted``): the manifest
    records them and the default folder's name ends with them.

    A complete cache for the same dataset and options is returned at once
    (``Cache.reused``); an interrupted build resumes where it stopped and
    produces the same bytes as an uninterrupted one. Unreadable images are
    skipped and listed in ``manifest.skipped``; studies left without images in
    ``manifest.dropped_studies``.

    Workers are started with the ``forkserver`` method (``spawn`` where
    there is none), so a script that calls this must do so under
    ``if __name__ == "__main__":``, as with any multiprocessing code.
    """
    from muracli.data.dataset import read_dataset
    from muracli.data.layout import SPLITS

    size, fit = _check_options(size, fit, workers)
    if layout is None:
        layout = read_dataset(data, manifest=manifest)
    layout = layout.restricted(body_parts)
    try:
        fingerprint = layout.fingerprint()
    except OSError as exc:
        raise DataError(f"cannot fingerprint the dataset: {exc}", "check that the dataset folder is complete and readable") from exc
    folder = Path(out) if out is not None else layout.base / CACHE_DIRNAME / cache_folder_name(
        size, fit, fingerprint, layout.body_parts)
    folder = folder.absolute()

    done = _complete_cache(folder, size, fit, fingerprint, explicit=out is not None)
    if done is not None:
        return done
    if layout.images.empty:
        raise DataError(f"the dataset at {layout.root} lists no images that exist on disk", "run `mura stats` to see what is wrong")
    _make_folder(folder, explicit=out is not None)

    with _locked(folder, progress):
        # Another build may have finished while we waited for the lock.
        done = _complete_cache(folder, size, fit, fingerprint, explicit=out is not None)
        if done is not None:
            return done
        plan = _Plan.make(layout, size, fit, fingerprint)
        staging = _prepare_staging(folder, plan)
        _run_chunks(plan, staging, workers, progress)
        manifest = _finalize(folder, staging, plan, layout, SPLITS)
        manifest.write(folder / MANIFEST_NAME)
        shutil.rmtree(staging, ignore_errors=True)
    return Cache(folder, manifest)


def _check_options(size: int, fit: str, workers: int | None) -> tuple[int, str]:
    check_choice(fit, FITS, "fit")
    try:
        size = operator.index(size)  # int, numpy integers; not 320.0
    except TypeError:
        raise ConfigError(f"size must be an integer, got {size!r}") from None
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"size must be from {MIN_SIZE} to {MAX_SIZE} pixels, got {size}")
    if workers is not None and workers < 0:
        raise ConfigError(f"workers must be 0 (in-process) or more, got {workers}")
    return size, fit


def _complete_cache(folder: Path, size: int, fit: str, fingerprint: str, *, explicit: bool) -> Cache | None:
    """The finished cache in ``folder`` if it matches; clears an unusable manifest."""
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    try:
        cache = open_cache(folder)
    except DataError:
        cache = None
    if cache is not None:
        m = cache.manifest
        if (m.size, m.fit, m.fingerprint) == (size, fit, fingerprint):
            shutil.rmtree(folder / STAGING_NAME, ignore_errors=True)  # left by a kill after the manifest
            cache.reused = True
            return cache
        if explicit:
            raise DataError(
                f"{folder} already holds a cache of another dataset or options "
                f"({m.size}px, {m.fit}, fingerprint {m.fingerprint[:12]})",
                "choose another --out folder, or delete that one",
            )
    # An old format or a damaged manifest: rebuild; first make sure nothing trusts the folder.
    manifest_path.unlink()
    fsync_dir(folder)
    return None


def _make_folder(folder: Path, *, explicit: bool) -> None:
    if explicit and folder.is_dir():
        strangers = [p.name for p in folder.iterdir()
                     if p.name not in _OUR_NAMES and not p.name.endswith((".npy", ".csv", ".tmp"))]
        if strangers:
            raise DataError(
                f"--out {folder} is not empty and is not a mura cache (it holds {', '.join(sorted(strangers)[:3])})",
                "give an empty or new folder",
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the cache folder {folder}: {exc.strerror or exc}",
                        "pass --out DIR to put the cache somewhere writable") from exc
    if not os.access(folder, os.W_OK):
        raise DataError(f"the cache folder {folder} is not writable", "pass --out DIR to put the cache somewhere writable")


@contextlib.contextmanager
def _locked(folder: Path, progress: "ProgressFn | None" = None, poll: float = 0.2) -> Iterator[None]:
    """Hold the folder's build lock (POSIX only), waiting for another process that holds it.

    The lock is an ``flock`` on ``.lock``: the kernel releases it when its
    holder exits, however it ends, so a crashed build never blocks a later
    one. While another process builds, the wait is reported as a ``note``
    through ``progress`` (once, then every minute); there is no time limit.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    report = progress or (lambda *a, **k: None)
    with open(folder / LOCK_NAME, "a+b") as handle:
        started = time.monotonic()
        reported = None
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if reported is None or waited - reported >= 60:
                    still = f"still waiting ({waited / 60:.0f} min)" if reported is not None else "waiting"
                    report("cache wait", 0, None,
                           note=f"Another process is building the cache {folder}; {still} for it to finish")
                    reported = waited
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------- the plan


@dataclass
class _Plan:
    size: int
    fit: str
    fingerprint: str
    max_pixels: int
    images: dict[str, list[tuple[str, str]]]  # split -> [(CSV path, absolute path)] in CSV order

    @classmethod
    def make(cls, layout: "MuraLayout", size: int, fit: str, fingerprint: str) -> "_Plan":
        from muracli.data.layout import SPLITS

        images = {}
        for split in SPLITS:
            rows = layout.images[layout.images["split"] == split]
            images[split] = list(zip(rows["path"].tolist(), rows["abs_path"].tolist()))
        return cls(size, fit, fingerprint, MAX_PIXELS, images)

    def header(self) -> dict[str, Any]:
        """What must match for staged work to be reused."""
        return {
            "format_version": FORMAT_VERSION, "size": self.size, "fit": self.fit, "resample": RESAMPLE,
            "fingerprint": self.fingerprint, "chunk_size": CHUNK_SIZE, "max_pixels": self.max_pixels,
            "counts": {split: len(rows) for split, rows in self.images.items()},
        }

    def chunks(self, split: str) -> list[tuple[int, int, int]]:
        n = len(self.images[split])
        return [(number, start, min(start + CHUNK_SIZE, n)) for number, start in enumerate(range(0, n, CHUNK_SIZE))]

    def row_bytes(self) -> int:
        return self.size * self.size


def _prepare_staging(folder: Path, plan: _Plan) -> Path:
    """Reuse matching staged work, or start the staging folder afresh."""
    staging = folder / STAGING_NAME
    plan_path = staging / "plan.json"
    try:
        reusable = json.loads(plan_path.read_text(encoding="utf-8")) == plan.header()
    except (OSError, ValueError):
        reusable = False
    if reusable:
        for split, rows in plan.images.items():
            if _staging_shape(staging / f"{split}.npy") != (len(rows), plan.size, plan.size):
                reusable = False
    if reusable:
        return staging

    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    needed = sum(len(rows) for rows in plan.images.values()) * plan.row_bytes()
    free = shutil.disk_usage(staging).free
    if needed > free:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(
            f"not enough disk space in {folder}: the cache needs {needed / 1e9:.2f} GB, {free / 1e9:.2f} GB are free",
            "free some space or pass --out DIR on a larger disk",
        )
    for split, rows in plan.images.items():
        (staging / split).mkdir()
        array = np.lib.format.open_memmap(staging / f"{split}.npy", mode="w+", dtype=np.uint8,
                                          shape=(len(rows), plan.size, plan.size))
        del array
        _preallocate(staging / f"{split}.npy")
    # plan.json last: a staging folder without it is started afresh.
    write_atomic(plan_path, json.dumps(plan.header(), indent=2).encode("utf-8"))
    return staging


def _staging_shape(path: Path) -> tuple[int, ...] | None:
    try:
        with open(path, "rb") as f:
            shape, _, dtype = _read_header(f)
            expected = f.tell() + int(np.prod(shape))
        return tuple(shape) if dtype == np.uint8 and path.stat().st_size == expected else None
    except (OSError, ValueError):
        return None


def _data_offset(path: Path) -> int:
    with open(path, "rb") as f:
        _read_header(f)
        return f.tell()


def _read_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    major, _ = np.lib.format.read_magic(f)
    if major == 1:
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _preallocate(path: Path) -> None:
    # Reserve the blocks now so a full disk is an error here, not a crash later.
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        import errno

        if exc.errno == errno.ENOSPC:
            raise DataError(f"not enough disk space for {path}", "free some space or pass --out DIR on a larger disk") from exc
    finally:
        os.close(fd)


def _read_marker(path: Path, start: int, stop: int) -> dict[str, Any] | None:
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("start") != start or marker.get("stop") != stop:
        return None
    if not isinstance(marker.get("sizes"), list) or len(marker["sizes"]) != stop - start:
        return None
    return marker


def _marker_path(staging: Path, split: str, number: int) -> Path:
    return staging / split / f"{number:06d}.json"


# ---------------------------------------------------------------- the workers


def _run_chunks(plan: _Plan, staging: Path, workers: int | None, progress: "ProgressFn | None") -> None:
    jobs: list[ChunkJob] = []
    done = {split: 0 for split in plan.images}
    for split, rows in plan.images.items():
        offset = _data_offset(staging / f"{split}.npy") if rows else 0
        for number, start, stop in plan.chunks(split):
            marker = _marker_path(staging, split, number)
            if _read_marker(marker, start, stop) is not None:
                done[split] += stop - start
                continue
            jobs.append(ChunkJob(split, number, start, tuple(rows[start:stop]), str(staging / f"{split}.npy"),
                                 offset, str(marker), plan.size, plan.fit, plan.max_pixels))
    report = progress or (lambda *a, **k: None)
    totals = {split: len(rows) for split, rows in plan.images.items()}
    for split in plan.images:
        report(f"preprocess {split}", done[split], totals[split])

    def finished(result: ChunkResult) -> None:
        done[result.split] += result.images
        report(f"preprocess {result.split}", done[result.split], totals[result.split])

    if not jobs:
        return
    n_workers = min(usable_cores() if workers is None else workers, len(jobs))
    if n_workers == 0 or (workers is None and n_workers == 1):  # one chunk: a pool only adds start-up time
        try:
            for job in jobs:
                finished(process_chunk(job))
        except KeyboardInterrupt:
            raise _interrupted() from None
        return
    _run_pool(jobs, n_workers, finished)


def _run_pool(jobs: list[ChunkJob], n_workers: int, finished: Callable[[ChunkResult], None]) -> None:
    executor = ProcessPoolExecutor(max_workers=n_workers, mp_context=_mp_context(), initializer=_worker_init)
    try:
        # Keep a bounded number of chunks in flight so Ctrl-C stops quickly.
        pending: set = set()
        queue = iter(jobs)
        for job in queue:
            pending.add(executor.submit(process_chunk, job))
            if len(pending) >= 2 * n_workers:
                break
        while pending:
            complete, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in complete:
                finished(future.result())
                job = next(queue, None)
                if job is not None:
                    pending.add(executor.submit(process_chunk, job))
    except KeyboardInterrupt:
        executor.shutdown(wait=True, cancel_futures=True)
        raise _interrupted() from None
    except BrokenProcessPool as exc:
        executor.shutdown(wait=False, cancel_futures=True)
        raise MuraError(
            "a preprocessing worker died (out of memory, or a decoder crashed on a malformed image)",
            "run `mura preprocess` again to resume (--workers 1 uses less memory); from a Python script, "
            "call build_cache under `if __name__ == \"__main__\":`",
        ) from exc
    except OSError as exc:
        executor.shutdown(wait=False, cancel_futures=True)
        raise DataError(f"cannot write the cache: {exc.strerror or exc}", "check free disk space; run again to resume") from exc
    else:
        executor.shutdown(wait=True)


def _interrupted() -> PreprocessInterrupted:
    return PreprocessInterrupted("preprocessing interrupted; finished chunks are kept",
                                 "run the same `mura preprocess` command again to resume")


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group; let the parent decide, so
    # workers finish their chunk instead of printing tracebacks.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


# Imported once by the fork server, inherited by every worker. "__main__"
# spares each worker re-importing the parent's main script (the `mura`
# console script pulls in the whole CLI).
FORKSERVER_PRELOAD = ["__main__", "muracli.data.cache_build", "PIL.Image", "PIL.PngImagePlugin", "PIL.JpegImagePlugin"]


def _mp_context():
    # Not "fork": the parent may hold threads (Rich's refresh thread, torch's
    # pools in `mura demo`), and forking a threaded process can deadlock.
    # forkserver starts one clean process with numpy/Pillow imported and
    # forks the workers from it, which is nearly as cheap as fork.
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


# --------------------------------------------------------------- finalisation


def _finalize(folder: Path, staging: Path, plan: _Plan, layout: "MuraLayout", splits: tuple[str, ...]) -> CacheManifest:
    import pandas as pd

    counts: dict[str, int] = {}
    study_counts: dict[str, int] = {}
    skipped: list[dict[str, str]] = []
    dropped: list[str] = []
    for split in splits:
        rows = layout.images[layout.images["split"] == split].reset_index(drop=True)
        sizes: list[list[int] | None] = []
        for number, start, stop in plan.chunks(split):
            marker = _read_marker(_marker_path(staging, split, number), start, stop)
            if marker is None:  # pragma: no cover - _run_chunks just wrote them all
                raise MuraError(f"chunk {number} of {split} has no marker after processing", "run again to resume")
            sizes.extend(marker["sizes"])
            skipped.extend({"path": s["path"], "reason": s["reason"], "detail": s["detail"]} for s in marker["skipped"])
        keep = [i for i, s in enumerate(sizes) if s is not None]
        index = pd.DataFrame({
            "path": rows["path"].iloc[keep].tolist(),
            "study": rows["study"].iloc[keep].tolist(),
            "patient": rows["patient"].iloc[keep].tolist(),
            "body_part": rows["body_part"].iloc[keep].tolist(),
            "label": rows["label"].iloc[keep].astype("int64").tolist(),
            "view": rows["view"].iloc[keep].astype("int64").tolist(),
            "width": [sizes[i][0] for i in keep],
            "height": [sizes[i][1] for i in keep],
        }, columns=list(INDEX_COLUMNS))
        index_path = folder / f"{split}.csv"
        write_atomic(index_path, index.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        _finalize_pixels(staging / f"{split}.npy", folder / f"{split}.npy", keep, len(sizes), plan.size)

        counts[split] = len(index)
        kept_studies = set(index["study"])
        study_counts[split] = len(kept_studies)
        listed = layout.studies.loc[layout.studies["split"] == split, "study"].tolist()
        dropped.extend(s for s in listed if s not in kept_studies)

    skipped.extend(_layout_skips(layout))
    for problem in layout.problems:
        if problem.kind == "empty_study" and problem.path not in dropped:
            dropped.append(problem.path)
    return CacheManifest(
        format_version=FORMAT_VERSION, size=plan.size, fit=plan.fit, fingerprint=plan.fingerprint,
        source=str(layout.root), counts=counts, study_counts=study_counts, skipped=skipped,
        dropped_studies=dropped, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        mura_version=__version__, resample=RESAMPLE, body_parts=layout.body_parts,
    )


def _layout_skips(layout: "MuraLayout") -> list[dict[str, str]]:
    """Listed images the layout already set aside: missing files and junk rows."""
    out = []
    for problem in layout.problems:
        name = problem.path.rsplit("/", 1)[-1]
        if problem.kind == "missing_file":
            out.append({"path": problem.path, "reason": "missing", "detail": problem.detail})
        elif problem.kind == "malformed_row" and (name.startswith("._") or name in JUNK_NAMES):
            out.append({"path": problem.path, "reason": "junk", "detail": f"{name} is macOS/Windows metadata, not an image"})
    return out


def _finalize_pixels(staging_npy: Path, final: Path, keep: list[int], n_rows: int, size: int) -> None:
    """Make ``final`` hold the kept rows of the staging array, atomically."""
    tmp = final.with_name(f".{final.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    if len(keep) == n_rows:
        try:  # nothing skipped: the staging file is the final array; share its blocks
            os.link(staging_npy, tmp)
        except OSError:  # filesystems without hard links
            shutil.copyfile(staging_npy, tmp)
    else:
        source = np.load(staging_npy, mmap_mode="r")
        target = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(keep), size, size))
        for dst, (src_start, length) in _runs(keep):
            target[dst : dst + length] = source[src_start : src_start + length]
        target.flush()
        del target, source
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)


def _runs(rows: list[int], max_len: int = 256) -> Iterator[tuple[int, tuple[int, int]]]:
    """Consecutive runs of ``rows`` as (destination row, (source row, length)), bounded in length."""
    dst = 0
    i = 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and rows[j] == rows[j - 1] + 1 and j - i < max_len:
            j += 1
        yield dst, (rows[i], j - i)
        dst += j - i
        i = j
