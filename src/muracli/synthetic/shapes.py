"""Projected path lengths of simple solids: the geometry under every synthetic radiograph.

An X-ray image records, per pixel, how much matter the beam crossed. For a
bone modelled as a solid of revolution with a hollow medullary canal the
projection has a closed form: the beam crosses ``2*sqrt(R^2 - d^2)`` of the
outer surface and ``2*sqrt(r^2 - d^2)`` of the canal at distance ``d`` from
the axis. Their difference (the cortex) is longest just inside the canal's
edge, which is why real long bones show a bright cortical rim around a darker
shaft; nothing has to be painted.

Two solids cover the skeleton:

* ``Tube``: a bent axis (polyline) with a radius, cortex thickness and marrow
  density at each vertex, closed by half-ellipsoid caps: long bones,
  phalanges, the clavicle, soft tissue, plates and screws.
* ``Blob``: a (super-)ellipsoid with a shell: carpal bones, the humeral head,
  condyles, sesamoids.

Shapes are described in millimetres in the anatomy's frame, mapped to pixels
by a similarity ``Transform`` and rasterised on axis-aligned boxes of the
canvas only, so a small bone costs a few thousand pixels, not the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Transform:
    """``pixel = scale * R(angle) * diag(mirror, 1) * mm + offset``."""

    scale: float
    angle: float = 0.0  # radians
    mirror: bool = False
    offset: tuple[float, float] = (0.0, 0.0)

    @property
    def matrix(self) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        m = np.array([[c, -s], [s, c]]) * self.scale
        if self.mirror:
            m = m @ np.diag([-1.0, 1.0])
        return m

    def points(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        return pts @ self.matrix.T + np.asarray(self.offset)

    def point(self, p) -> np.ndarray:
        return self.points(np.asarray(p))[0]

    def vector(self, v) -> np.ndarray:
        return np.asarray(v, dtype=np.float64) @ self.matrix.T

    def turn(self, radians: float) -> float:
        """An in-plane rotation in the anatomy's frame, seen in the image."""
        return -radians if self.mirror else radians


