"""From a scene in millimetres to an 8-bit radiograph: projection, exposure, noise, film.

The pipeline follows the physics loosely and the look of MURA closely:

1. every bone, soft-tissue body and piece of metal is projected to path
   lengths (``shapes``); bones get their trabecular texture, growth plates,
   fracture gaps and lesions here, on their own pixels;
2. attenuation is summed and turned into film density ``1 - exp(-A)``, with
   the auto-ranging of a CR reader (soft tissue and bone land in similar grey
   ranges whatever the limb's thickness) and per-image exposure, gamma and
   edge enhancement;
3. system blur, quantum mottle and film grain, then the things around the
   patient: collimator shutters and a lead L/R marker.

Randomness comes only from the generator passed in, so a view is a pure
function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from muracli.synthetic.anatomy import Bone, Scene
from muracli.synthetic.shapes import Blob, Box, Paths, Transform, Tube, rasterise_union, shapes_bbox


@dataclass
class Band:
    """A lucent line across a bone (growth plate, undisplaced fracture), in pixels."""

    point: np.ndarray
    normal: np.ndarray  # unit vector across the line
    width: float
    strength: float
    wave: float = 0.0  # amplitude of the line's waviness, pixels
    length: float | None = None  # limit along the line (None: across the whole bone)


@dataclass
class Break:
    """A displaced fracture: the fragment on the ``normal`` side moves by ``shift`` and turns by ``angle``."""

    point: np.ndarray
    normal: np.ndarray
    shift: np.ndarray
    angle: float
    gap: float
    wave: float = 0.0  # amplitude of the fracture line's irregularity, pixels
    phase: float = 0.0
    period: float = 10.0  # of the irregularity, pixels
    extent: tuple[float, float, float, float] | None = None  # set by the renderer: the fracture line's box


@dataclass
class Hole:
    """An elliptical change of density inside a bone: < 0 lucent, > 0 sclerotic, plus a sclerotic rim."""

    blob: Blob
    change: float
    rim: float = 0.0
    ragged: float = 0.0  # 0 sharp margin ... 1 moth-eaten


@dataclass
class Edits:
    """What a finding (or a normal variant) changes in one view, in pixels."""

    bands: dict[str, list[Band]] = field(default_factory=dict)
    holes: dict[str, list[Hole]] = field(default_factory=dict)
    breaks: dict[str, Break] = field(default_factory=dict)
    bones: list[Bone] = field(default_factory=list)  # extra bone (osteophytes, periosteal new bone), in mm
    metal: list = field(default_factory=list)  # in mm
    soft: list = field(default_factory=list)  # (shape in mm, density): swelling, soft-tissue masses
    cast: list = field(default_factory=list)  # (shape in mm, density): a plaster or fibreglass cast


@dataclass(frozen=True)
class Exposure:
    """Per-image film settings."""

    soft: float  # attenuation of the thickest soft tissue
    bone: float  # attenuation added by a typical bone rim
    gamma: float
    background: float
    white: float
    noise: float
    grain: float
    sharpen: float
    blur: float

    @classmethod
    def draw(cls, rng: np.random.Generator, noise_scale: float = 1.0) -> "Exposure":
        return cls(
            soft=float(rng.uniform(0.3, 0.55)),
            bone=float(rng.uniform(0.9, 1.5)),
            gamma=float(rng.uniform(0.85, 1.25)),
            background=float(np.clip(rng.gamma(2.0, 0.02), 0.0, 0.16)),
            white=float(rng.uniform(0.86, 0.98)),
            noise=float(rng.uniform(0.012, 0.035) * noise_scale),
            grain=float(rng.uniform(0.004, 0.018) * noise_scale),
            sharpen=float(rng.uniform(0.2, 1.0)),
            blur=float(rng.uniform(0.2, 0.9)),
        )


def render(scene: Scene, tf: Transform, size: tuple[int, int], rng: np.random.Generator, exposure: Exposure,
           edits: Edits | None = None) -> np.ndarray:
    """The film density in [0, 1] (float32, H x W) before collimation and marker."""
    height, width = size
    edits = edits or Edits()
    s = tf.scale
    # Soft tissue is smooth: project it at a third of the resolution and scale it up.
    step = 3
    small = (-(-height // step), -(-width // step))
    soft_tf = Transform(s / step, tf.angle, tf.mirror, (tf.offset[0] / step, tf.offset[1] / step))
    soft = _project_low_res(list(scene.soft) + list(edits.soft), soft_tf, small, step, size)
    cast = _project_low_res(edits.cast, soft_tf, small, step, size) if edits.cast else None

    cortex = np.zeros(size, np.float32)
    marrow = np.zeros(size, np.float32)
    spongy = np.zeros(size, np.float32)
    for bone in list(scene.bones.values()) + list(edits.bones):
        _render_bone(bone, tf, size, cortex, marrow, spongy, edits)

    metal = np.zeros(size, np.float32)
    for piece in list(scene.metal) + list(edits.metal):  # overlapping pieces add up (a screw head on a plate)
        piece = piece.transformed(tf)
        sub = Box.around(piece.bbox(1.0), height, width)
        if sub is not None:
            metal[sub.slices] += rasterise_union([piece], sub).outer / s

    texture = _trabecular_texture(size, s, rng)
    bone_mm = cortex + marrow + spongy * texture
    soft_ref = _percentile_of_positive(soft, 99.0)
    bone_ref = _percentile_of_positive(bone_mm, 99.5)
    attenuation = soft * (exposure.soft / soft_ref if soft_ref > 0 else 0.0)
    if cast is not None:
        # Casts are denser than flesh and show the weave of their fabric.
        attenuation += cast * _weave(size, s) * (2.2 * exposure.soft / max(soft_ref, 1e-3))
    attenuation += bone_mm * (exposure.bone / bone_ref if bone_ref > 0 else 0.0)
    attenuation += metal * 2.5  # a millimetre of steel stops more than a centimetre of bone
    density = 1.0 - np.exp(-attenuation)
    top = 1.0 - math.exp(-(exposure.soft + exposure.bone))
    density = np.clip(density / top, 0.0, 1.0) ** exposure.gamma
    density = _blur3(density, exposure.blur)
    if exposure.sharpen > 0:
        # CR readers boost edges (unsharp masking); it gives bones their crisp look and a faint halo.
        density = density + exposure.sharpen * (density - _smooth(density, 6))
    heel = _heel_effect(size, rng)
    film = exposure.background + (exposure.white - exposure.background) * density + heel
    film += _noise(size, rng, exposure, film)
    return film.astype(np.float32)


# Marrow denser than this is cancellous bone and shows the trabecular texture; the
# fatty marrow of a shaft stays smooth.
FATTY_MARROW = 0.15


def _render_bone(bone: Bone, tf: Transform, size, cortex: np.ndarray, marrow: np.ndarray, spongy: np.ndarray,
                 edits: Edits) -> None:
    height, width = size
    s = tf.scale
    shapes = [shape.transformed(tf) for shape in bone.shapes]
    brk = edits.breaks.get(bone.name)
    if brk is None:
        box = Box.around(shapes_bbox(shapes, 1.0), height, width)
        if box is None:
            return
        paths = rasterise_union(shapes, box)
    else:
        broken = _fractured(shapes, s, brk, height, width)
        if broken is None:
            return
        box, paths = broken
    X, Y = box.grid()
    factor = np.ones(box.shape, np.float32)
    bands = list(edits.bands.get(bone.name, ()))
    if bone.physes and isinstance(bone.shapes[0], Tube):
        axis = shapes[0]
        for t in bone.physes:
            point, tangent, radius = axis.at(t)
            bands.append(Band(point, tangent, 1.1 * s, 0.75, wave=0.6 * s))
    for band in bands:
        across = (X - band.point[0]) * band.normal[0] + (Y - band.point[1]) * band.normal[1]
        along = (Y - band.point[1]) * band.normal[0] - (X - band.point[0]) * band.normal[1]
        if band.wave:
            across = across + band.wave * np.sin(along / max(2.5 * s, 1.0))
        line = np.exp(-((across / max(band.width * 0.5, 0.4)) ** 2))
        if band.length is not None:
            line = line * np.clip(1.5 - np.abs(along) / band.length, 0.0, 1.0)
        factor *= (1.0 - band.strength * line).astype(np.float32)
    holes = [Hole(thin.transformed(tf), -strength) for thin, strength in bone.thin]
    holes += edits.holes.get(bone.name, [])
    extra = np.zeros(box.shape, np.float32)
    for hole in holes:
        inside, rim = _hole_profile(hole, X, Y)
        factor *= (1.0 + hole.change * inside).astype(np.float32)
        if hole.rim:
            extra += (hole.rim * rim).astype(np.float32)
    cortex_px = (paths.outer - paths.inner) * factor
    plain = np.minimum(paths.marrow, FATTY_MARROW * paths.inner)
    trabecular = (paths.marrow - plain) * factor
    plain = plain * factor + extra * np.minimum(paths.outer, 2.0 * s * 3.0) * 0.25
    k = bone.density / s
    cortex[box.slices] += cortex_px * k
    marrow[box.slices] += plain * k
    spongy[box.slices] += trabecular * k


def _project_low_res(items, soft_tf: Transform, small, step: int, size) -> np.ndarray:
    """Sum of the path lengths (mm x density) of smooth bodies, projected at 1/step resolution."""
    height, width = size
    layer = np.zeros(small, np.float32)
    for shape, density in items:
        px = shape.transformed(soft_tf)
        box = Box.around(px.bbox(1.0), *small)
        if box is None:
            continue
        layer[box.slices] += rasterise_union([px], box).outer * (density / soft_tf.scale)
    up = Image.fromarray(layer, mode="F").resize((small[1] * step, small[0] * step), Image.BILINEAR)
    return np.asarray(up, dtype=np.float32)[:height, :width]


def _weave(size, scale: float) -> np.ndarray:
    height, width = size
    period = max(3.0 * scale, 3.0)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    a = np.abs(np.sin((xs + ys) * np.float32(math.pi / period)))
    b = np.abs(np.sin((xs - ys) * np.float32(math.pi / period)))
    return np.float32(0.75) + np.float32(0.25) * (a + b)


def _fractured(shapes, tf_scale: float, brk: Break, height: int, width: int) -> tuple[Box, Paths] | None:
    """The bone broken along ``brk``: the far fragment moved and turned, a gap between them.

    The intact bone is rasterised once; the moving fragment is cut out with a soft mask
    and resampled by PIL's affine warp, which is far cheaper than re-projecting it.
    """
    c, s = math.cos(brk.angle), math.sin(brk.angle)
    x0, y0, x1, y1 = shapes_bbox(shapes, 1.0)
    p = brk.point
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) - p
    moved = corners @ np.array([[c, s], [-s, c]]) + p + brk.shift
    box = Box.around((min(x0, moved[:, 0].min()) - 2, min(y0, moved[:, 1].min()) - 2,
                      max(x1, moved[:, 0].max()) + 2, max(y1, moved[:, 1].max()) + 2), height, width)
    if box is None:
        return None
    intact = rasterise_union(shapes, box)
    X, Y = box.grid()
    n = brk.normal
    side = (X - p[0]) * n[0] + (Y - p[1]) * n[1]
    if brk.wave:
        along = ((Y - p[1]) * n[0] - (X - p[0]) * n[1]) * (2 * math.pi / max(brk.period, 2.0))
        side = side + brk.wave * np.sin(along + brk.phase) + 0.4 * brk.wave * np.sin(2.7 * along + 2 * brk.phase)
    soft_edge = 0.7
    keep = np.clip(0.5 - (side + brk.gap / 2) / soft_edge, 0.0, 1.0).astype(np.float32)
    cut = np.clip(0.5 + (side - brk.gap / 2) / soft_edge, 0.0, 1.0).astype(np.float32)
    # Where the line crosses the bone, before and after the fragment moves: the finding's box.
    on_line = (np.abs(side) < max(brk.gap, 1.5)) & (intact.outer > 0.3 * tf_scale)
    ys, xs = np.nonzero(on_line)
    if xs.size:
        pts = np.array([[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.min(), ys.max()], [xs.max(), ys.max()]], float)
        pts += [box.x0 + 0.5, box.y0 + 0.5]
        pts = np.concatenate([pts, (pts - p) @ np.array([[c, s], [-s, c]]) + p + brk.shift])
        brk.extent = (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))
    # Inverse map from output to source, in box-local continuous coordinates.
    bx, by = box.x0, box.y0
    ox, oy = bx - p[0] - brk.shift[0], by - p[1] - brk.shift[1]
    coeffs = (c, s, c * ox + s * oy + p[0] - bx, -s, c, -s * ox + c * oy + p[1] - by)
    size = (box.x1 - box.x0, box.y1 - box.y0)

    def warp(layer: np.ndarray) -> np.ndarray:
        img = Image.fromarray(np.ascontiguousarray(layer * cut, dtype=np.float32), mode="F")
        return np.asarray(img.transform(size, Image.AFFINE, coeffs, resample=Image.BILINEAR), dtype=np.float32)

    return box, Paths(intact.outer * keep + warp(intact.outer), intact.inner * keep + warp(intact.inner),
                      intact.marrow * keep + warp(intact.marrow))


def _hole_profile(hole: Hole, X, Y):
    b = hole.blob
    ca, sa = math.cos(b.direction), math.sin(b.direction)
    dx, dy = X - b.center[0], Y - b.center[1]
    u = (dx * ca + dy * sa) / b.axes[0]
    v = (dy * ca - dx * sa) / b.axes[1]
    r = np.sqrt(u * u + v * v)
    if hole.ragged:
        # A permeative margin: the radius wobbles around the ellipse.
        ang = np.arctan2(v, u)
        r = r * (1.0 + 0.18 * hole.ragged * (np.sin(5 * ang + 1.3) + 0.7 * np.sin(9 * ang + 0.4)))
    edge = 0.12 + 0.25 * hole.ragged
    inside = np.clip((1.0 - r) / edge + 0.5, 0.0, 1.0)
    rim = np.exp(-(((r - 1.0) / 0.16) ** 2))
    return inside, rim


def _percentile_of_positive(a: np.ndarray, q: float) -> float:
    values = a[a > 1e-3]
    if values.size == 0:
        return 0.0
    if values.size > 40000:
        values = values[:: values.size // 40000]
    return float(np.percentile(values, q))


def _upsampled_noise(size, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise with features about ``cell`` pixels across (unit variance, roughly)."""
    height, width = size
    gh, gw = max(int(height / cell) + 2, 2), max(int(width / cell) + 2, 2)
    coarse = rng.standard_normal((gh, gw), dtype=np.float32)
    img = Image.fromarray(coarse, mode="F").resize((width, height), Image.BICUBIC)
    # Bicubic interpolation of unit-variance noise leaves a standard deviation of about 0.81.
    return np.asarray(img, dtype=np.float32) * np.float32(1.0 / 0.81)


