"""`mura download`: get MURA onto disk (synthetic, a local zip, or a URL)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from muracli.cli import console
from muracli.cli.options import Difficulty, examples

EXAMPLES = examples(
    """
  # 400 synthetic studies into ./data
  mura download --synthetic
  mura download --synthetic --studies 300 --seed 7 --dest /tmp/mura

  # the real MURA, after accepting Stanford's research-use agreement
  mura download --archive ~/Downloads/MURA-v1.1.zip
  mura download --url https://example.org/MURA-v1.1.zip --sha256 HEX
"""
)


def register(app: typer.Typer) -> None:
    app.command(name="download", epilog=EXAMPLES)(download)


def download(
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Generate a synthetic MURA: the real layout, radiograph-like images, known findings.")] = False,
    archive: Annotated[
        Optional[Path], typer.Option("--archive", help="Extract a MURA zip you downloaded (MURA-v1.1.zip).")
    ] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="Download a MURA zip over HTTP(S), resumably.")] = None,
    sha256: Annotated[
        Optional[str], typer.Option("--sha256", help="Expected SHA-256 of the file at --url.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1.0, help="--url: seconds to connect, and without a byte while reading, before a try fails.")
    ] = 30.0,  # muracli.data.download.TIMEOUT_S (importing it would load ssl for every --help)
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="--url: retries in a row that get the file no further before giving up.")
    ] = 5,  # muracli.data.download.RETRIES
    dest: Annotated[
        Optional[Path],
        typer.Option("--dest", help="Where MURA-v1.1/ goes. Default: $MURA_DATA, else ./data.", show_default=False),
    ] = None,
    studies: Annotated[int, typer.Option("--studies", min=1, help="Synthetic: number of studies.")] = 400,
    seed: Annotated[int, typer.Option("--seed", help="Synthetic: random seed (same seed, same bytes).")] = 0,
    difficulty: Annotated[
        Difficulty, typer.Option("--difficulty", help="Synthetic: how subtle the findings are.")
    ] = Difficulty.normal,
    max_side: Annotated[int, typer.Option("--max-side", min=64, help="Synthetic: longest image side in pixels.")] = 512,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing MURA-v1.1/ in --dest.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the resulting breakdown as JSON.")] = False,
) -> None:
    """Get MURA: a synthetic dataset, a local zip, or a resumable HTTP download."""
    from muracli.data.layout import ROOT_NAME, default_data_dir, read_layout
    from muracli.errors import ConfigError, DataError

    chosen = [name for name, given in (("--synthetic", synthetic), ("--archive", archive), ("--url", url)) if given]
    if len(chosen) != 1:
        raise ConfigError(
            "choose exactly one source" + (f" (got {', '.join(chosen)})" if chosen else ""),
            "mura download --synthetic | --archive MURA-v1.1.zip | --url URL",
        )
    if sha256 and not url:
        raise ConfigError("--sha256 only applies to --url", "mura download --url URL --sha256 HEX")
    dest = dest if dest is not None else default_data_dir()
    existing = dest / ROOT_NAME
    if existing.exists() and not force:
        # Checked before a long download or generation, not after it.
        raise DataError(
            f"{existing} already exists",
            "pass --force to replace it, or --dest DIR for another folder; `mura stats` shows what is there",
        )
    started = time.monotonic()

    with console.RichProgress() as progress:
        if synthetic:
            from muracli.synthetic import generate_synthetic

            generate_synthetic(
                dest, studies=studies, seed=seed, difficulty=difficulty.value, max_side=max_side,
                progress=progress, overwrite=force,
            )
        else:
            from muracli.data.archive import extract_mura_archive

            if url:
                from muracli.data.download import download as fetch

                dest.mkdir(parents=True, exist_ok=True)
                archive = fetch(url, dest, sha256=sha256, timeout=timeout, retries=retries, progress=progress,
                                on_retry=lambda notice: console.warn(notice.message))
            extract_mura_archive(archive, dest, progress=progress, overwrite=force)

    layout = read_layout(dest)
    elapsed = time.monotonic() - started
    if json_output:
        from muracli.data.stats import summary

        console.print_json({**summary(layout), "seconds": round(elapsed, 2)})
        return
    from muracli.cli.stats import render_layout

    console.info(f"MURA ready at {layout.root} ({len(layout.images)} images, {elapsed:.1f} s)")
    render_layout(layout)
