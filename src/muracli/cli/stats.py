"""`mura stats`: the data breakdown of a MURA tree."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from muracli.cli import console
from muracli.cli.options import BodyPartOption, DataOption, ManifestOption, examples

if TYPE_CHECKING:
    from muracli.data.layout import MuraLayout

EXAMPLES = examples(
    """
  mura stats                              # ./data or $MURA_DATA
  mura stats --data ~/datasets --json     # for scripts
  mura stats --montage montage.png        # example images per body part
  mura stats --manifest mine/manifest.csv # your own labelled images
  mura stats --body-part XR_WRIST,XR_HAND # those body parts only
"""
)


def register(app: typer.Typer) -> None:
    app.command(name="stats", epilog=EXAMPLES)(stats)


def stats(
    data: DataOption = None,
    manifest: ManifestOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the breakdown as JSON.")] = False,
    montage: Annotated[
        Optional[Path], typer.Option("--montage", help="Also draw example normal/abnormal images per body part into this PNG.")
    ] = None,
    body_part: BodyPartOption = None,
) -> None:
    """Studies (normal/abnormal), images and views per study, per split and body part."""
    from muracli.data.dataset import read_dataset
    from muracli.data.layout import parse_body_parts

    parts = parse_body_parts(body_part)  # a typo fails before the dataset is read
    layout = read_dataset(data, manifest=manifest).restricted(parts)
    if montage is not None:
        from muracli.data.montage import draw_montage

        draw_montage(layout, montage)
    if json_output:
        from muracli.data.stats import summary

        result = summary(layout)
        if montage is not None:
            result["montage"] = str(montage)
        console.print_json(result)
        return
    render_layout(layout)
    if montage is not None:
        console.out.print(f"Montage written to {montage}")


def render_layout(layout: "MuraLayout") -> None:
    """The breakdown table and a summary of the layout's problems."""
    from rich.markup import escape
    from rich.table import Table

    from muracli.data.stats import breakdown

    only = f" ({', '.join(layout.body_parts)} only)" if layout.body_parts else ""
    title = f"Manifest {layout.root}" if layout.kind == "manifest" else f"MURA at {layout.root}"
    console.out.print(escape(title + only), soft_wrap=True)  # a line of its own: a long path is never wrapped
    table = Table()
    for name, justify in [
        ("split", "left"), ("part", "left"), ("patients", "right"), ("normal", "right"),
        ("abnormal", "right"), ("studies", "right"), ("images", "right"), ("views", "right"),
    ]:
        table.add_column(name, justify=justify)
    rows = breakdown(layout)
    for i, row in enumerate(rows.itertuples(index=False)):
        total = row.body_part == "total"
        style = "bold" if total else None
        last_of_split = i + 1 == len(rows) or rows.iloc[i + 1]["split"] != row.split
        table.add_row(
            row.split, row.body_part, str(row.patients), str(row.normal), str(row.abnormal), str(row.studies),
            str(row.images), f"{row.views_per_study:.2f}", style=style, end_section=last_of_split,
        )
    console.print_whole(table)
    render_problems(layout)


def render_problems(layout: "MuraLayout", limit: int = 10) -> None:
    errors, warnings = layout.errors, layout.warnings
    if not errors and not warnings:
        console.info("Layout checks: no problems found.")
        return
    for problem in (errors + warnings)[:limit]:
        where = f"{problem.path}: " if problem.path else ""
        console.warn(f"[{problem.kind}] {where}{problem.detail}")
    if len(errors) + len(warnings) > limit:
        console.warn(f"... and {len(errors) + len(warnings) - limit} more (see `mura stats --json`)")
    if errors:
        console.warn(
            f"{len(errors)} layout error(s): affected images are left out of preprocessing, training and evaluation"
        )