def _trabecular_texture(size, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A sponge-like network of bright struts: ridges along the zero crossings of band-passed noise."""
    fine = _upsampled_noise(size, max(1.0 * scale, 2.0), rng)
    coarse = _upsampled_noise(size, max(4.0 * scale, 5.0), rng)
    ridge = np.clip(1.0 - np.abs(fine) / 1.1, 0.0, 1.0)
    return (0.72 + 0.6 * ridge * ridge + 0.08 * coarse).astype(np.float32)


def _blur3(a: np.ndarray, amount: float) -> np.ndarray:
    """A small separable blur; ``amount`` in [0, 1] blends between none and [1 2 1]/4."""
    if amount <= 0:
        return a
    w = 0.25 * amount
    out = a.copy()
    out[:, 1:-1] = (1 - 2 * w) * a[:, 1:-1] + w * (a[:, :-2] + a[:, 2:])
    res = out.copy()
    res[1:-1, :] = (1 - 2 * w) * out[1:-1, :] + w * (out[:-2, :] + out[2:, :])
    return res


def _smooth(a: np.ndarray, factor: int) -> np.ndarray:
    height, width = a.shape
    small = Image.fromarray(a.astype(np.float32), mode="F").resize((max(width // factor, 1), max(height // factor, 1)), Image.BOX)
    return np.asarray(small.resize((width, height), Image.BILINEAR), dtype=np.float32)


def _heel_effect(size, rng: np.random.Generator) -> np.ndarray:
    """The anode heel effect and uneven processing: a gentle gradient across the film."""
    height, width = size
    ang = rng.uniform(0, 2 * math.pi)
    amp = rng.uniform(0.0, 0.05)
    ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    return (amp * (math.cos(ang) * xs + math.sin(ang) * ys)).astype(np.float32)


def _noise(size, rng: np.random.Generator, exposure: Exposure, film: np.ndarray) -> np.ndarray:
    # Quantum mottle grows with attenuation (fewer photons under bone); grain is fixed-pattern.
    white = rng.standard_normal(size, dtype=np.float32)
    mottle = _upsampled_noise(size, 1.6, rng)
    quantum = (0.55 + 0.9 * np.clip(film, 0.0, 1.0)) * (exposure.noise * 0.6 * white + exposure.noise * 0.8 * mottle)
    return quantum + exposure.grain * mottle


# --- the things around the patient --------------------------------------------------------

def collimate(film: np.ndarray, rng: np.random.Generator,
              keep: tuple[int, int, int, int] | None) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Collimator shutters: bands along some edges that the beam never reached.

    ``keep`` (x0, y0, x1, y1) is a box that must stay exposed (the finding).
    On processed CR films the shutters are usually white; sometimes black.
    Returns the film and the exposed area (x0, y0, x1, y1).
    """
    height, width = film.shape
    margins = []
    for side in range(4):
        if rng.random() < 0.55:
            margins.append(rng.uniform(0.02, 0.12))
        else:
            margins.append(0.0)
    x0, y0 = margins[0] * width, margins[1] * height
    x1, y1 = width - margins[2] * width, height - margins[3] * height
    if keep is not None:
        x0, y0 = min(x0, keep[0] - 4), min(y0, keep[1] - 4)
        x1, y1 = max(x1, keep[2] + 4), max(y1, keep[3] + 4)
    tilt = rng.normal(0.0, 0.012)
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    xr = xs + tilt * (ys - height / 2)
    yr = ys - tilt * (xs - width / 2)
    edge = 1.2
    inside = (np.clip((xr - x0) / edge, 0, 1) * np.clip((x1 - xr) / edge, 0, 1)
              * np.clip((yr - y0) / edge, 0, 1) * np.clip((y1 - yr) / edge, 0, 1))
    level = rng.uniform(0.72, 0.95) if rng.random() < 0.7 else rng.uniform(0.0, 0.06)
    shutter = level + rng.normal(0.0, 0.012, size=film.shape).astype(np.float32)
    return (film * inside + shutter * (1.0 - inside)).astype(np.float32), (x0, y0, x1, y1)


_FONT_CACHE: dict[int, ImageFont.ImageFont] = {}


def _font(size: int):
    if size not in _FONT_CACHE:
        try:
            _FONT_CACHE[size] = ImageFont.load_default(size=size)
        except (TypeError, OSError):  # Pillow built without FreeType: the bitmap font
            _FONT_CACHE[size] = ImageFont.load_default()
    return _FONT_CACHE[size]


def lead_marker(film: np.ndarray, letter: str, rng: np.random.Generator, area: tuple[float, float, float, float],
                avoid: tuple[int, int, int, int] | None) -> np.ndarray:
    """A lead L or R in a corner of the exposed ``area``: a bright letter, sometimes in a frame."""
    height, width = film.shape
    glyph = max(int(min(height, width) * rng.uniform(0.05, 0.085)), 8)
    pad = glyph // 3
    tile = Image.new("L", (glyph * 2, glyph * 2), 0)
    draw = ImageDraw.Draw(tile)
    font = _font(glyph)
    bbox = draw.textbbox((0, 0), letter, font=font)
    tx = (tile.width - (bbox[2] - bbox[0])) / 2 - bbox[0]
    ty = (tile.height - (bbox[3] - bbox[1])) / 2 - bbox[1]
    draw.text((tx, ty), letter, fill=255, font=font, stroke_width=max(glyph // 14, 1), stroke_fill=255)
    if rng.random() < 0.35:
        draw.rectangle((tx + bbox[0] - pad, ty + bbox[1] - pad, tx + bbox[2] + pad, ty + bbox[3] + pad),
                       outline=255, width=max(glyph // 12, 1))
    tile = tile.rotate(float(rng.normal(0, 8)), resample=Image.BILINEAR)
    mask = np.asarray(tile, np.float32) / 255.0
    th, tw = mask.shape
    x0, y0, x1, y1 = area
    corners = [(x0 + 2, y0 + 2), (x1 - tw - 2, y0 + 2), (x0 + 2, y1 - th - 2), (x1 - tw - 2, y1 - th - 2)]
    order = rng.permutation(4)
    for idx in order:
        cx, cy = corners[idx]
        cx = int(np.clip(cx + rng.uniform(0, 0.05) * width * (1 if idx % 2 == 0 else -1), 0, width - tw))
        cy = int(np.clip(cy + rng.uniform(0, 0.04) * height * (1 if idx < 2 else -1), 0, height - th))
        if avoid is None or not (cx < avoid[2] and cx + tw > avoid[0] and cy < avoid[3] and cy + th > avoid[1]):
            break
    region = film[cy:cy + th, cx:cx + tw]
    m = mask[: region.shape[0], : region.shape[1]]
    level = rng.uniform(0.9, 1.0)
    film[cy:cy + th, cx:cx + tw] = region * (1 - m) + level * m
    return film


def to_uint8(film: np.ndarray) -> np.ndarray:
    return np.clip(film * 255.0 + 0.5, 0, 255).astype(np.uint8)
