"""Abnormal findings, normal variants, and how difficult they are to see.

A finding is drawn once per study in anatomical terms ("a fracture of the
radius at 62% of its length, displaced 4 mm sideways and 3 mm backwards") and
rendered in every view where the plan says it is visible. Its 3-D parameters
project differently per view: sideways displacement shows on the AP film,
backward displacement on the lateral one, so one view can look almost normal
while the next is plainly broken. Views the plan marks as not showing the
finding are drawn without it (an occult fracture on that projection).

Normal variants (growth plates, bone islands, nutrient canals, rings,
vascular calcification, buttons) appear in normal and abnormal studies alike
so that they are not a label cue, only noise a model has to learn to ignore.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from muracli.synthetic.anatomy import Bone, Scene, View
from muracli.synthetic.radiograph import Band, Break, Edits, Hole
from muracli.synthetic.shapes import Blob, Transform, Tube, solid_tube

KINDS = ("fracture", "hardware", "lesion", "periosteal", "degenerative", "dislocation")


@dataclass(frozen=True)
class Difficulty:
    name: str
    severity: tuple[float, float]  # range of the finding's size/contrast factor
    visibility: float  # chance that each further view of an abnormal study shows the finding
    variants: float  # expected number of normal variants per study
    noise: float  # film noise factor
    kind_factor: dict[str, float] = field(default_factory=dict)  # re-weights the kinds of findings
    cast: float = 0.0  # chance that a fractured wrist, hand, forearm or elbow is in a cast


DIFFICULTIES = {
    "easy": Difficulty("easy", (1.6, 2.2), 1.0, 0.0, 0.6, {"hardware": 1.6, "dislocation": 1.3}, cast=0.8),
    "normal": Difficulty("normal", (0.8, 1.3), 0.8, 0.3, 1.0, cast=0.55),
    "hard": Difficulty("hard", (0.3, 0.75), 0.5, 0.8, 1.3, {"hardware": 0.45, "dislocation": 0.6}, cast=0.15),
}

# Which findings each study type shows, roughly as in MURA's abnormal studies.
KIND_WEIGHTS = {
    "XR_ELBOW": {"fracture": 0.36, "hardware": 0.16, "degenerative": 0.16, "dislocation": 0.1, "lesion": 0.1, "periosteal": 0.06},
    "XR_FINGER": {"fracture": 0.4, "dislocation": 0.14, "degenerative": 0.2, "hardware": 0.1, "lesion": 0.16},
    "XR_FOREARM": {"fracture": 0.45, "hardware": 0.3, "lesion": 0.12, "periosteal": 0.13},
    "XR_HAND": {"fracture": 0.4, "hardware": 0.14, "degenerative": 0.24, "lesion": 0.12, "dislocation": 0.1},
    "XR_HUMERUS": {"fracture": 0.42, "hardware": 0.3, "lesion": 0.15, "periosteal": 0.13},
    "XR_SHOULDER": {"fracture": 0.26, "hardware": 0.24, "dislocation": 0.22, "degenerative": 0.2, "lesion": 0.08},
    "XR_WRIST": {"fracture": 0.42, "hardware": 0.24, "degenerative": 0.2, "lesion": 0.14},
}

# (bone, t range along its axis) where a fracture, lesion or periosteal reaction may sit.
SHAFT_SITES = {
    "XR_ELBOW": [("radius", 0.0, 0.12), ("humerus", 0.8, 0.9), ("ulna", 0.04, 0.16)],
    "XR_FINGER": [("proximal_phalanx", 0.2, 0.8), ("middle_phalanx", 0.2, 0.8), ("distal_phalanx", 0.3, 0.7)],
    "XR_FOREARM": [("radius", 0.15, 0.85), ("ulna", 0.15, 0.85)],
    "XR_HAND": [(f"metacarpal{i}", 0.3, 0.88) for i in (2, 3, 4, 5)]
    + [(f"d{i}_proximal_phalanx", 0.25, 0.75) for i in (2, 3, 4, 5)],
    "XR_HUMERUS": [("humerus", 0.06, 0.85)],
    "XR_SHOULDER": [("humerus", 0.04, 0.16), ("clavicle", 0.55, 0.85)],
    "XR_WRIST": [("radius", 0.84, 0.93), ("radius", 0.84, 0.93), ("ulna", 0.86, 0.95), ("scaphoid", 0.35, 0.65)],
}
JOINT_SITES = {
    "XR_ELBOW": ["elbow"],
    "XR_FINGER": ["PIP", "DIP", "PIP"],
    "XR_HAND": [f"d{i}_{j}" for i in (2, 3, 4, 5) for j in ("PIP", "DIP")] + ["CMC1", "CMC1", "MCP1"],
    "XR_SHOULDER": ["glenohumeral"],
    "XR_WRIST": ["radiocarpal", "STT", "CMC1"],
}
DISLOCATION_SITES = {
    "XR_ELBOW": ["elbow"],
    "XR_FINGER": ["PIP", "DIP"],
    "XR_HAND": [f"d{i}_{j}" for i in (2, 3, 4, 5) for j in ("MCP", "PIP")],
    "XR_SHOULDER": ["glenohumeral"],
}


@dataclass
class Finding:
    kind: str
    severity: float
    site: str  # a bone or a joint name
    t: float = 0.5
    params: dict = field(default_factory=dict)


def available_kinds(part: str, difficulty: Difficulty) -> tuple[list[str], np.ndarray]:
    weights = KIND_WEIGHTS[part]
    kinds = [k for k in KINDS if weights.get(k, 0.0) > 0]
    w = np.array([weights[k] * difficulty.kind_factor.get(k, 1.0) for k in kinds])
    return kinds, w / w.sum()


def draw_finding(part: str, kind: str, difficulty: Difficulty, rng: np.random.Generator) -> Finding:
    """The anatomical description of one study's finding."""
    sev = float(rng.uniform(*difficulty.severity))
    p: dict = {}
    if kind in ("fracture", "lesion", "periosteal", "hardware"):
        bone, lo, hi = SHAFT_SITES[part][rng.integers(len(SHAFT_SITES[part]))]
        t = float(rng.uniform(lo, hi))
    else:
        sites = DISLOCATION_SITES[part] if kind == "dislocation" else JOINT_SITES[part]
        bone, t = sites[rng.integers(len(sites))], 0.5
    if kind == "fracture":
        p["obliquity"] = float(rng.normal(0.0, 0.35))
        # Displacement in units of the bone's radius: mostly in one plane, a little in the other,
        # so one projection shows it well and the other may barely.
        main, minor = float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.7)), float(rng.normal(0.0, 0.4))
        # Angulation (radians) mostly in the plane of the displacement.
        bend, twist = float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.32)), float(rng.normal(0.0, 0.05))
        coronal = rng.random() < 0.5
        p["side"], p["depth"] = (main, minor) if coronal else (minor, main)
        p["angle_c"], p["angle_s"] = (bend, twist) if coronal else (twist, bend)
        p["overlap"] = float(rng.uniform(-0.4, 1.2))
        p["gap"] = float(rng.uniform(1.2, 2.4))
        p["wave"] = float(rng.uniform(0.3, 1.0))
        p["phase"] = float(rng.uniform(0, 2 * math.pi))
        p["impacted"] = bool(rng.random() < 0.2)
        p["fragment"] = bool(rng.random() < 0.35)  # a loose butterfly fragment beside the break
        p["cast"] = bool(part in CAST_PARTS and rng.random() < difficulty.cast)
        p["cast_thickness"] = float(rng.uniform(5.0, 9.0))
        p["cast_density"] = float(rng.uniform(1.0, 1.8))
    elif kind == "lesion":
        p["offset"] = float(rng.uniform(-0.35, 0.35))
        p["length"] = float(rng.uniform(1.8, 3.2))  # x radius
        p["width"] = float(rng.uniform(0.75, 1.0))  # x radius; near 1 the cortex is destroyed
        p["lucency"] = float(rng.uniform(0.75, 0.97))
        p["sclerotic"] = bool(rng.random() < 0.2)
        p["rim"] = float(rng.uniform(0.0, 0.8)) if rng.random() < 0.5 else 0.0
        p["ragged"] = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.35 else 0.0
    elif kind == "periosteal":
        p["length"] = float(rng.uniform(6.0, 10.0))  # x radius
        p["layers"] = int(rng.integers(2, 4))
        p["sides"] = int(rng.choice([-1, 1, 0, 0]))  # 0: both
        p["spacing"] = float(rng.uniform(0.9, 1.6))
    elif kind == "hardware":
        choices = {"XR_SHOULDER": ["arthroplasty", "plate", "screws"], "XR_FINGER": ["wires", "wires", "screws"],
                   "XR_HAND": ["wires", "plate", "plate"], "XR_WRIST": ["plate", "plate", "wires", "screws"],
                   "XR_ELBOW": ["wires", "plate", "screws"], "XR_FOREARM": ["plate", "plate", "nail"],
                   "XR_HUMERUS": ["plate", "nail"]}[part]
        p["device"] = str(choices[rng.integers(len(choices))])
        if bone == "scaphoid":
            p["device"] = "screws"
        if p["device"] == "arthroplasty":
            bone, t = "humerus", 0.0
        p["face"] = float(rng.uniform(-0.6, 0.6))  # which side of the bone the plate lies on (rad)
        p["length"] = float(rng.uniform(6.0, 12.0))  # x radius
        p["n_wires"] = int(rng.integers(1, 4))
        p["wire_angles"] = [float(rng.normal(0, 0.35)) for _ in range(3)]
        p["wire_offsets"] = [float(rng.uniform(-1, 1)) for _ in range(3)]
        p["fracture"] = bool(rng.random() < 0.6)
    elif kind == "degenerative":
        p["narrow"] = float(1.0 - min(sev, 1.1) * rng.uniform(0.7, 0.95))  # joint space left
        p["spurs"] = [(float(rng.uniform(-1, 1)), float(rng.uniform(0.6, 1.3)), int(rng.choice([-1, 1]))) for _ in range(4)]
        p["n_spurs"] = int(rng.integers(2, 5))
        p["sclerosis"] = float(rng.uniform(0.3, 0.7))
        p["cyst"] = bool(rng.random() < 0.35)
    elif kind == "dislocation":
        p["dx"] = float(rng.uniform(0.7, 1.3) * rng.choice([-1, 1]))
        p["dy"] = float(rng.uniform(0.5, 1.2))
    return Finding(kind, sev, bone, t, p)


