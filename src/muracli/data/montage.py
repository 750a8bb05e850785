"""A contact sheet of the data: normal and abnormal examples per study type.

One row per body part (MURA's seven, then any other a dataset has, such as a
manifest's ``unknown``), a couple of normal studies then a couple of abnormal
ones (as in figures 2-3 of the MURA thesis), each tile labelled. For a
synthetic dataset the ground-truth finding boxes in
``MURA-v1.1/synthetic_findings.csv`` are outlined, and abnormal examples are
picked among the views that show their finding.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from muracli.data.decode import read_greyscale
from muracli.data.layout import BODY_PARTS
from muracli.errors import DataError, ImageReadError

if TYPE_CHECKING:
    from muracli.data.layout import MuraLayout

TILE = 232  # pixels per example image
GAP = 10
CAPTION = 24
LABEL_WIDTH = 124
HEADER = 84
BACKGROUND = (24, 26, 30)
TILE_BACKGROUND = (8, 8, 8)
TEXT = (232, 232, 232)
MUTED = (150, 155, 165)
NORMAL_COLOUR = (96, 200, 120)
ABNORMAL_COLOUR = (240, 96, 80)
BOX_COLOUR = (255, 200, 40)


def draw_montage(layout: "MuraLayout", out: Path | str, *, seed: int = 0, per_class: int = 2) -> Path:
    """Write a PNG with ``per_class`` normal and abnormal examples per body part; returns its path."""
    if layout.images.empty:
        raise DataError(f"no images listed under {layout.root}", "check the dataset with `mura stats`")
    out = Path(out)
    boxes = _finding_boxes(layout.root / "synthetic_findings.csv")
    rng = np.random.default_rng(seed)
    columns = 2 * per_class
    parts = [*BODY_PARTS, *sorted(set(layout.studies["body_part"]) - set(BODY_PARTS))]
    width = LABEL_WIDTH + columns * (TILE + GAP) + GAP
    row_height = TILE + CAPTION + GAP
    height = HEADER + len(parts) * row_height + GAP
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    title_font, label_font, small_font = _font(22), _font(17), _font(14)

    n_studies = len(layout.studies)
    n_abnormal = int(layout.studies["label"].sum()) if n_studies else 0
    draw.text((GAP + 4, 12), f"{layout.root.name}: examples per study type", fill=TEXT, font=title_font)
    note = f"{n_studies} studies ({n_abnormal} abnormal), {len(layout.images)} images"
    if boxes:
        note += "; boxes: synthetic ground-truth findings"
    draw.text((GAP + 4, 40), note, fill=MUTED, font=small_font)
    x_normal = LABEL_WIDTH + GAP
    x_abnormal = LABEL_WIDTH + GAP + per_class * (TILE + GAP)
    draw.text((x_normal, HEADER - 22), "normal", fill=NORMAL_COLOUR, font=small_font)
    draw.text((x_abnormal, HEADER - 22), "abnormal", fill=ABNORMAL_COLOUR, font=small_font)

    images = layout.images
    for row, part in enumerate(parts):
        top = HEADER + row * row_height
        name = part.removeprefix("XR_").title()
        counts = layout.studies[layout.studies["body_part"] == part]["label"]
        draw.text((GAP + 4, top + TILE // 2 - 22), name, fill=TEXT, font=label_font)
        draw.text((GAP + 4, top + TILE // 2 + 2), f"{int((counts == 0).sum())} normal", fill=MUTED, font=small_font)
        draw.text((GAP + 4, top + TILE // 2 + 20), f"{int((counts == 1).sum())} abnormal", fill=MUTED, font=small_font)
        part_images = images[images["body_part"] == part]
        for label, x0 in ((0, x_normal), (1, x_abnormal)):
            chosen = _pick(part_images[part_images["label"] == label], per_class, rng, boxes if label else None)
            for k in range(per_class):
                x = x0 + k * (TILE + GAP)
                if k >= len(chosen):
                    draw.rectangle((x, top, x + TILE - 1, top + TILE - 1), fill=TILE_BACKGROUND)
                    draw.text((x + 12, top + TILE // 2 - 8), "no example", fill=MUTED, font=small_font)
                    continue
                path, abs_path = chosen[k]
                finding = boxes.get(path, [])
                _paste_tile(sheet, abs_path, x, top, finding)
                colour = ABNORMAL_COLOUR if label else NORMAL_COLOUR
                caption = "abnormal" if label else "normal"
                kinds = sorted({kind for kind, _ in finding})
                if kinds:
                    caption += ": " + ", ".join(kinds)
                draw.rectangle((x, top + TILE, x + TILE - 1, top + TILE + 3), fill=colour)
                draw.text((x + 2, top + TILE + 6), _fit_text(draw, caption, small_font, TILE - 4), fill=TEXT,
                          font=small_font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=False)
    return out


def _pick(candidates, n: int, rng: np.random.Generator, boxes: dict | None) -> list[tuple[str, str]]:
    """``n`` images from different studies; abnormal ones from views that show their finding."""
    if candidates.empty:
        return []
    rows = list(zip(candidates["path"], candidates["abs_path"], candidates["study"]))
    if boxes:
        with_box = [r for r in rows if r[0] in boxes]
        rows = with_box or rows
    order = rng.permutation(len(rows))
    chosen, studies = [], set()
    for i in order:
        path, abs_path, study = rows[i]
        if study in studies:
            continue
        studies.add(study)
        chosen.append((path, abs_path))
        if len(chosen) == n:
            break
    return chosen


def _paste_tile(sheet: Image.Image, abs_path: str, x: int, y: int, finding: list) -> None:
    tile = Image.new("RGB", (TILE, TILE), TILE_BACKGROUND)
    try:  # the decoder the cache uses: DICOM (windowed), 16-bit PNG, EXIF orientation
        grey = Image.fromarray(read_greyscale(abs_path))  # uint8 H x W: mode L
    except ImageReadError:
        d = ImageDraw.Draw(tile)
        d.text((12, TILE // 2 - 8), "unreadable image", fill=MUTED, font=_font(14))
        sheet.paste(tile, (x, y))
        return
    scale = min(TILE / grey.width, TILE / grey.height)
    size = (max(int(round(grey.width * scale)), 1), max(int(round(grey.height * scale)), 1))
    shown = grey.resize(size, Image.LANCZOS).convert("RGB")
    ox, oy = (TILE - size[0]) // 2, (TILE - size[1]) // 2
    tile.paste(shown, (ox, oy))
    d = ImageDraw.Draw(tile)
    for _, (x0, y0, x1, y1) in finding:
        d.rectangle((ox + x0 * scale, oy + y0 * scale, ox + x1 * scale, oy + y1 * scale), outline=BOX_COLOUR, width=1)
    sheet.paste(tile, (x, y))


def _finding_boxes(path: Path) -> dict[str, list[tuple[str, tuple[int, int, int, int]]]]:
    """``{image path: [(kind, (x0, y0, x1, y1)), ...]}`` from a synthetic dataset's sidecar CSV."""
    if not path.is_file():
        return {}
    boxes: dict[str, list] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    box = tuple(int(float(row[k])) for k in ("x0", "y0", "x1", "y1"))
                except (KeyError, TypeError, ValueError):
                    continue
                boxes.setdefault(row.get("image", ""), []).append((row.get("kind") or "finding", box))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return boxes


_FONTS: dict[int, ImageFont.ImageFont] = {}


def _font(size: int):
    if size not in _FONTS:
        try:
            _FONTS[size] = ImageFont.load_default(size=size)
        except (TypeError, OSError):  # Pillow without FreeType
            _FONTS[size] = ImageFont.load_default()
    return _FONTS[size]


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
