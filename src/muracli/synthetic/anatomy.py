"""One bone arrangement per MURA study type, in millimetres.

Each builder lays out a right limb as seen on a standard projection (AP/PA,
oblique, lateral), long axis vertical, with image y growing downwards, and
returns a ``Scene``: named bones (so a finding can be placed on "radius" at
70% of its length in every view of a study), soft tissue, joints (for
arthritis and dislocations) and the field of view to frame. Views differ by
``roll`` (rotation about the limb's long axis: 0 = AP/PA, 90 = lateral),
which brings paired bones together and bends flexed joints into view.

Dimensions follow adult anatomy loosely; the point is a recognisable
silhouette at a glance, not an atlas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from muracli.synthetic.shapes import Blob, Shape, Tube, long_bone, polyline, solid_tube, unit


@dataclass(frozen=True)
class Anatomy:
    """The patient in one study: proportions shared by all its views."""

    width: float = 1.0  # bone width factor
    cortex: float = 1.0  # cortical thickness factor (thin in the elderly)
    density: float = 1.0  # mineral density (osteopenia < 1)
    soft: float = 1.0  # soft-tissue thickness factor
    child: bool = False  # open growth plates
    digit: int = 3  # the finger of a finger study (2 index ... 5 little)
    spread: float = 1.0  # how far the fingers fan out


@dataclass(frozen=True)
class View:
    name: str  # "AP", "PA", "lateral", "oblique", "Y" ...
    roll: float  # degrees about the long axis from the AP/PA position
    flex: float = 0.0  # flexion of the main joint, degrees


@dataclass
class Bone:
    name: str
    shapes: list[Shape]
    density: float = 1.0
    physes: tuple[float, ...] = ()  # growth plates at these fractions of shapes[0] (children)
    thin: list[tuple[Blob, float]] = field(default_factory=list)  # thin areas such as fossae

    @property
    def axis(self) -> Tube:
        """The tube along which findings are placed (the major axis of a blob bone)."""
        first = self.shapes[0]
        if isinstance(first, Tube):
            return first
        u = unit(first.direction + math.pi / 2) * first.axes[0]
        pts = np.array([first.center - u, first.center + u])
        r = np.full(2, first.axes[1])
        return Tube(pts, r, r * 0.15, np.full(2, first.marrow), (0.0, 0.0))


@dataclass
class Joint:
    point: np.ndarray
    bones: tuple[str, str]  # proximal, distal
    axis: np.ndarray  # unit vector from the proximal to the distal bone
    width: float  # extent of the articular surface, mm


@dataclass
class Scene:
    bones: dict[str, Bone]
    soft: list[tuple[Shape, float]]
    frame: tuple[float, float, float, float]  # centre x, centre y, width, height (mm)
    joints: dict[str, Joint]
    metal: list[Shape] = field(default_factory=list)


VIEWS: dict[str, tuple[View, ...]] = {
    "XR_ELBOW": (View("AP", 0, 5), View("lateral", 90, 90), View("oblique", 45, 15), View("oblique", -40, 10)),
    "XR_FINGER": (View("PA", 0, 5), View("lateral", 90, 25), View("oblique", 45, 15)),
    "XR_FOREARM": (View("AP", 0, 0), View("lateral", 90, 10)),
    "XR_HAND": (View("PA", 0, 5), View("oblique", 45, 20), View("lateral", 90, 25)),
    "XR_HUMERUS": (View("AP", 0, 0), View("lateral", 90, 10)),
    "XR_SHOULDER": (View("AP", 0, 0), View("AP external", 30, 0), View("Y", 90, 0), View("axial", 60, 0)),
    "XR_WRIST": (View("PA", 0, 0), View("lateral", 90, 10), View("oblique", 45, 5)),
}


class Builder:
    def __init__(self, anat: Anatomy):
        self.anat = anat
        self.bones: dict[str, Bone] = {}
        self.soft: list[tuple[Shape, float]] = []
        self.joints: dict[str, Joint] = {}

    def long(self, name: str, p0, p1, *, ends, shaft, cortex=0.28, flare=(0.18, 0.18), bow=0.0,
             cap=(0.45, 0.6), marrow=(0.12, 0.55), physes=(), extra: tuple[Shape, ...] = ()) -> Tube:
        """A tubular bone whose articular surfaces sit at ``p0`` and ``p1``."""
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        w = self.anat.width
        ends_mm = (ends[0] * w, ends[1] * w)
        caps = (ends_mm[0] * cap[0], ends_mm[1] * cap[1])
        u = (p1 - p0) / max(np.hypot(*(p1 - p0)), 1e-9)
        tube = long_bone(p0 + u * caps[0], p1 - u * caps[1], ends=ends_mm, shaft=shaft * w,
                         cortex=cortex * self.anat.cortex, flare=flare, bow=bow, caps=caps, marrow=marrow)
        self.add(name, tube, *extra, physes=physes)
        return tube

    def strut(self, p0, p1, radius: float) -> Tube:
        """A short thick bar of trabecular bone (part of a bone, not a bone of its own)."""
        w = self.anat.width
        return long_bone(np.asarray(p0, float), np.asarray(p1, float), ends=(radius * w, radius * w),
                         shaft=radius * 0.85 * w, cortex=0.22, flare=(0.3, 0.3), marrow=(0.3, 0.55))

    def bar(self, points, radii, *, cortex: float, marrow: float, caps=(0.0, 0.0)) -> Tube:
        """A bent solid of varying thickness with a uniform cortex (condyles, processes)."""
        w = self.anat.width
        pts = np.asarray(points, float)
        r = np.asarray(radii, float) * w
        return Tube(pts, r, np.full(len(pts), cortex * self.anat.cortex), np.full(len(pts), marrow),
                    (caps[0] * w, caps[1] * w))

    def add(self, name: str, *shapes: Shape, physes=(), density: float = 1.0) -> Bone:
        bone = Bone(name, list(shapes), density * self.anat.density, tuple(physes) if self.anat.child else ())
        self.bones[name] = bone
        return bone

    def blob(self, center, axes, direction_deg: float = 0.0, *, cortex=0.9, marrow=0.55, power=2.0, depth=None) -> Blob:
        w = self.anat.width
        return Blob(np.asarray(center, float), (axes[0] * w, axes[1] * w), math.radians(direction_deg),
                    None if depth is None else depth * w, cortex * self.anat.cortex, marrow, power)

    def flesh(self, shape: Shape, density: float = 1.0) -> None:
        self.soft.append((shape, density))

    def limb(self, points, radii, *, depth: float = 0.85, caps=(0.0, 0.0), muscle: float = 0.0) -> None:
        """Soft tissue around a limb segment; ``muscle`` adds a denser core."""
        r = np.asarray(radii, float) * self.anat.soft
        self.flesh(solid_tube(points, r, caps=caps, depth=depth))
        if muscle:
            self.flesh(solid_tube(points, r * 0.72, caps=(caps[0] * 0.7, caps[1] * 0.7), depth=depth), muscle)

    def joint(self, name: str, point, bones: tuple[str, str], axis, width: float) -> None:
        axis = np.asarray(axis, float)
        self.joints[name] = Joint(np.asarray(point, float), bones, axis / max(np.hypot(*axis), 1e-9), width)

    def scene(self, frame) -> Scene:
        return Scene(self.bones, self.soft, frame, self.joints)


# --- fingers and hands ------------------------------------------------------------------

# Phalanx lengths (proximal, middle, distal) and a width factor per digit 2..5.
DIGITS = {2: ((40, 23, 17), 1.0), 3: ((45, 28, 19), 1.04), 4: ((42, 26, 18), 0.96), 5: ((33, 18, 15), 0.84)}
PHALANX_RADII = ((5.4, 3.5, 4.3), (4.6, 2.9, 3.7), (4.0, 2.1, 3.0))
JOINT_NAMES = ("MCP", "PIP", "DIP")


def _ray(b: Builder, digit: int, mcp, angle: float, flexion: tuple[float, float, float], *, scale: float = 1.0,
         prefix: str = "", mods: dict | None = None, gap0: float = 2.4) -> list[np.ndarray]:
    """The three phalanges of a finger from the MCP joint at ``mcp``; returns the joint points."""
    mods = mods or {}
    lengths, wf = DIGITS[digit]
    point = np.asarray(mcp, float)
    direction = angle + flexion[0]
    gaps = (gap0, 2.0, 1.6)
    joints = [point.copy()]
    for k, (length, radii) in enumerate(zip(lengths, PHALANX_RADII)):
        jname = f"{prefix}{JOINT_NAMES[k]}"
        gap = gaps[k] * scale * (mods.get("narrow", {}).get(jname, 1.0))
        shift = mods.get("dislocate", {}).get(jname)
        if shift is not None:
            point = point + np.asarray(shift, float)
            direction += math.copysign(0.25, shift[0] if shift[0] else 1.0)
        start = point + unit(direction) * gap
        end = start + unit(direction) * length * scale
        rb, rs, rh = (r * wf * scale for r in radii)
        name = f"{prefix}{('proximal', 'middle', 'distal')[k]}_phalanx"
        if k == 2:
            tuft = b.blob(end - unit(direction) * rh * 0.8, (rh * 1.05, rh * 0.75), math.degrees(direction),
                          cortex=0.5, marrow=0.5)
            b.long(name, start, end - unit(direction) * rh * 0.6, ends=(rb, rh * 0.7), shaft=rs, cortex=0.3,
                   flare=(0.3, 0.2), cap=(0.35, 0.5), physes=(0.08,), extra=(tuft,))
        else:
            b.long(name, start, end, ends=(rb, rh), shaft=rs, cortex=0.3, flare=(0.3, 0.22), cap=(0.35, 0.55),
                   physes=(0.08,))
        prev = f"{prefix}{('metacarpal', 'proximal_phalanx', 'middle_phalanx')[k]}"
        b.joint(jname, point + unit(direction) * gap / 2, (prev, name), unit(direction), rb * 2)
        point = end
        if k < 2:
            direction += flexion[k + 1]
        joints.append(point.copy())
    return joints


def build_finger(view: View, anat: Anatomy, mods: dict, rng: np.random.Generator) -> Scene:
    b = Builder(anat)
    roll = math.radians(view.roll)
    k = abs(math.cos(roll))
    bend = math.sin(abs(roll))
    flex = math.radians(view.flex)
    digit = anat.digit
    flexion = (0.0, flex * bend * 0.8, flex * bend * 0.5)
    # Metacarpal head at the bottom of the film, the fingertip near the top.
    mc_head = np.array([0.0, 52.0])
    wf = DIGITS[digit][1]
    b.long("metacarpal", mc_head + [1.5, 62], mc_head, ends=(5.0 * wf, 5.4 * wf), shaft=3.7 * wf, cortex=0.32,
           flare=(0.15, 0.25), physes=(0.9,))
    joints = _ray(b, digit, mc_head, flexion[0], flexion, mods=mods)
    tip = joints[-1]
    b.limb(np.array([mc_head + [0, 25], mc_head, joints[1], joints[2], tip - unit(flexion[1] + flexion[2]) * 2]),
           np.array([11.0, 10.0, 8.8, 7.6, 6.6]) * wf, caps=(0.0, 5.0), muscle=0.0)
    b.flesh(Blob(np.array([0.0, 100.0]), (70.0, 42.0), 0.0, 14.0), 1.0)
    # Neighbouring fingers, partly in the field on a PA or oblique film.
    if k > 0.3:
        for side in (-1, 1):
            nd = digit + side
            if nd not in DIGITS:
                nd = digit - side
            offset = side * (17.0 * k + 2.0 + rng.uniform(-1, 2))
            ang = side * 0.09 * anat.spread + rng.normal(0, 0.03)
            head = mc_head + [offset, 2.0 + abs(nd - digit) * 3]
            b.long(f"n{side}_metacarpal", head + [1.5 * side, 62], head, ends=(4.8, 5.2), shaft=3.5, flare=(0.15, 0.25))
            pts = _ray(b, nd, head, ang, (0.0, flexion[1] * 0.6, flexion[2] * 0.6), prefix=f"n{side}_")
            b.limb(np.array([head + [0, 25], head, pts[1], pts[2], pts[3]]), np.array([10.5, 9.5, 8.4, 7.3, 6.4]),
                   caps=(0.0, 5.0))
    cy = (mc_head[1] + tip[1]) / 2 + 4
    return b.scene((0.0, cy, 60.0, 112.0))


CARPALS = {
    # name: (centre, semi-axes along/across the direction, direction deg, squareness)
    "scaphoid": ((-17.0, 63.0), (12.0, 6.3), 55.0, 2.1),
    "lunate": ((-2.5, 67.0), (8.3, 7.3), 0.0, 2.3),
    "triquetrum": ((11.5, 63.5), (7.4, 6.3), 30.0, 2.2),
    "pisiform": ((15.0, 60.0), (4.8, 4.6), 0.0, 2.0),
    "trapezium": ((-24.5, 48.5), (7.8, 6.8), 35.0, 2.4),
    "trapezoid": ((-13.5, 46.5), (5.8, 6.3), 0.0, 2.6),
    "capitate": ((-1.5, 51.5), (6.8, 11.5), 0.0, 2.6),
    "hamate": ((12.0, 50.5), (7.3, 9.8), 10.0, 2.5),
}
# Metacarpals 1..5: base (x, y), angle from vertical (rad), length, radii (base, shaft, head)
METACARPALS = {
    1: ((-30.0, 41.5), -0.62, 44.0, (6.0, 4.0, 5.4)),
    2: ((-13.5, 38.0), -0.09, 66.0, (5.8, 3.7, 5.4)),
    3: ((-1.5, 37.5), -0.01, 63.0, (5.8, 3.7, 5.4)),
    4: ((10.0, 38.5), 0.07, 56.0, (5.0, 3.2, 4.9)),
    5: ((20.0, 40.5), 0.15, 52.0, (5.2, 3.4, 4.7)),
}


def build_hand(view: View, anat: Anatomy, mods: dict, rng: np.random.Generator, *, wrist: bool = False) -> Scene:
    b = Builder(anat)
    roll = math.radians(view.roll)
    k = 0.22 + 0.78 * abs(math.cos(roll)) ** 1.4  # how far the rays stand apart
    side = 1.0 - k
    flex = math.radians(view.flex)
    # Forearm bones: the radius on the thumb side; together on a lateral film.
    b.long("radius", (-6.0 * k - 2 * side, 190.0), (-8.0 * k - 2 * side, 78.0), ends=(9.0, 15.0), shaft=8.5,
           flare=(0.1, 0.3), cortex=0.3, cap=(0.3, 0.2), physes=(0.93,),
           extra=(b.blob((-20.5 * k - 2 * side, 75.0), (4.5, 6.5), 20.0, cortex=0.6),))
    b.long("ulna", (15.0 * k + 3 * side, 190.0), (14.0 * k + 3 * side, 81.0), ends=(7.0, 8.0), shaft=6.5,
           flare=(0.1, 0.3), cortex=0.3, cap=(0.3, 0.45), physes=(0.93,),
           extra=(b.blob((19.0 * k + 4 * side, 77.5), (2.4, 4.0), 0.0, cortex=0.5),))
    b.joint("radiocarpal", (-7.0 * k, 75.5), ("radius", "lunate"), (0, -1), 30.0)
    narrow = mods.get("narrow", {})
    squeeze = 1.0 - 0.45 * (1.0 - narrow.get("radiocarpal", 1.0))
    for name, (c, axes, deg, power) in CARPALS.items():
        centre = (c[0] * k, 75.0 - (75.0 - c[1]) * squeeze)
        b.add(name, b.blob(centre, (axes[0] * 1.1, axes[1] * 1.1), deg, cortex=1.0, marrow=0.6, power=power))
    b.bones["hamate"].shapes.append(b.blob((9.0 * k, 53.0), (2.8, 2.8), cortex=0.5))
    b.joint("STT", (-20.0 * k, 54.0), ("scaphoid", "trapezium"), (0, -1), 14.0)
    b.joint("CMC1", (-29.0 * k - 4 * side, 43.0), ("trapezium", "metacarpal1"), (-0.5, -0.8), 12.0)
    # Rays: the metacarpals fan out; on oblique and lateral films they crowd together and the
    # fingers flex toward the palm (+x on a lateral film).
    finger_flex = (flex * 0.2, flex * 0.6 * side + 0.05, flex * 0.4 * side + 0.03)
    for ray, (base, angle, length, (rb, rs, rh)) in METACARPALS.items():
        if ray == 1:
            bx = base[0] * k + side * 10.0
            ang = angle * k + side * 0.55
        else:
            bx = base[0] * k
            ang = angle * k * anat.spread + side * 0.06 * (ray - 3)
        start = np.array([bx, base[1] - 2.5])
        end = start + unit(ang) * length
        b.long(f"metacarpal{ray}", start, end, ends=(rb, rh), shaft=rs, cortex=0.34, flare=(0.2, 0.22),
               cap=(0.3, 0.55), physes=(0.92,) if ray > 1 else (0.06,))
        if ray == 1:
            thumb_dir = ang + 0.15
            pp0 = end + unit(thumb_dir) * 2.2
            pp1 = pp0 + unit(thumb_dir) * 30.0
            b.long("thumb_proximal_phalanx", pp0, pp1, ends=(5.2, 4.4), shaft=3.7, cortex=0.3, flare=(0.3, 0.22),
                   cap=(0.35, 0.55), physes=(0.08,))
            dp0 = pp1 + unit(thumb_dir + 0.1) * 1.8
            dp1 = dp0 + unit(thumb_dir + 0.1) * 19.0
            tuft = b.blob(dp1 - unit(thumb_dir + 0.1) * 3.0, (3.6, 2.6), math.degrees(thumb_dir + 0.1), cortex=0.5)
            b.long("thumb_distal_phalanx", dp0, dp1 - unit(thumb_dir) * 2.0, ends=(4.6, 2.6), shaft=2.5, cortex=0.3,
                   flare=(0.3, 0.2), cap=(0.35, 0.5), physes=(0.08,), extra=(tuft,))
            for s in (-1, 1):  # the two sesamoids over the thumb's MCP joint
                b.add(f"sesamoid{s}", b.blob(end + unit(ang + math.pi / 2) * (2.8 * s) - unit(ang) * 3.5, (2.2, 2.0),
                                              cortex=0.5, marrow=0.6))
            b.joint("MCP1", end + unit(thumb_dir) * 1.1, ("metacarpal1", "thumb_proximal_phalanx"), unit(thumb_dir), 10.0)
            b.limb(np.array([start - unit(ang) * 6, end, pp1, dp1 + unit(thumb_dir) * 2]), np.array([15.0, 12.0, 9.0, 7.5]),
                   caps=(0.0, 4.0))
            continue
        fl = (finger_flex[0] + (ang * 0.6 if k > 0.5 else 0.0), finger_flex[1], finger_flex[2])
        pts = _ray(b, ray, end, ang, fl, prefix=f"d{ray}_", mods=mods, scale=0.93)
        # Joint names are per digit; the proximal bone of the MCP joint is this metacarpal.
        mcp = b.joints[f"d{ray}_MCP"]
        b.joints[f"d{ray}_MCP"] = Joint(mcp.point, (f"metacarpal{ray}", mcp.bones[1]), mcp.axis, mcp.width)
        b.limb(np.array([end, pts[1], pts[2], pts[3]]), np.array([9.5, 8.6, 7.5, 6.4]) * DIGITS[ray][1],
               caps=(0.0, 5.0))
    # The palm, the thenar eminence and the forearm.
    palm = np.array([[3.0 - 4 * side, 85.0], [1.0, 45.0], [1.0 * k, 10.0], [2.0 * k, -12.0]])
    pw = 0.35 + 0.65 * k
    b.limb(palm, np.array([34.0, 42.0, 45.0, 41.0]) * pw, depth=0.42 / pw, caps=(0.0, 9.0))
    b.flesh(Blob(np.array([-27.0 * k - 8 * side, 38.0]), (16.0, 24.0), 0.5, 12.0), 1.0)
    b.limb(np.array([[4.0, 260.0], [3.0, 75.0]]), np.array([36.0, 31.0]) * (0.55 + 0.45 * k), depth=0.8 / (0.55 + 0.45 * k),
           muscle=0.25)
    if wrist:
        return b.scene((0.0, 62.0, 96.0, 120.0))
    return b.scene((-2.0, -5.0, 150.0, 215.0))


def build_wrist(view: View, anat: Anatomy, mods: dict, rng: np.random.Generator) -> Scene:
    return build_hand(view, anat, mods, rng, wrist=True)


# --- forearm, elbow, humerus ------------------------------------------------------------

def _distal_humerus(b: Builder, roll: float, top: float) -> None:
    """Humeral shaft from ``top`` down to the joint, whose articular surface lies at y ~ 13."""
    k = abs(math.cos(roll))
    if k > 0.35:
        w = 0.4 + 0.6 * k
        # The condyles as one bar from the lateral to the medial epicondyle: capitulum,
        # trochlea, and the prominent medial epicondyle.
        xs = np.array([-29.0, -22.0, -13.0, -2.0, 9.0, 22.0, 31.0]) * w
        ys = np.array([-14.0, -3.0, 3.0, 3.5, 4.0, -4.0, -13.0])
        condyles = b.bar(np.stack([xs, ys], 1), [4.0, 7.0, 9.0, 6.5, 9.0, 7.5, 5.5], cortex=0.9, marrow=0.55, caps=(4.0, 5.0))
        columns = (b.strut((-7.0 * w, -55.0), (-22.0 * w, -8.0), 7.0), b.strut((7.0 * w, -55.0), (24.0 * w, -8.0), 7.5))
        b.long("humerus", (0.0, top), (0.5, -6.0), ends=(10.0, 12.0 * w + 5.0), shaft=9.5, flare=(0.05, 0.3),
               cap=(0.3, 0.3), marrow=(0.12, 0.45), physes=(0.97,), extra=(condyles,) + columns)
        b.bones["humerus"].thin.append((Blob(np.array([1.0, -15.0]), (8.0 * w, 8.0), 0.0), 0.35))
    else:
        # Lateral: the distal humerus angles forwards ("hockey stick") and the condyles
        # project as one round mass in front of the shaft's axis.
        b.long("humerus", (0.0, top), (3.0, -22.0), ends=(10.0, 11.0), shaft=9.5, flare=(0.05, 0.3), cap=(0.3, 0.3),
               marrow=(0.12, 0.45), physes=(0.97,),
               extra=(b.strut((2.0, -36.0), (8.0, -4.0), 8.0), b.blob((9.0, 1.0), (12.0, 11.5), 0.0, cortex=1.1, marrow=0.6)))
        b.bones["humerus"].thin.append((Blob(np.array([4.0, -22.0]), (5.5, 7.0), 0.0), 0.5))


def _forearm_ap(b: Builder, k: float, length: float, *, shift=(0.0, 0.0), tilt: float = 0.0) -> None:
    """Radius and ulna hanging from an AP elbow whose joint line is at y ~ 13."""
    sx, sy = shift
    c, s = math.cos(tilt), math.sin(tilt)

    def p(x, y):
        return np.array([c * x - s * (y - 13.0) + sx, s * x + c * (y - 13.0) + 13.0 + sy])

    sep = 0.35 + 0.65 * k
    rx = -13.5 * sep
    # The radial head is a short wide cylinder seen side-on: a rectangle with bright edges.
    head = Tube(np.array([p(rx, 17.0), p(rx, 24.0)]), np.full(2, 10.0 * b.anat.width), np.full(2, 0.6),
                np.full(2, 0.55), (2.0, 1.5))
    tuberosity = b.blob(p(rx + 5.5, 44.0), (3.5, 7.0), 90.0, cortex=0.6)
    b.long("radius", p(rx, 24.0), p(rx * 1.3 - 6, length), ends=(6.0, 13.0), shaft=6.4, bow=-4.0 * sep,
           flare=(0.12, 0.25), cap=(0.2, 0.35), physes=(0.04, 0.96), extra=(head, tuberosity))
    ux = 8.0 * sep
    olecranon = b.blob(p(ux - 2.0, -2.0), (8.5, 12.0), 0.0, cortex=0.7, marrow=0.4, depth=5.0)
    coronoid = b.blob(p(ux - 3.0, 17.0), (7.0, 4.0), -20.0, cortex=0.8)
    b.long("ulna", p(ux, 14.0), p(ux + 3.0 * sep + 3, length + 2), ends=(10.0, 7.0), shaft=6.8, bow=2.5 * sep,
           flare=(0.2, 0.2), cap=(0.3, 0.4), physes=(0.96,), extra=(olecranon, coronoid))


def _forearm_lateral(b: Builder, flex: float, length: float, gap: float, shift=(0.0, 0.0)) -> None:
    """Radius and ulna from a lateral elbow flexed by ``flex`` (0: straight down, pi/2: forwards)."""
    d = np.array([math.sin(flex), math.cos(flex)])
    n = np.array([-d[1], d[0]])  # towards the ulna (posterior when flexed to 90 degrees)
    centre = np.array([9.0, 1.0]) + np.asarray(shift, float)

    def p(x, y):
        return centre + x * d + y * n

    ang = math.degrees(math.atan2(d[1], d[0]))
    # The proximal ulna hooks round the trochlea: olecranon behind, coronoid in front.
    g = 12.5 + gap
    hook = b.bar([p(-7.0, -g - 1.0), p(-g - 1.5, -3.0), p(-g, 6.0), p(-7.0, g + 3.0), p(4.0, g + 5.0), p(18.0, 15.0)],
                 [5.0, 7.5, 8.5, 8.5, 8.0, 7.5], cortex=1.0, marrow=0.5, caps=(3.0, 0.0))
    coronoid = b.blob(p(10.0 + gap, 9.5), (5.5, 3.5), ang - 35.0, cortex=0.8)
    b.long("ulna", p(10.0, 15.0 + gap), p(length, 14.0), ends=(8.0, 7.0), shaft=6.8, bow=-2.0, flare=(0.2, 0.2),
           cap=(0.3, 0.4), physes=(0.96,), extra=(hook, coronoid))
    head = Tube(np.array([p(14.0 + gap, -2.0), p(20.0 + gap, -2.0)]), np.full(2, 9.5 * b.anat.width), np.full(2, 0.6),
                np.full(2, 0.55), (1.5, 1.5))
    b.long("radius", p(20.0 + gap, -2.0), p(length + 2.0, -3.0), ends=(6.0, 12.0), shaft=6.4, bow=3.0,
           flare=(0.12, 0.25), cap=(0.2, 0.35), physes=(0.04, 0.96), extra=(head,))


def build_elbow(view: View, anat: Anatomy, mods: dict, rng: np.random.Generator) -> Scene:
    b = Builder(anat)
    roll = math.radians(view.roll)
    k = abs(math.cos(roll))
    narrow = mods.get("narrow", {}).get("elbow", 1.0)
    shift = mods.get("dislocate", {}).get("elbow")
    _distal_humerus(b, roll, -190.0)
    gap = 2.5 * (narrow - 1.0)
    if k > 0.35:
        off = (0.0, gap)
        if shift is not None:  # posterior dislocation: the forearm rides up behind the humerus
            off = (shift[0] * 0.6, gap - abs(shift[1]) * 0.9)
        tilt = math.radians(view.flex) * 0.3 * (1 if view.roll >= 0 else -1)
        _forearm_ap(b, k, 220.0, shift=off, tilt=tilt)
        b.limb(np.array([[0.0, -220.0], [1.0, 0.0], [0.0, 220.0]]), np.array([44.0, 41.0, 35.0]), muscle=0.25)
        b.joint("elbow", (3.0, 14.0 + gap / 2), ("humerus", "ulna"), (0, 1), 50.0)
        return b.scene((0.0, 8.0, 118.0, 148.0))
    flex = math.radians(view.flex)
    off = (0.0, 0.0) if shift is None else (-abs(shift[1]) * 1.1, -abs(shift[0]) * 0.4 - 4.0)
    _forearm_lateral(b, flex, 220.0, gap, off)
    d = np.array([math.sin(flex), math.cos(flex)])
    b.limb(np.array([[0.0, -220.0], [2.0, 0.0]]), np.array([44.0, 42.0]), muscle=0.25, caps=(0.0, 30.0))
    b.limb(np.array([[4.0, 8.0] - d * 10.0, [4.0, 8.0] + d * 220.0]), np.array([40.0, 33.0]), muscle=0.25, caps=(28.0, 0.0))
    b.joint("elbow", (6.0, 12.0), ("humerus", "ulna"), (0, 1), 30.0)
    return b.scene((14.0, 2.0, 125.0, 150.0))


def build_forearm(view: View, anat: Anatomy, mods: dict, rng: np.random.Generator) -> Scene:
    b = Builder(anat)
    roll = math.radians(view.roll)
    k = abs(math.cos(roll))
    _distal_humerus(b, roll if k > 0.35 else 0.0, -90.0)
    _forearm_ap(b, k, 262.0)
    # The proximal carpal row at the wrist end.
    for name in ("scaphoid", "lunate", "triquetrum", "capitate", "hamate"):
        (cx, cy), axes, deg, power = CARPALS[name]
        b.add(name, b.blob((cx * (0.3 + 0.7 * k) - 10.0, cy + 208.0), axes, deg, cortex=0.9, power=power))
    b.limb(np.array([[0.0, -140.0], [0.0, 0.0], [-6.0, 150.0], [-8.0, 300.0]]), np.array([44.0, 42.0, 36.0, 29.0]),
           muscle=0.3)
    return b.scene((-4.0, 128.0, 125.0, 292.0))


def _proximal_humerus(b: Builder, head, distal, *, lateral: float, k: float, extra: tuple[Shape, ...] = (),
                      physes=(0.05,)) -> None:
    """Humeral head at ``head``, shaft down to ``distal``; the greater tuberosity on the ``lateral`` side (+-1)."""
    hx, hy = head
    head_blob = b.blob((hx, hy), (24.5, 24.5), cortex=1.1, marrow=0.55)
    # The greater tuberosity: a shallow bump that carries the head's outline on down the
    # lateral side (on a lateral film it overlaps the head).
    tuber = b.blob((hx + lateral * (15.0 + 6.0 * k), hy + 9.0 - 5.0 * (1 - k)), (11.0, 17.0), lateral * 15.0,
                   cortex=0.6, marrow=0.5, depth=8.0)
    # The shaft starts inside the head so that their outlines merge without a seam.
    neck = (hx + lateral * 5.0, hy + 4.0)
    b.long("humerus", neck, distal, ends=(18.5, 12.0), shaft=11.0, flare=(0.2, 0.1), cap=(0.5, 0.3),
           physes=physes, extra=(head_blob, tuber) + tuple(extra))


def build_humerus(view: View, anat: Anatomy, mods: dict, rng: np.random.Generator) -> Scene:
    b = Builder(anat)
    roll = math.radians(view.roll)
    k = abs(math.cos(roll))
    top = -168.0
    w = 0.4 + 0.6 * k
    xs = np.array([-27.0, -20.0, -12.0, -1.0, 9.0, 22.0, 29.0]) * w
    ys = np.array([140.0, 151.0, 157.0, 157.5, 158.0, 150.0, 141.0])
    condyles = b.bar(np.stack([xs, ys], 1), [4.0, 7.0, 8.5, 6.0, 8.5, 7.0, 5.0], cortex=0.9, marrow=0.55, caps=(4.0, 5.0))
    _proximal_humerus(b, (8.0, top), (1.0, 150.0), lateral=-1.0, k=k,
                      extra=(condyles, b.strut((-5.0 * w, 95.0), (-21.0 * w, 142.0), 7.0),
                             b.strut((5.0 * w, 95.0), (23.0 * w, 142.0), 7.5)))
    b.bones["humerus"].thin.append((Blob(np.array([1.0, 138.0]), (7.5 * w, 8.0), 0.0), 0.35))
    # Glenoid and scapula at the top, forearm bones at the bottom, partly in the field.
    glenoid = b.blob((38.0, top + 2.0), (5.5, 19.0), -5.0, cortex=1.5, marrow=0.45, depth=12.0)
    border = long_bone(np.array([42.0, top + 20]), np.array([95.0, top + 150]), ends=(5.0, 4.0), shaft=4.2, cortex=0.5, bow=4.0)
    body = Tube(polyline((48.0, top + 10), (150.0, top + 60), 4), np.array([14.0, 30.0, 45.0, 55.0]), np.full(4, 1.0),
                np.full(4, 0.4), (4.0, 0.0), 0.13)
    b.add("scapula", glenoid, border, body, density=0.9)
    b.long("acromion", (95.0, top - 44), (-18.0, top - 34), ends=(7.0, 9.0), shaft=6.0, cortex=0.3, bow=6.0,
           marrow=(0.4, 0.5))
    b.long("clavicle", (150.0, top - 20), (-10.0, top - 48), ends=(9.0, 8.0), shaft=6.5, cortex=0.3, bow=8.0,
           marrow=(0.2, 0.5))
    _forearm_ap(b, k, 230.0, shift=(1.0, 154.0))
    b.limb(np.array([[2.0, top - 50], [0.0, 0.0], [0.0, 180.0], [0.0, 400.0]]), np.array([54.0, 46.0, 42.0, 36.0]),
           muscle=0.3)
    b.flesh(Blob(np.array([175.0, top + 40]), (125.0, 150.0), 0.0, 60.0), 0.7)
    b.flesh(Blob(np.array([30.0, top - 20]), (70.0, 45.0), 0.0, 40.0), 0.5)
    return b.scene((12.0, -6.0, 150.0, 372.0))


# --- shoulder ----------------------------------------------------------------------------

def build_shoulder(view: View, anat: Anatomy, mods: dict, rng: np.random.Generator) -> Scene:
    """Right shoulder, AP: the humerus on the left of the film, the chest on the right."""
    b = Builder(anat)
    roll = math.radians(view.roll)
    disloc = mods.get("dislocate", {}).get("glenohumeral")
    narrow = mods.get("narrow", {}).get("glenohumeral", 1.0)
    hx, hy = -29.0 + 5.0 * (1.0 - narrow), 3.0
    if disloc is not None:  # anterior dislocation: the head sits below the coracoid
        hx, hy = hx + abs(disloc[0]), hy + abs(disloc[1])
    if view.name == "Y":
        return _shoulder_y(b, (hx + 12.0, hy), disloc is not None)
    k = abs(math.cos(roll))
    _proximal_humerus(b, (hx, hy), (hx - 34.0, hy + 215.0), lateral=-1.0, k=k if view.name != "axial" else 0.2)
    # Scapula: glenoid, a thin triangular body with a thick lateral border, spine and acromion.
    body = Tube(polyline((6.0, 8.0), (120.0, 55.0), 4), np.array([16.0, 32.0, 48.0, 58.0]), np.full(4, 1.0),
                np.full(4, 0.45), (4.0, 0.0), 0.13)
    border = long_bone(np.array([8.0, 24.0]), np.array([75.0, 160.0]), ends=(5.0, 4.0), shaft=4.2, cortex=0.5, bow=5.0)
    glenoid = b.blob((2.0, 2.0), (5.5, 20.0), 0.0, cortex=1.6, marrow=0.5, depth=12.0)
    b.add("scapula", glenoid, border, body, density=0.95)
    # The scapular spine runs from the acromion down and inwards across the blade, fainter
    # than the clavicle because it is seen through the blade.
    b.long("spine", (135.0, -18.0), (-8.0, -44.0), ends=(4.0, 7.0), shaft=4.5, cortex=0.35, bow=-6.0)
    b.bones["spine"].density *= 0.7
    b.long("acromion", (-6.0, -45.0), (-46.0, -40.0), ends=(8.0, 9.5), shaft=7.5, cortex=0.25, marrow=(0.45, 0.55))
    b.long("coracoid", (22.0, -16.0), (-4.0, -25.0), ends=(7.0, 5.5), shaft=5.5, cortex=0.3, bow=5.0, marrow=(0.4, 0.5))
    b.long("clavicle", (175.0, -28.0), (-34.0, -56.0), ends=(10.0, 8.5), shaft=6.5, cortex=0.3, bow=10.0,
           flare=(0.15, 0.2), marrow=(0.2, 0.5))
    for i in range(4):  # ribs behind the scapula
        y0 = -38.0 + 42.0 * i
        b.long(f"rib{i + 1}", (200.0, y0 + 30.0), (30.0 + 8 * i, y0 + 8.0), ends=(5.0, 5.0), shaft=5.0, cortex=0.2,
               bow=-14.0, marrow=(0.35, 0.4))
        b.bones[f"rib{i + 1}"].density *= 0.7
    # Soft tissue: the deltoid over the head, the chest wall, the lung darker.
    b.flesh(Blob(np.array([hx - 10.0, hy + 10.0]), (50.0, 62.0), 0.0, 40.0), 1.0)
    b.limb(np.array([[hx - 20.0, hy], [hx - 38.0, 260.0]]), np.array([46.0, 42.0]), muscle=0.25)
    b.flesh(Blob(np.array([120.0, 120.0]), (175.0, 200.0), 0.0, 60.0), 1.0)
    b.flesh(Blob(np.array([150.0, 110.0]), (75.0, 140.0), 0.0, 40.0), -0.9)
    b.joint("glenohumeral", ((hx + 24.0 + 2.0) / 2, hy), ("scapula", "humerus"), (-1, 0), 38.0)
    return b.scene((-8.0, 15.0, 215.0, 190.0))


def _shoulder_y(b: Builder, head_xy, dislocated: bool) -> Scene:
    """Scapular Y view: the scapula edge-on, coracoid and acromion forming the Y's arms."""
    hx, hy = head_xy
    if dislocated:
        hx, hy = hx + 30.0, hy + 12.0
    b.add("scapula", long_bone(np.array([0.0, 10.0]), np.array([12.0, 170.0]), ends=(9.0, 5.0), shaft=6.5, cortex=0.4),
          b.blob((0.0, 2.0), (10.0, 14.0), cortex=1.0))
    b.long("coracoid", (2.0, -6.0), (40.0, -50.0), ends=(7.0, 5.0), shaft=5.5, cortex=0.3, bow=-6.0)
    b.long("acromion", (-2.0, -6.0), (-45.0, -52.0), ends=(8.0, 9.0), shaft=7.0, cortex=0.3, bow=5.0)
    _proximal_humerus(b, (hx, hy), (hx - 8.0, hy + 220.0), lateral=-1.0, k=0.3)
    b.long("clavicle", (6.0, -80.0), (-28.0, -58.0), ends=(9.0, 8.5), shaft=8.0, cortex=0.3)
    for i in range(4):
        y0 = -20.0 + 45.0 * i
        b.long(f"rib{i + 1}", (120.0, y0 + 40.0), (20.0, y0), ends=(5.0, 5.0), shaft=5.0, cortex=0.2, bow=-18.0,
               marrow=(0.35, 0.4))
        b.bones[f"rib{i + 1}"].density *= 0.7
    b.flesh(Blob(np.array([hx, hy + 10.0]), (50.0, 60.0), 0.0, 40.0), 1.0)
    b.flesh(Blob(np.array([40.0, 110.0]), (170.0, 190.0), 0.0, 60.0), 1.0)
    b.joint("glenohumeral", (hx, hy), ("scapula", "humerus"), (0, 1), 30.0)
    return b.scene((-2.0, 15.0, 200.0, 200.0))


BUILDERS = {
    "XR_ELBOW": build_elbow,
    "XR_FINGER": build_finger,
    "XR_FOREARM": build_forearm,
    "XR_HAND": build_hand,
    "XR_HUMERUS": build_humerus,
    "XR_SHOULDER": build_shoulder,
    "XR_WRIST": build_wrist,
}


def build_scene(part: str, view: View, anat: Anatomy, mods: dict, rng: np.random.Generator) -> Scene:
    return BUILDERS[part](view, anat, mods, rng)