def finding_mods(finding: Finding | None, part: str) -> dict:
    """Changes to the anatomy itself (joint spaces, joint positions) for the scene builder."""
    if finding is None:
        return {}
    if finding.kind == "degenerative":
        return {"narrow": {finding.site: finding.params["narrow"]}}
    if finding.kind == "dislocation":
        sev = min(finding.severity, 1.2)
        if part == "XR_SHOULDER":
            return {"dislocate": {"glenohumeral": (22.0 + 14.0 * sev, 26.0 + 16.0 * sev)}}
        if part == "XR_ELBOW":
            return {"dislocate": {"elbow": (8.0 * finding.params["dx"], 12.0 + 14.0 * sev)}}
        width = 7.0 if "MCP" in finding.site or finding.site == "PIP" else 5.5
        return {"dislocate": {finding.site: (finding.params["dx"] * width * (0.5 + 0.6 * sev), 1.5 * finding.params["dy"])}}
    return {}


Box = tuple[float, float, float, float]


CAST_PARTS = ("XR_WRIST", "XR_FOREARM", "XR_HAND", "XR_ELBOW")


def study_edits(finding: Finding | None, scene: Scene, edits: Edits) -> None:
    """What shows on every film of the study whether or not the finding itself does: a cast."""
    if finding is None or not finding.params.get("cast"):
        return
    bone = scene.bones.get(finding.site)
    if bone is None:
        return
    point, _, _ = bone.axis.at(finding.t)
    # The cast wraps the limb segment whose soft tissue contains the fracture.
    best = None
    for shape, density in scene.soft:
        if not isinstance(shape, Tube) or density != 1.0 or shape.depth < 0.6:
            continue
        distance, radius = _nearest_on_polyline(shape, point)
        if distance < radius and (best is None or radius > best[1]):
            best = (shape, radius)
    if best is None:
        return
    limb = best[0]
    thick, density = finding.params["cast_thickness"], finding.params["cast_density"]
    outer = Tube(limb.points, limb.radii + thick + 1.5, np.zeros(len(limb.points)), np.zeros(len(limb.points)),
                 (limb.caps[0] + thick, limb.caps[1] + thick), limb.depth)
    inner = Tube(limb.points, limb.radii + 1.5, np.zeros(len(limb.points)), np.zeros(len(limb.points)),
                 (limb.caps[0] + 1.5, limb.caps[1] + 1.5), limb.depth)
    edits.cast += [(outer, density), (inner, -density)]


