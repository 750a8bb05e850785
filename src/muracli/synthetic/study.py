"""Render all views of one planned study: the patient, the finding, the films.

Every random draw comes from ``SeedSequence(seed, spawn_key=(STUDY_STREAM,
plan.index))`` (and the patient's own stream for body proportions), so a
study renders to the same pixels in any process and in any order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from muracli.synthetic.anatomy import VIEWS, Anatomy, build_scene
from muracli.synthetic.findings import (
    DIFFICULTIES,
    Difficulty,
    Finding,
    draw_finding,
    draw_variants,
    finding_edits,
    finding_mods,
    study_edits,
    variant_edits,
)
from muracli.synthetic.plan import PATIENT_STREAM, STUDY_STREAM, StudyPlan
from muracli.synthetic.radiograph import Edits, Exposure, collimate, lead_marker, render, to_uint8
from muracli.synthetic.shapes import Transform

# Share of MURA's images stored as RGB although they are grey.
RGB_SHARE = 0.06


@dataclass
class RenderedView:
    path: str  # as in the image CSV
    pixels: np.ndarray  # uint8, H x W (grey) or H x W x 3 (RGB)
    box: tuple[int, int, int, int] | None  # the finding in this view, (x0, y0, x1, y1) inclusive pixels
    kind: str | None


def draw_anatomy(seed: int, patient: int, part: str) -> Anatomy:
    """A patient's build, shared by all their studies."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(PATIENT_STREAM, patient)))
    child = bool(rng.random() < 0.12)
    elderly = not child and bool(rng.random() < 0.3)
    return Anatomy(
        width=float(rng.uniform(0.88, 1.1) * (0.85 if child else 1.0)),
        cortex=float(rng.uniform(0.9, 1.15) * (0.7 if elderly else 1.0)),
        density=float(rng.uniform(0.85, 1.1) * (0.8 if elderly else 1.0)),
        soft=float(rng.uniform(0.8, 1.25)),
        child=child,
        digit=int(rng.integers(2, 6)),
        spread=float(rng.uniform(0.7, 1.3)),
    )


def render_study(plan: StudyPlan, *, seed: int, difficulty: str | Difficulty = "normal",
                 max_side: int = 512) -> list[RenderedView]:
    level = DIFFICULTIES[difficulty] if isinstance(difficulty, str) else difficulty
    streams = np.random.SeedSequence(seed, spawn_key=(STUDY_STREAM, plan.index)).spawn(1 + plan.n_views)
    rng = np.random.default_rng(streams[0])
    part = plan.body_part
    anat = draw_anatomy(seed, plan.patient, part)
    left = bool(rng.random() < 0.5)
    finding: Finding | None = draw_finding(part, plan.finding, level, rng) if plan.label and plan.finding else None
    probe = build_scene(part, VIEWS[part][0], anat, {}, np.random.default_rng(0))
    variants = draw_variants(part, level, list(probe.bones), rng)

    views = []
    for i, view_index in enumerate(plan.views):
        vrng = np.random.default_rng(streams[1 + i])
        view = VIEWS[part][view_index]
        view = replace(view, roll=view.roll + float(vrng.normal(0, 6)), flex=max(view.flex + float(vrng.normal(0, 8)), 0.0))
        shows = finding is not None and plan.visible[i]
        scene = build_scene(part, view, anat, finding_mods(finding, part) if shows else {}, vrng)
        height, width = _film_size(scene.frame, max_side, vrng)
        tf = _framing(scene.frame, height, width, vrng, left)
        edits = Edits()
        study_edits(finding, scene, edits)
        box = finding_edits(finding, scene, view, tf, edits) if shows else None
        for variant in variants:
            variant_edits(variant, scene, tf, edits)
        film = render(scene, tf, (height, width), vrng, Exposure.draw(vrng, level.noise), edits)
        for brk in edits.breaks.values():  # the renderer knows where the fracture line crosses the bone
            if brk.extent is not None:
                pad = 0.15 * (brk.extent[2] - brk.extent[0] + brk.extent[3] - brk.extent[1]) / 2 + 3.0
                box = (brk.extent[0] - pad, brk.extent[1] - pad, brk.extent[2] + pad, brk.extent[3] + pad)
        pixel_box = _clip_box(box, height, width)
        area = (0.0, 0.0, float(width), float(height))
        if vrng.random() < 0.4:
            film, area = collimate(film, vrng, pixel_box)
        film = lead_marker(film, "L" if left else "R", vrng, area, pixel_box)
        pixels = to_uint8(film)
        if vrng.random() < RGB_SHARE:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        views.append(RenderedView(plan.image_path(i), pixels, pixel_box, finding.kind if pixel_box and finding else None))
    return views


def _film_size(frame, max_side: int, rng: np.random.Generator) -> tuple[int, int]:
    """MURA-like film sizes: mostly ``max_side`` on the long side, portrait for long limbs."""
    _, _, fw, fh = frame
    long_side = max_side if rng.random() < 0.8 else int(max_side * rng.uniform(0.6, 1.0))
    aspect = fh / fw
    if aspect > 1.15:
        portrait = rng.random() < 0.92
        short = long_side * rng.uniform(0.62, 0.86)
    else:
        portrait = rng.random() < 0.6
        short = long_side * rng.uniform(0.75, 1.0)
    short = max(int(round(short)), 16)
    long_side = max(long_side, 16)
    return (long_side, short) if portrait else (short, long_side)


def _framing(frame, height: int, width: int, rng: np.random.Generator, mirror: bool) -> Transform:
    cx, cy, fw, fh = frame
    base = 0.0
    if (width > height) != (fw > fh) and max(fw, fh) > 1.15 * min(fw, fh):
        base = math.pi / 2 * (1 if rng.random() < 0.5 else -1)
        fw, fh = fh, fw
    if rng.random() < 0.04:
        base += math.pi  # now and then a film is hung upside down
    scale = min(width / fw, height / fh) * rng.uniform(0.86, 1.04)
    angle = base + math.radians(float(np.clip(rng.normal(0.0, 6.0), -15.0, 15.0)))
    probe = Transform(scale, angle, mirror)
    centre = probe.point((cx, cy))
    offset = (width / 2 - centre[0] + rng.normal(0, 0.025) * width, height / 2 - centre[1] + rng.normal(0, 0.025) * height)
    return Transform(scale, angle, mirror, (float(offset[0]), float(offset[1])))


def _clip_box(box, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The box in whole pixels inside the film; None when most of the finding lies outside it."""
    if box is None:
        return None
    x0, y0, x1, y1 = box
    cx0, cy0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
    cx1, cy1 = min(math.ceil(x1), width - 1), min(math.ceil(y1), height - 1)
    if cx1 - cx0 < 3 or cy1 - cy0 < 3:
        return None
    full = max((x1 - x0) * (y1 - y0), 1e-6)
    if (cx1 - cx0) * (cy1 - cy0) < 0.4 * full:
        return None
    return int(cx0), int(cy0), int(cx1), int(cy1)