@dataclass
class Tube:
    points: np.ndarray  # (N, 2) axis vertices
    radii: np.ndarray  # (N,)
    cortex: np.ndarray  # (N,) cortical thickness; 0 = solid homogeneous body
    marrow: np.ndarray  # (N,) density of the canal's content relative to cortex
    caps: tuple[float, float] = (0.0, 0.0)  # half-lengths of the end caps (0: round)
    depth: float = 1.0  # depth/width ratio of the cross-section (flat bones < 1)

    def transformed(self, tf: Transform) -> "Tube":
        s = tf.scale
        return Tube(tf.points(self.points), self.radii * s, self.cortex * s, self.marrow,
                    (self.caps[0] * s, self.caps[1] * s), self.depth)

    def bbox(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        reach = float(max(self.radii.max(), *self.caps)) + margin
        lo, hi = self.points.min(axis=0), self.points.max(axis=0)
        return lo[0] - reach, lo[1] - reach, hi[0] + reach, hi[1] + reach

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Point, unit tangent and radius at arc-length fraction ``t`` of the axis."""
        seg = np.diff(self.points, axis=0)
        lengths = np.hypot(seg[:, 0], seg[:, 1])
        cum = np.concatenate([[0.0], np.cumsum(lengths)])
        target = float(np.clip(t, 0.0, 1.0)) * cum[-1]
        i = int(np.clip(np.searchsorted(cum, target, side="right") - 1, 0, len(seg) - 1))
        f = (target - cum[i]) / max(lengths[i], 1e-9)
        point = self.points[i] + f * seg[i]
        radius = float(self.radii[i] + f * (self.radii[i + 1] - self.radii[i]))
        return point, seg[i] / max(lengths[i], 1e-9), radius

    @property
    def length(self) -> float:
        seg = np.diff(self.points, axis=0)
        return float(np.hypot(seg[:, 0], seg[:, 1]).sum())


@dataclass
class Blob:
    center: np.ndarray  # (2,)
    axes: tuple[float, float]  # semi-axes along ``direction`` and across it
    direction: float = 0.0  # radians
    depth: float | None = None  # semi-axis along the beam (default: the smaller one)
    cortex: float = 0.0
    marrow: float = 0.5
    power: float = 2.0  # > 2 gives squarer carpal bones

    def transformed(self, tf: Transform) -> "Blob":
        s = tf.scale
        u = tf.vector([math.cos(self.direction), math.sin(self.direction)])
        return Blob(tf.point(self.center), (self.axes[0] * s, self.axes[1] * s), math.atan2(u[1], u[0]),
                    None if self.depth is None else self.depth * s, self.cortex * s, self.marrow, self.power)

    def bbox(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        r = max(self.axes) * (1.2 if self.power > 2 else 1.0) + margin
        return self.center[0] - r, self.center[1] - r, self.center[0] + r, self.center[1] + r


Shape = Tube | Blob


@dataclass
class Paths:
    """Outer path length, canal path length and marrow content on a box of pixels."""

    outer: np.ndarray
    inner: np.ndarray
    marrow: np.ndarray

    @classmethod
    def zeros(cls, shape) -> "Paths":
        return cls(np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32))

    def union(self, other: "Paths", where=(slice(None), slice(None))) -> None:
        np.maximum(self.outer[where], other.outer, out=self.outer[where])
        np.maximum(self.inner[where], other.inner, out=self.inner[where])
        np.maximum(self.marrow[where], other.marrow, out=self.marrow[where])


def tube_segment_paths(tube: Tube, i: int, X: np.ndarray, Y: np.ndarray) -> Paths:
    """Paths of segment ``i`` of ``tube`` at pixel coordinates ``X``, ``Y`` (broadcastable)."""
    f32 = np.float32
    p0, p1 = tube.points[i], tube.points[i + 1]
    d = p1 - p0
    length = max(math.hypot(d[0], d[1]), 1e-6)
    ux, uy = f32(d[0] / length), f32(d[1] / length)
    dx, dy = X - f32(p0[0]), Y - f32(p0[1])
    along = dx * ux + dy * uy
    perp2 = dy * ux - dx * uy
    perp2 *= perp2
    t = np.clip(along * f32(1.0 / length), f32(0.0), f32(1.0))
    r0, r1 = tube.radii[i], tube.radii[i + 1]
    c0, c1 = tube.cortex[i], tube.cortex[i + 1]
    m0, m1 = tube.marrow[i], tube.marrow[i + 1]
    r = f32(r0) + f32(r1 - r0) * t
    c = f32(c0) + f32(c1 - c0) * t
    beyond = along - f32(length) * t  # < 0 before the start, > 0 after the end, else 0
    r_in = np.maximum(r - c, f32(0.0))
    last = len(tube.points) - 2
    ex_out = beyond
    ex_in = beyond
    # Half-ellipsoid caps: scale the axial overshoot so the cap reaches ``cap``.
    for end, cap, mask in ((0, tube.caps[0], i == 0), (1, tube.caps[1], i == last)):
        if not mask or cap <= 0:
            continue
        side = beyond < 0 if end == 0 else beyond > 0
        r_end = tube.radii[0] if end == 0 else tube.radii[-1]
        c_end = tube.cortex[0] if end == 0 else tube.cortex[-1]
        k_out = f32(r_end / cap)
        k_in = f32(max(r_end - c_end, 1e-3) / max(cap - c_end, 1e-3))
        ex_out = np.where(side, beyond * k_out, ex_out)
        ex_in = np.where(side, beyond * k_in, ex_in)
    q = r * r - perp2 - ex_out * ex_out
    outer = np.sqrt(np.maximum(q, f32(0.0)))
    outer *= f32(2.0 * tube.depth)
    if c0 == 0 and c1 == 0:
        inner = outer
    else:
        depth_in = np.where(r_in > 0, (f32(tube.depth) * r - c) / np.maximum(r_in, f32(1e-6)), f32(0.0))
        inner = np.sqrt(np.maximum(r_in * r_in - perp2 - ex_in * ex_in, f32(0.0)))
        inner *= f32(2.0) * depth_in
    if m0 == m1:
        marrow = inner * f32(m0)
    else:
        marrow = inner * (f32(m0) + f32(m1 - m0) * t)
    return Paths(outer, inner, marrow)


def blob_paths(blob: Blob, X: np.ndarray, Y: np.ndarray) -> Paths:
    ca, sa = math.cos(blob.direction), math.sin(blob.direction)
    dx, dy = X - blob.center[0], Y - blob.center[1]
    u = dx * ca + dy * sa
    v = dy * ca - dx * sa
    a, b = blob.axes
    depth = blob.depth if blob.depth is not None else min(a, b)

    def cap(a_, b_, c_):
        if a_ <= 0 or b_ <= 0 or c_ <= 0:
            return np.zeros(np.broadcast_shapes(np.shape(u), np.shape(v)), np.float64)
        if blob.power == 2.0:
            q = (u / a_) ** 2 + (v / b_) ** 2
        else:
            q = np.abs(u / a_) ** blob.power + np.abs(v / b_) ** blob.power
        return 2.0 * c_ * np.sqrt(np.maximum(1.0 - q, 0.0))

    outer = cap(a, b, depth).astype(np.float32)
    k = blob.cortex
    inner = cap(a - k, b - k, depth - k).astype(np.float32) if k > 0 else outer
    return Paths(outer, inner, inner * np.float32(blob.marrow))


@dataclass
class Box:
    """An integer pixel box ``[y0, y1) x [x0, x1)`` clipped to the canvas."""

    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def around(cls, bbox, height: int, width: int) -> "Box | None":
        x0, y0, x1, y1 = bbox
        box = cls(max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0),
                  min(int(math.ceil(x1)) + 1, width), min(int(math.ceil(y1)) + 1, height))
        return box if box.x1 > box.x0 and box.y1 > box.y0 else None

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates as a row and a column, for broadcasting."""
        xs = np.arange(self.x0, self.x1, dtype=np.float32)[None, :] + np.float32(0.5)
        ys = np.arange(self.y0, self.y1, dtype=np.float32)[:, None] + np.float32(0.5)
        return xs, ys

    def union(self, other: "Box") -> "Box":
        return Box(min(self.x0, other.x0), min(self.y0, other.y0), max(self.x1, other.x1), max(self.y1, other.y1))


def shapes_bbox(shapes, margin: float = 0.0) -> tuple[float, float, float, float]:
    boxes = np.array([s.bbox(margin) for s in shapes])
    return boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()


def tube_paths(tube: Tube, X: np.ndarray, Y: np.ndarray) -> Paths:
    """All segments of ``tube`` at once (arrays of shape segments x H x W), united by max.

    Fewer, larger numpy calls than segment by segment: the better choice for small bones
    whose box is not much bigger than the bone.
    """
    f32 = np.float32
    p0 = tube.points[:-1].astype(np.float32)
    d = (tube.points[1:] - tube.points[:-1]).astype(np.float32)
    length = np.maximum(np.hypot(d[:, 0], d[:, 1]), f32(1e-6))
    u = d / length[:, None]

    def col(a):
        return np.asarray(a, np.float32)[:, None, None]

    dx, dy = X[None] - col(p0[:, 0]), Y[None] - col(p0[:, 1])
    along = dx * col(u[:, 0]) + dy * col(u[:, 1])
    perp2 = dy * col(u[:, 0]) - dx * col(u[:, 1])
    perp2 *= perp2
    t = np.clip(along / col(length), f32(0.0), f32(1.0))
    radii, cortex, marrow = tube.radii, tube.cortex, tube.marrow
    r = col(radii[:-1]) + col(np.diff(radii)) * t
    c = col(cortex[:-1]) + col(np.diff(cortex)) * t
    beyond = along - col(length) * t
    n = len(length)
    k_start_out, k_start_in = np.ones(n, np.float32), np.ones(n, np.float32)
    k_end_out, k_end_in = np.ones(n, np.float32), np.ones(n, np.float32)
    if tube.caps[0] > 0:
        k_start_out[0] = radii[0] / tube.caps[0]
        k_start_in[0] = max(radii[0] - cortex[0], 1e-3) / max(tube.caps[0] - cortex[0], 1e-3)
    if tube.caps[1] > 0:
        k_end_out[-1] = radii[-1] / tube.caps[1]
        k_end_in[-1] = max(radii[-1] - cortex[-1], 1e-3) / max(tube.caps[1] - cortex[-1], 1e-3)
    before = beyond < 0
    ex_out = beyond * np.where(before, col(k_start_out), col(k_end_out))
    q = r * r - perp2 - ex_out * ex_out
    outer = np.sqrt(np.maximum(q, f32(0.0))).max(axis=0) * f32(2.0 * tube.depth)
    if not cortex.any():
        inner = outer
    else:
        ex_in = beyond * np.where(before, col(k_start_in), col(k_end_in))
        r_in = np.maximum(r - c, f32(0.0))
        depth_in = np.where(r_in > 0, (f32(tube.depth) * r - c) / np.maximum(r_in, f32(1e-6)), f32(0.0))
        inner_all = np.sqrt(np.maximum(r_in * r_in - perp2 - ex_in * ex_in, f32(0.0))) * (f32(2.0) * depth_in)
        inner = inner_all.max(axis=0)
    if np.all(marrow == marrow[0]):
        marrow_px = inner * f32(marrow[0])
    elif not cortex.any():
        marrow_px = (outer[None] * (col(marrow[:-1]) + col(np.diff(marrow)) * t)).max(axis=0)
    else:
        marrow_px = (inner_all * (col(marrow[:-1]) + col(np.diff(marrow)) * t)).max(axis=0)
    return Paths(outer, inner, marrow_px)


# Below this many pixel-segments a tube is projected in one vectorised pass.
VECTORISE_BELOW = 60_000


def rasterise_union(shapes, box: Box) -> Paths:
    """The union of ``shapes`` (already in pixels) on ``box``, each shape only on its own box."""
    out = Paths.zeros(box.shape)
    height, width = box.y1, box.x1
    for shape in shapes:
        if isinstance(shape, Blob):
            sub = Box.around(shape.bbox(1.0), height, width)
            if sub is None:
                continue
            sub = _clip_to(sub, box)
            if sub is None:
                continue
            X, Y = sub.grid()
            out.union(blob_paths(shape, X, Y), _local(sub, box))
            continue
        whole = Box.around(shape.bbox(1.0), height, width)
        whole = None if whole is None else _clip_to(whole, box)
        if whole is None:
            continue
        segments = len(shape.points) - 1
        if whole.shape[0] * whole.shape[1] * segments < VECTORISE_BELOW:
            X, Y = whole.grid()
            out.union(tube_paths(shape, X, Y), _local(whole, box))
            continue
        reach = float(max(shape.radii.max(), *shape.caps)) + 1.0
        for i in range(segments):
            p, q = shape.points[i], shape.points[i + 1]
            sub = Box.around((min(p[0], q[0]) - reach, min(p[1], q[1]) - reach,
                              max(p[0], q[0]) + reach, max(p[1], q[1]) + reach), height, width)
            sub = None if sub is None else _clip_to(sub, box)
            if sub is None:
                continue
            X, Y = sub.grid()
            out.union(tube_segment_paths(shape, i, X, Y), _local(sub, box))
    return out


def _clip_to(sub: Box, box: Box) -> Box | None:
    clipped = Box(max(sub.x0, box.x0), max(sub.y0, box.y0), min(sub.x1, box.x1), min(sub.y1, box.y1))
    return clipped if clipped.x1 > clipped.x0 and clipped.y1 > clipped.y0 else None


def _local(sub: Box, box: Box) -> tuple[slice, slice]:
    return slice(sub.y0 - box.y0, sub.y1 - box.y0), slice(sub.x0 - box.x0, sub.x1 - box.x0)


# --- building blocks in millimetres -------------------------------------------------------

def polyline(start, end, n: int = 9, bow: float = 0.0, ts: np.ndarray | None = None) -> np.ndarray:
    """``n`` points from ``start`` to ``end``, bowed sideways by ``bow`` mm at the middle."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    t = np.linspace(0.0, 1.0, n) if ts is None else np.asarray(ts, float)
    d = end - start
    normal = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9)
    return start + t[:, None] * d + (4.0 * bow * t * (1.0 - t))[:, None] * normal


LONG_BONE_T = np.array([0.0, 0.04, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.96, 1.0])


def long_bone(start, end, *, ends: tuple[float, float], shaft: float, cortex: float = 0.28,
              flare: tuple[float, float] = (0.18, 0.18), bow: float = 0.0, caps: tuple[float, float] | None = None,
              marrow: tuple[float, float] = (0.12, 0.55), ts: np.ndarray = LONG_BONE_T) -> Tube:
    """A tubular bone: flared trabecular ends, a shaft with a thick cortex and a fatty canal.

    ``ends`` are the radii at start and end, ``shaft`` the mid-shaft radius,
    ``cortex`` the mid-shaft cortical thickness as a fraction of ``shaft``.
    """
    t = np.asarray(ts, float)
    g0 = np.clip(1.0 - t / flare[0], 0.0, 1.0) ** 2
    g1 = np.clip(1.0 - (1.0 - t) / flare[1], 0.0, 1.0) ** 2
    radii = shaft + (ends[0] - shaft) * g0 + (ends[1] - shaft) * g1
    # The cortex is thick in the diaphysis and a thin subchondral shell at the ends.
    end_weight = np.clip(np.maximum(np.clip(1.0 - t / (flare[0] * 1.6), 0, 1), np.clip(1.0 - (1.0 - t) / (flare[1] * 1.6), 0, 1)), 0, 1)
    cortex_mm = cortex * shaft * (1.0 - end_weight) + 0.09 * radii * end_weight
    marrow_d = marrow[0] + (marrow[1] - marrow[0]) * end_weight
    if caps is None:
        caps = (ends[0] * 0.55, ends[1] * 0.55)
    return Tube(polyline(start, end, len(t), bow, t), radii, np.minimum(cortex_mm, radii * 0.6), marrow_d, caps)


def solid_tube(points, radii, *, caps=(0.0, 0.0), depth: float = 1.0) -> Tube:
    """A homogeneous body (soft tissue, metal): no canal."""
    points = np.asarray(points, float)
    radii = np.broadcast_to(np.asarray(radii, float), (len(points),)).copy()
    zeros = np.zeros(len(points))
    return Tube(points, radii, zeros, zeros, caps, depth)


def unit(radians: float) -> np.ndarray:
    """Unit vector at ``radians`` from straight up (image y grows downwards)."""
    return np.array([math.sin(radians), -math.cos(radians)])


__all__ = [
    "Blob", "Box", "Paths", "Shape", "Transform", "Tube", "blob_paths", "long_bone", "polyline", "tube_paths",
    "rasterise_union", "shapes_bbox", "solid_tube", "unit",
]