def finding_edits(finding: Finding, scene: Scene, view: View, tf: Transform, edits: Edits) -> Box | None:
    """Add ``finding`` to ``edits`` for this view; return its box in pixels (None if it is not in the scene)."""
    kind = finding.kind
    if kind in ("degenerative", "dislocation"):
        joint = scene.joints.get(finding.site)
        if joint is None:
            return None
        if kind == "degenerative":
            return _degenerative(finding, scene, joint, tf, edits)
        reach = joint.width * 0.6 + 6.0 * finding.severity
        if finding.site == "glenohumeral":
            reach = 42.0
        return _box_of_points(tf, [joint.point + [dx, dy] for dx in (-reach, reach) for dy in (-reach, reach)])
    if finding.kind == "hardware" and finding.params["device"] == "arthroplasty":
        return _arthroplasty(finding, scene, tf, edits)
    bone = scene.bones.get(finding.site)
    if bone is None:
        return None
    axis = bone.axis
    point, tangent, radius = axis.at(finding.t)
    across = np.array([-tangent[1], tangent[0]])
    roll = math.radians(view.roll)
    cr, sr = math.cos(roll), math.sin(roll)
    sev = finding.severity
    p = finding.params
    if kind == "fracture":
        side = (p["side"] * cr + p["depth"] * sr) * radius * 0.9 * sev
        angle = (p["angle_c"] * cr + p["angle_s"] * sr) * sev
        overlap = p["overlap"] * radius * 0.5 * sev
        normal = _rot(tangent, p["obliquity"])
        shift = across * side - tangent * overlap
        gap = p["gap"] * (0.4 + 0.6 * sev)
        if p["impacted"] and abs(side) < radius * 0.6:
            # An impacted fracture shows a dense band where the fragments are driven into each other.
            edits.bands.setdefault(bone.name, []).append(
                Band(tf.point(point), _unit(tf.vector(normal)), 1.6 * tf.scale * (0.6 + sev), -1.1 * min(sev, 1.0),
                     wave=0.8 * tf.scale))
            shift = shift + tangent * radius * 0.3 * sev
            gap = 0.0
        if p["fragment"] and not p["impacted"]:
            side_sign = 1.0 if side >= 0 else -1.0
            centre = point + across * side_sign * radius * (1.25 + 0.3 * sev) + tangent * radius * 0.3
            piece = Blob(centre, (radius * 0.55, radius * 0.28), math.atan2(tangent[1], tangent[0]) + 0.4, radius * 0.3,
                         radius * 0.08, 0.6)
            edits.bones.append(Bone("fragment", [piece], 0.9))
        # Soft-tissue swelling over a fresh fracture.
        swell = radius * (2.4 + 1.0 * min(sev, 1.3))
        edits.soft.append((Blob(point + across * radius * 0.3, (swell * 1.3, swell), math.atan2(tangent[1], tangent[0]),
                                swell * 0.8), 0.7 * min(sev, 1.2)))
        edits.breaks[bone.name] = Break(tf.point(point), _unit(tf.vector(normal)), tf.vector(shift), tf.turn(angle),
                                        gap * tf.scale, wave=p["wave"] * tf.scale * (0.5 + 0.5 * sev), phase=p["phase"],
                                        period=radius * 1.3 * tf.scale)
        ends = [point + across * radius * 1.25 * s + tangent * radius * 0.9 * u for s in (-1, 1) for u in (-1, 1)]
        return _box_of_points(tf, ends + [e + shift + tangent * abs(angle) * radius * 2 for e in ends])
    if kind == "lesion":
        centre = point + across * p["offset"] * radius
        a = radius * p["length"] * (0.6 + 0.5 * sev)
        b = min(radius * p["width"] * (0.7 + 0.4 * sev), radius * 0.95)
        direction = math.atan2(tangent[1], tangent[0])
        change = p["lucency"] * (0.55 + 0.45 * min(sev, 1.0))
        if p["sclerotic"]:
            change = -0.6 * change  # a blastic lesion: denser, not lucent
        blob = Blob(centre, (a, b), direction)
        edits.holes.setdefault(bone.name, []).append(
            Hole(blob.transformed(tf), -change, rim=p["rim"] * (0.5 + 0.5 * sev), ragged=p["ragged"]))
        # Soft tissue swells over the lesion; an aggressive one breaks out into a mass.
        mass = 0.45 if p["ragged"] else 0.2
        edits.soft.append((Blob(centre + across * radius * 0.8 * (1 if p["offset"] >= 0 else -1),
                                (a * 1.1, radius * 1.7), direction, radius * 1.4), mass * min(sev, 1.2)))
        return _box_of_points(tf, [centre + tangent * a * s + across * (b + 1.5) * u for s in (-1.1, 1.1) for u in (-1, 1)])
    if kind == "periosteal":
        return _periosteal(finding, bone, axis, tf, edits)
    if kind == "hardware":
        return _hardware(finding, bone, axis, view, tf, edits)
    raise ValueError(f"unknown finding kind {kind}")


