"""`mura preprocess`: decode and resize every image once into the cache."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from muracli.cli import console
from muracli.cli.options import BodyPartOption, DataOption, Fit, ManifestOption, examples

if TYPE_CHECKING:
    from muracli.data.cache import Cache

MAX_SKIPPED_ROWS = 30

EPILOG = examples("""
    mura preprocess                       # ./data or $MURA_DATA, 320 px, pad
    mura preprocess --data ~/datasets --size 224 --fit stretch
    mura preprocess --out /scratch/mura-320 --workers 8
    mura preprocess --body-part XR_WRIST  # a cache of wrists only
    mura preprocess --json | jq .counts
    mura preprocess --manifest mine/manifest.csv --size 224
""") + (
    "\n\nThe cache goes to <data>/mura-cache/<size>px-<fit>-<fingerprint>/ (with --manifest: beside the "
    "manifest) unless --out is given; a changed "
    "dataset or other options make a new folder. Run the same command again after an interruption to resume. "
    'Unreadable images are skipped and listed (manifest.json, "skipped").'
)


def register(app: typer.Typer) -> None:
    app.command(name="preprocess", epilog=EPILOG)(preprocess)


def preprocess(
    data: DataOption = None,
    manifest: ManifestOption = None,
    size: Annotated[int, typer.Option("--size", min=16, max=4096, help="Side of the square images, in pixels.")] = 320,
    fit: Annotated[
        Fit,
        typer.Option("--fit", help="pad: keep the aspect ratio, pad with black; stretch: resize both sides "
                     "(the MURA paper); crop: fill the square, cut the centre."),
    ] = Fit.pad,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Cache folder. Default: <data>/mura-cache/<size>px-<fit>-<fingerprint>/.",
                     show_default=False),
    ] = None,
    workers: Annotated[
        Optional[int],
        typer.Option("--workers", min=0, help="Worker processes (default: every core; 0 = in this process).",
                     show_default=False),
    ] = None,
    body_part: BodyPartOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Decode, convert to greyscale and resize every image once into a memory-mapped cache.

    Runs in parallel, resumes after an interruption, and skips (and reports)
    unreadable images instead of stopping.
    """
    from muracli.data.cache_build import build_cache
    from muracli.data.layout import parse_body_parts

    parts = parse_body_parts(body_part)
    started = time.perf_counter()
    with console.RichProgress() as progress:
        cache = build_cache(data, manifest=manifest, size=size, fit=fit.value, out=out, workers=workers,
                            progress=progress, body_parts=parts)
    seconds = time.perf_counter() - started

    if json_output:
        sys.stdout.write(json.dumps(_summary(cache, seconds), indent=2) + "\n")
        return
    _render(cache, seconds)


def _summary(cache: "Cache", seconds: float) -> dict:
    m = cache.manifest
    return {
        "cache": str(cache.path),
        "reused": cache.reused,
        "size": m.size,
        "fit": m.fit,
        "fingerprint": m.fingerprint,
        "body_parts": m.body_parts,
        "counts": m.counts,
        "study_counts": m.study_counts,
        "skipped": m.skipped,
        "dropped_studies": m.dropped_studies,
        "seconds": round(seconds, 3),
    }


def _render(cache: "Cache", seconds: float) -> None:
    from rich.markup import escape
    from rich.table import Table

    m = cache.manifest
    if cache.reused:
        console.info("The cache is already complete; nothing to do.")
    table = Table(title=None, show_edge=False, box=None, pad_edge=False)
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("studies", justify="right")
    for split, n in m.counts.items():
        table.add_row(split, f"{n:,}", f"{m.study_counts.get(split, 0):,}")
    total = sum(m.counts.values())
    console.out.print(f"Cache: [bold]{escape(str(cache.path))}[/]")
    console.out.print(table)
    rate = "" if cache.reused or seconds <= 0 else f", {total / seconds:,.0f} images/s"
    only = f" of {', '.join(m.body_parts)}" if m.body_parts else ""
    console.out.print(f"{m.size}x{m.size} px, fit {m.fit}; {total:,} images{only} in {seconds:.1f} s{rate}")

    if m.skipped:
        dropped = f"; {len(m.dropped_studies)} studies left without images were dropped" if m.dropped_studies else ""
        console.warn(f"{len(m.skipped)} images were skipped and are not in the cache{dropped}")
        skipped = Table(show_edge=False, box=None, pad_edge=False)
        skipped.add_column("skipped image", overflow="fold")
        skipped.add_column("reason")
        skipped.add_column("detail", overflow="fold")
        for entry in m.skipped[:MAX_SKIPPED_ROWS]:
            skipped.add_row(escape(entry["path"]), escape(entry["reason"]), escape(entry.get("detail", "")))
        console.out.print(skipped)
        if len(m.skipped) > MAX_SKIPPED_ROWS:
            console.out.print(f"... and {len(m.skipped) - MAX_SKIPPED_ROWS} more; all are listed in "
                              f"{escape(str(cache.path / 'manifest.json'))}")
    elif m.dropped_studies:
        console.warn(f"{len(m.dropped_studies)} labelled studies have no images and were dropped")