def _periosteal(finding: Finding, bone: Bone, axis: Tube, tf: Transform, edits: Edits) -> Box:
    p, sev = finding.params, finding.severity
    _, _, radius = axis.at(finding.t)
    half = p["length"] * radius * (0.6 + 0.4 * sev) / max(axis.length, 1.0) / 2
    ts = np.linspace(max(finding.t - half, 0.02), min(finding.t + half, 0.98), 7)
    shapes, corners = [], []
    sides = (-1, 1) if p["sides"] == 0 else (p["sides"],)
    for side in sides:
        for layer in range(p["layers"]):
            pts, radii = [], []
            for i, t in enumerate(ts):
                pt, tan, r = axis.at(float(t))
                across = np.array([-tan[1], tan[0]])
                taper = math.sin(math.pi * i / (len(ts) - 1)) ** 0.6
                out = r + (0.8 + p["spacing"] * (layer + 1)) * taper * (0.7 + 0.5 * sev)
                pts.append(pt + across * side * out)
                radii.append((0.6 + 1.0 * taper * min(sev, 1.3)) * max(r / 6.0, 0.5) ** 0.5)
            # Solid new bone: no canal, so the whole section counts as (dense) marrow.
            shapes.append(Tube(np.array(pts), np.array(radii), np.zeros(len(pts)), np.full(len(pts), 1.0), (1.0, 1.0)))
            corners += [pts[0], pts[-1], pts[len(pts) // 2]]
    edits.bones.append(Bone(f"{bone.name}_periosteal", shapes, 0.8 + 0.4 * min(sev, 1.2)))
    pt, tan, r = axis.at(finding.t)
    # The cortex under the reaction thickens and the marrow turns sclerotic.
    reach = p["length"] * r * (0.6 + 0.4 * sev) / 2
    dense = Blob(pt, (reach, r * 0.9), math.atan2(tan[1], tan[0]))
    edits.holes.setdefault(bone.name, []).append(Hole(dense.transformed(tf), 0.25 + 0.2 * min(sev, 1.2)))
    edits.soft.append((Blob(pt, (r * p["length"] * 0.5, r * 2.4), math.atan2(*axis.at(finding.t)[1][::-1]), r * 2.0), 0.35))
    return _box_of_points(tf, corners, margin=2.0)


def _hardware(finding: Finding, bone: Bone, axis: Tube, view: View, tf: Transform, edits: Edits) -> Box:
    p = finding.params
    device = p["device"]
    point, tangent, radius = axis.at(finding.t)
    across = np.array([-tangent[1], tangent[0]])
    face = p["face"] - math.radians(view.roll)  # angle between the plate's normal and the beam
    pieces: list = []
    if p["fracture"] and device != "nail":  # the fixed fracture, reduced: a faint line
        edits.bands.setdefault(bone.name, []).append(
            Band(tf.point(point), _unit(tf.vector(tangent)), 1.0 * tf.scale, 0.35, wave=0.5 * tf.scale))
    if device == "plate":
        length = min(p["length"] * radius, axis.length * 0.8)
        half = length / 2 / max(axis.length, 1.0)
        t0, t1 = max(finding.t - half, 0.04), min(finding.t + half, 0.96)
        width, thick = max(radius * 1.1, 4.0), max(radius * 0.3, 1.2)
        apparent = width * abs(math.cos(face)) + thick * abs(math.sin(face))
        offset = (radius + thick / 2) * math.sin(face)
        pts = []
        for t in np.linspace(t0, t1, 6):
            pt, tan, r = axis.at(float(t))
            pts.append(pt + np.array([-tan[1], tan[0]]) * (r + thick / 2) * math.sin(face))
        depth = width * thick / max(apparent, 0.5) ** 2
        pieces.append(solid_tube(np.array(pts), apparent / 2, caps=(apparent / 2, apparent / 2), depth=depth))
        n_screws = max(int(length / max(radius * 1.6, 5.0)), 2)
        for t in np.linspace(t0 + (t1 - t0) * 0.08, t1 - (t1 - t0) * 0.08, n_screws):
            if abs(t - finding.t) < 0.02:
                continue
            pt, tan, r = axis.at(float(t))
            acr = np.array([-tan[1], tan[0]])
            pieces += _screw(pt + acr * (r + thick) * math.sin(face), pt - acr * (r + 1.5) * math.sin(face),
                             max(radius * 0.22, 0.9), head=True)
        del offset
    elif device == "nail":
        t0, t1 = 0.02, 0.95
        pts = np.array([axis.at(float(t))[0] for t in np.linspace(t0, t1, 8)])
        r_in = max(radius * 0.42, 1.5)
        pieces.append(solid_tube(pts, r_in, caps=(r_in, r_in * 1.5)))
        for t in (0.08, 0.14, 0.86):
            pt, tan, r = axis.at(t)
            acr = np.array([-tan[1], tan[0]])
            pieces += _screw(pt + acr * (r + 3) * math.cos(face), pt - acr * (r + 2) * math.cos(face), max(radius * 0.2, 1.0))
    elif device == "wires":
        for i in range(p["n_wires"]):
            ang = p["wire_angles"][i] + (0.5 if i % 2 else -0.5) * math.cos(face)
            centre = point + tangent * p["wire_offsets"][i] * radius * 1.5
            direction = _rot(tangent, ang + math.pi / 2 * 0.55 * (1 if i % 2 else -1))
            half = radius * 2.6 + 6.0
            start, end = centre - direction * half, centre + direction * half * 0.7
            pieces.append(solid_tube(np.array([start, end]), max(0.55, radius * 0.12), caps=(0.5, 0.5)))
            bend = end + _rot(direction, 1.4) * 5.0
            pieces.append(solid_tube(np.array([end, bend]), max(0.55, radius * 0.12), caps=(0.5, 0.5)))
    elif device == "screws":
        n = 1 if bone.name == "scaphoid" else 2
        for i in range(n):
            centre = point + tangent * radius * (0.9 * i - 0.45 * (n - 1))
            d = _rot(tangent, 0.25) if bone.name == "scaphoid" else _rot(across, 0.3 * (i - 0.5))
            reach = radius * (1.7 if bone.name == "scaphoid" else 1.15)
            pieces += _screw(centre - d * reach, centre + d * reach, max(radius * 0.25, 1.1), head=bone.name != "scaphoid")
    edits.metal += pieces
    corners = []
    for piece in pieces:
        x0, y0, x1, y1 = piece.transformed(tf).bbox(1.0)
        corners += [(x0, y0), (x1, y1)]
    corners = np.array(corners)
    return float(corners[:, 0].min()), float(corners[:, 1].min()), float(corners[:, 0].max()), float(corners[:, 1].max())


def _screw(start, end, radius: float, head: bool = False) -> list:
    """A threaded screw: a serrated outline, and a head at ``start``."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    length = float(np.hypot(*(end - start)))
    n = max(int(length / (radius * 0.9)), 2) * 2
    pts = start + np.linspace(0.0, 1.0, n)[:, None] * (end - start)
    radii = np.where(np.arange(n) % 2 == 0, radius, radius * 0.72)
    pieces = [solid_tube(pts, radii, caps=(radius * 0.6, radius * 0.8))]
    if head:
        pieces.append(Blob(start, (radius * 1.8, radius * 1.8), 0.0, radius * 1.4))
    return pieces


def _arthroplasty(finding: Finding, scene: Scene, tf: Transform, edits: Edits) -> Box | None:
    bone = scene.bones.get("humerus")
    if bone is None:
        return None
    head = next((s for s in bone.shapes if isinstance(s, Blob) and s.axes[0] > 20), None)
    if head is None:
        return None
    axis = bone.axis
    cap = Blob(head.center + (axis.points[0] - head.center) * 0.1, (head.axes[0] * 0.95, head.axes[0] * 0.95), 0.0,
               head.axes[0] * 0.5)
    stem_pts = np.array([axis.at(t)[0] for t in (0.0, 0.15, 0.3, 0.45)])
    stem = solid_tube(stem_pts, np.array([8.0, 6.5, 5.0, 3.5]), caps=(4.0, 4.0))
    edits.metal += [cap, stem]
    corners = []
    for piece in (cap, stem):
        x0, y0, x1, y1 = piece.transformed(tf).bbox(1.0)
        corners += [(x0, y0), (x1, y1)]
    corners = np.array(corners)
    return float(corners[:, 0].min()), float(corners[:, 1].min()), float(corners[:, 0].max()), float(corners[:, 1].max())


def _degenerative(finding: Finding, scene: Scene, joint, tf: Transform, edits: Edits) -> Box:
    p, sev = finding.params, finding.severity
    axis = joint.axis
    across = np.array([-axis[1], axis[0]])
    half = joint.width / 2
    spurs = []
    for i in range(p["n_spurs"]):
        pos, size, side = p["spurs"][i]
        which = -1 if i % 2 == 0 else 1  # proximal or distal bone's margin
        base = joint.point + across * side * half * (0.95 + 0.1 * pos) + axis * which * (1.5 + 0.8 * size)
        length = (2.5 + 2.5 * size) * (0.5 + 0.6 * sev) * max(joint.width / 16.0, 0.6) ** 0.5
        direction = math.atan2(*(across * side + axis * (-which) * 0.6)[::-1])
        # power < 2 gives a pointed, beak-like spur.
        spurs.append(Blob(base + across * side * length * 0.35, (length, length * 0.5), direction, length * 0.6, 0.0, 0.9,
                          power=1.5))
    edits.bones.append(Bone("osteophytes", spurs, 0.9))
    # Synovitis / effusion: the soft tissue round the joint swells.
    edits.soft.append((Blob(joint.point, (half * 1.6, half * 1.2 + 3.0), math.atan2(across[1], across[0]), half),
                       0.3 * min(sev, 1.2)))
    for name, sign in zip(joint.bones, (-1, 1)):
        if name not in scene.bones:
            continue
        centre = joint.point + axis * sign * (2.5 + 1.5 * sev)
        blob = Blob(centre, (half * 0.8, 2.0 + 1.2 * sev), math.atan2(across[1], across[0]))
        edits.holes.setdefault(name, []).append(Hole(blob.transformed(tf), p["sclerosis"] * (0.5 + 0.5 * sev)))
        if p["cyst"] and sign > 0:
            r = min(1.2 + 1.0 * sev, half * 0.3)
            cyst = Blob(centre + axis * 1.5 + across * half * 0.3, (r, r))
            edits.holes[name].append(Hole(cyst.transformed(tf), -0.7, rim=0.4))
    reach = half * 1.25 + 3.0
    return _box_of_points(tf, [joint.point + across * s * reach + axis * u * (6.0 + 2.0 * sev) for s in (-1, 1) for u in (-1, 1)])


# --- normal variants --------------------------------------------------------------------

VARIANTS = ("bone_island", "nutrient_canal", "ring", "calcification", "button")


@dataclass
class Variant:
    kind: str
    site: str
    t: float
    params: dict


def draw_variants(part: str, difficulty: Difficulty, scene_bones: list[str], rng: np.random.Generator) -> list[Variant]:
    n = int(rng.poisson(difficulty.variants))
    out = []
    long_bones = [b for b in scene_bones if not b.startswith(("n-1_", "n1_", "rib", "sesamoid"))]
    for _ in range(n):
        options = {"bone_island": 1.0, "nutrient_canal": 1.0, "calcification": 0.7}
        if part in ("XR_HAND", "XR_FINGER"):
            options["ring"] = 0.25
        if part in ("XR_SHOULDER", "XR_HUMERUS"):
            options["button"] = 0.3
        names = list(options)
        weights = np.array([options[k] for k in names])
        kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        site = long_bones[rng.integers(len(long_bones))] if long_bones else ""
        if kind == "ring":
            site = "proximal_phalanx" if part == "XR_FINGER" else f"d{int(rng.integers(3, 6))}_proximal_phalanx"
        out.append(Variant(kind, site, float(rng.uniform(0.25, 0.75)),
                           {"size": float(rng.uniform(0.6, 1.4)), "angle": float(rng.normal(0, 0.5)),
                            "offset": float(rng.uniform(-0.4, 0.4)), "x": float(rng.uniform(-1, 1)),
                            "y": float(rng.uniform(-1, 1))}))
    return out


def variant_edits(variant: Variant, scene: Scene, tf: Transform, edits: Edits) -> None:
    p = variant.params
    if variant.kind == "button":
        cx, cy, w, h = scene.frame
        centre = np.array([cx + p["x"] * w * 0.35, cy + p["y"] * h * 0.35])
        r = 4.0 + 3.0 * p["size"]
        edits.metal.append(Blob(centre, (r, r), 0.0, 0.6))
        edits.metal.append(Blob(centre + [r * 0.3, 0], (r * 0.25, r * 0.25), 0.0, 0.5))
        return
    bone = scene.bones.get(variant.site)
    if bone is None:
        return
    point, tangent, radius = bone.axis.at(variant.t)
    across = np.array([-tangent[1], tangent[0]])
    if variant.kind == "bone_island":
        r = radius * 0.22 * p["size"]
        blob = Blob(point + across * p["offset"] * radius, (r * 1.3, r), math.atan2(tangent[1], tangent[0]) + p["angle"])
        edits.holes.setdefault(bone.name, []).append(Hole(blob.transformed(tf), 0.9))
    elif variant.kind == "nutrient_canal":
        at = point + across * radius * 0.75 * (1 if p["offset"] > 0 else -1)
        normal = _rot(tangent, 0.5 + 0.3 * p["angle"])
        edits.bands.setdefault(bone.name, []).append(
            Band(tf.point(at), _unit(tf.vector(normal)), 0.7 * tf.scale, 0.45, length=radius * 0.45 * tf.scale))
    elif variant.kind == "ring":
        point, tangent, radius = bone.axis.at(0.45)
        across = np.array([-tangent[1], tangent[0]])
        reach = radius * 2.3
        edits.metal.append(solid_tube(np.array([point - across * reach, point + across * reach]), 2.2, caps=(1.0, 1.0),
                                      depth=0.7))
    elif variant.kind == "calcification":
        # A calcified artery running beside the bone, dotted and tortuous.
        pts, ts = [], np.linspace(0.1, 0.9, 9)
        for i, t in enumerate(ts):
            pt, tan, r = bone.axis.at(float(t))
            acr = np.array([-tan[1], tan[0]])
            pts.append(pt + acr * (r * 1.6 + 2.0 * math.sin(i * 1.3 + p["angle"] * 3)) * (1 if p["offset"] > 0 else -1))
        edits.bones.append(Bone("calcification", [Tube(np.array(pts), np.full(len(pts), 0.55), np.zeros(len(pts)),
                                                       np.ones(len(pts)), (0.5, 0.5))], 0.6))


# --- helpers ----------------------------------------------------------------------------

def _rot(v, radians: float) -> np.ndarray:
    c, s = math.cos(radians), math.sin(radians)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / max(float(np.hypot(*v)), 1e-9)


def _nearest_on_polyline(tube: Tube, point) -> tuple[float, float]:
    """Distance from ``point`` to the axis of ``tube`` and the tube's radius there."""
    best = (math.inf, 0.0)
    for i in range(len(tube.points) - 1):
        a, b = tube.points[i], tube.points[i + 1]
        d = b - a
        t = float(np.clip(np.dot(point - a, d) / max(np.dot(d, d), 1e-9), 0.0, 1.0))
        dist = float(np.hypot(*(a + t * d - point)))
        if dist < best[0]:
            best = (dist, float(tube.radii[i] + t * (tube.radii[i + 1] - tube.radii[i])))
    return best


def _box_of_points(tf: Transform, points, margin: float = 1.0) -> Box:
    pts = tf.points(np.asarray(points, float))
    m = margin * tf.scale
    return (float(pts[:, 0].min() - m), float(pts[:, 1].min() - m), float(pts[:, 0].max() + m), float(pts[:, 1].max() + m))
