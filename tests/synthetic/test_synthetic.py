"""The synthetic MURA generator: layout, labels, findings, determinism, safety."""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from muracli.data.layout import BODY_PARTS, read_layout
from muracli.errors import ConfigError, DataError
from muracli.synthetic import DIFFICULTIES, FINDINGS_CSV, KINDS, SyntheticSummary, generate_synthetic, plan_studies
from muracli.synthetic.plan import MURA_TRAIN_STUDIES, VIEW_COUNTS

IMAGE_RE = re.compile(r"^MURA-v1\.1/(train|valid)/(XR_[A-Z]+)/patient(\d{5})/study(\d+)_(positive|negative)/image(\d+)\.png$")
STUDY_RE = re.compile(r"^MURA-v1\.1/(train|valid)/(XR_[A-Z]+)/patient(\d{5})/study(\d+)_(positive|negative)/$")
MAX_SIDE = 96


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, SyntheticSummary]:
    base = tmp_path_factory.mktemp("synthetic") / "data"
    summary = generate_synthetic(base, studies=40, seed=3, max_side=MAX_SIDE, workers=1)
    return base, summary


def _lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    assert b"\r" not in raw, f"{path.name} must use LF line endings"
    assert raw.endswith(b"\n")
    return raw.decode("utf-8").splitlines()


def test_tree_parses_independently(small):
    base, summary = small
    root = base / "MURA-v1.1"
    assert summary.root == root.resolve()
    patients: dict[str, set[int]] = {}
    parts_seen: dict[str, set[str]] = {}
    for split in ("train", "valid"):
        study_lines = _lines(root / f"{split}_labeled_studies.csv")
        labels = {}
        for line in study_lines:
            study, label = line.split(",")
            match = STUDY_RE.match(study)
            assert match, study
            assert match.group(1) == split
            assert label in ("0", "1")
            assert int(label) == (match.group(5) == "positive"), "label must match the folder suffix"
            labels[study] = int(label)
        assert len(labels) == len(study_lines) == summary.studies[split]
        image_lines = _lines(root / f"{split}_image_paths.csv")
        assert len(image_lines) == len(set(image_lines)) == summary.images[split]
        studies_with_images = set()
        views = defaultdict(list)
        for line in image_lines:
            match = IMAGE_RE.match(line)
            assert match, line
            assert match.group(1) == split
            study = line.rsplit("/", 1)[0] + "/"
            assert study in labels
            studies_with_images.add(study)
            views[study].append(int(match.group(6)))
            patients.setdefault(split, set()).add(int(match.group(3)))
            parts_seen.setdefault(split, set()).add(match.group(2))
            with Image.open(base / line) as img:
                img.load()
                assert img.format == "PNG"
                assert img.mode in ("L", "RGB")
                assert max(img.size) <= MAX_SIDE
        assert studies_with_images == set(labels)
        for study, numbers in views.items():
            assert sorted(numbers) == list(range(1, len(numbers) + 1)), study
    assert not patients["train"] & patients["valid"], "patients must not overlap between splits"
    assert min(patients["valid"]) > max(patients["train"]), "valid patient numbers continue after train's"
    for split in ("train", "valid"):
        assert parts_seen[split] == set(BODY_PARTS)


def test_read_layout_finds_no_problems(small):
    base, summary = small
    layout = read_layout(base)
    assert layout.problems == []
    assert len(layout.studies) == summary.total_studies
    assert len(layout.images) == summary.total_images
    assert set(layout.studies["body_part"]) == set(BODY_PARTS)


def test_findings_csv_boxes_lie_in_abnormal_images(small):
    base, summary = small
    root = base / "MURA-v1.1"
    with open(root / FINDINGS_CSV, newline="") as fh:
        reader = csv.reader(fh)
        assert next(reader) == ["image", "kind", "x0", "y0", "x1", "y1"]
        rows = list(reader)
    assert rows, "a dataset with abnormal studies has finding boxes"
    listed = set(_lines(root / "train_image_paths.csv")) | set(_lines(root / "valid_image_paths.csv"))
    kinds = Counter()
    for image, kind, *box in rows:
        assert image in listed
        assert "_positive/" in image, "only abnormal studies carry findings"
        assert kind in KINDS
        x0, y0, x1, y1 = map(int, box)
        with Image.open(base / image) as img:
            width, height = img.size
        assert 0 <= x0 < x1 < width and 0 <= y0 < y1 < height, (image, box, img.size)
        kinds[kind] += 1
    assert sum(summary.findings.values()) == len(rows)
    assert dict(kinds) == summary.findings


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    one = generate_synthetic(tmp_path / "a", studies=16, seed=7, max_side=64, workers=1)
    two = generate_synthetic(tmp_path / "b", studies=16, seed=7, max_side=64, workers=2)
    other = generate_synthetic(tmp_path / "c", studies=16, seed=8, max_side=64, workers=1)
    files_a = _tree_bytes(one.root)
    assert files_a == _tree_bytes(two.root)
    files_c = _tree_bytes(other.root)
    assert files_a != files_c
    pngs_a = {data for name, data in files_a.items() if name.endswith(".png")}
    pngs_c = {data for name, data in files_c.items() if name.endswith(".png")}
    assert pngs_a and pngs_c and not pngs_a & pngs_c, "another seed draws other images"


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_refuses_to_overwrite_unless_asked(tmp_path):
    generate_synthetic(tmp_path, studies=14, seed=1, max_side=64, workers=1)
    marker = tmp_path / "MURA-v1.1" / "old.txt"
    marker.write_text("old")
    with pytest.raises(DataError) as info:
        generate_synthetic(tmp_path, studies=14, seed=1, max_side=64, workers=1)
    assert "already exists" in info.value.message
    assert "overwrite" in info.value.hint
    assert marker.exists()
    generate_synthetic(tmp_path, studies=14, seed=2, max_side=64, workers=1, overwrite=True)
    assert not marker.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folders left behind"
    assert read_layout(tmp_path).problems == []


def test_interrupted_run_leaves_no_dataset(tmp_path, monkeypatch):
    from muracli.synthetic import study

    calls = {"n": 0}
    real = study.render_study

    def failing(plan, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(plan, **kwargs)

    monkeypatch.setattr(study, "render_study", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path, studies=14, seed=1, max_side=64, workers=1)
    assert list(tmp_path.iterdir()) == []
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "new" / "data", studies=14, seed=1, max_side=64, workers=1)
    assert not (tmp_path / "new" / "data").exists(), "a folder the run created is removed again"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"studies": 5},
        {"studies": 100_000},
        {"studies": 20.5},
        {"difficulty": "impossible"},
        {"valid_fraction": 0.0},
        {"valid_fraction": 1.0},
        {"max_side": 10},
        {"seed": -1},
        {"workers": 0},
    ],
)
def test_bad_arguments_are_config_errors(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        generate_synthetic(tmp_path / "out", **{"studies": 20, **kwargs})
    assert not (tmp_path / "out").exists()


def test_progress_reports_every_study(tmp_path):
    events = []
    generate_synthetic(tmp_path, studies=14, seed=0, max_side=64, workers=1,
                       progress=lambda task, done, total, **_: events.append((task, done, total)))
    assert events[0][1] == 0 and events[-1][1] == events[-1][2] == 14
    assert [e[1] for e in events] == sorted(e[1] for e in events)


def test_plan_keeps_mura_class_balance_and_shares():
    plans = plan_studies(6000, seed=0)
    assert len(plans) == 6000
    total_mura = sum(sum(v) for v in MURA_TRAIN_STUDIES.values())
    for part in BODY_PARTS:
        mine = [p for p in plans if p.body_part == part]
        normal, abnormal = MURA_TRAIN_STUDIES[part]
        assert abs(np.mean([p.label for p in mine]) - abnormal / (normal + abnormal)) < 0.02, part
        assert abs(len(mine) / len(plans) - (normal + abnormal) / total_mura) < 0.01, part
        mean_views = np.mean([p.n_views for p in mine])
        expected = float(np.dot(np.arange(1, 6), VIEW_COUNTS[part]))
        assert abs(mean_views - expected) < 0.12, part
    assert abs(sum(p.split == "valid" for p in plans) / len(plans) - 0.2) < 0.01


def test_plan_structure():
    plans = plan_studies(400, seed=5)
    by_patient = defaultdict(list)
    for p in plans:
        by_patient[(p.split, p.patient)].append(p)
        assert p.study_path.endswith(("_positive/", "_negative/"))
        assert (p.finding is not None) == bool(p.label)
        assert len(p.visible) == p.n_views
        assert any(p.visible) == bool(p.label), "an abnormal study shows its finding in at least one view"
    assert any(len(v) > 1 for v in by_patient.values()), "some patients have several studies"
    for studies in by_patient.values():
        assert sorted(p.study for p in studies) == list(range(1, len(studies) + 1))
        assert len({p.body_part for p in studies}) == 1
    train = {p.patient for p in plans if p.split == "train"}
    valid = {p.patient for p in plans if p.split == "valid"}
    assert not train & valid and min(valid) == max(train) + 1
    assert any(not all(p.visible) for p in plans if p.label and p.n_views > 1), \
        "some abnormal views do not show the finding"
    assert {p.finding for p in plans if p.finding} >= {"fracture", "hardware", "lesion"}
    assert [p.index for p in plans] == list(range(len(plans)))


@pytest.mark.parametrize("studies", [14, 60])
def test_every_body_part_in_both_splits_even_when_small(studies):
    plans = plan_studies(studies, seed=0)
    for split in ("train", "valid"):
        assert {p.body_part for p in plans if p.split == split} == set(BODY_PARTS)
    if studies >= 60:
        for part in BODY_PARTS:
            assert {p.label for p in plans if p.body_part == part and p.split == "train"} == {0, 1}


def test_plan_is_deterministic():
    assert plan_studies(200, seed=11) == plan_studies(200, seed=11)
    assert plan_studies(200, seed=11) != plan_studies(200, seed=12)


def test_difficulties_are_known():
    assert set(DIFFICULTIES) == {"easy", "normal", "hard"}
    easy, hard = DIFFICULTIES["easy"], DIFFICULTIES["hard"]
    assert easy.severity[0] > hard.severity[1] - 0.5 and easy.visibility > hard.visibility


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_every_difficulty_renders(tmp_path, difficulty):
    summary = generate_synthetic(tmp_path, studies=20, seed=4, difficulty=difficulty, max_side=80, workers=1)
    assert summary.difficulty == difficulty
    assert read_layout(tmp_path).problems == []
    assert sum(summary.findings.values()) > 0


def test_render_study_boxes_cover_every_kind_of_finding():
    # Every kind of finding on every study type where it occurs renders and is boxed in some view.
    from muracli.synthetic.findings import KIND_WEIGHTS
    from muracli.synthetic.plan import StudyPlan
    from muracli.synthetic.study import render_study

    index = 0
    for part, weights in KIND_WEIGHTS.items():
        for kind in weights:
            index += 1
            plan = StudyPlan(index, "train", part, index, 1, 1, (0, 1), kind, (True, True))
            views = render_study(plan, seed=9, max_side=64)
            assert all(v.pixels.dtype == np.uint8 and max(v.pixels.shape[:2]) <= 64 for v in views)
            assert any(v.box is not None and v.kind == kind for v in views), (part, kind)


def test_visibility_sets_how_many_views_show_the_finding():
    from muracli.synthetic.plan import plan_studies

    def shown(visibility):
        plans = plan_studies(300, seed=4, difficulty="easy", visibility=visibility)
        multi = [p for p in plans if p.label and len(p.views) > 1 and p.finding not in ("hardware", "dislocation")]
        return plans, multi

    never, multi_never = shown(0.0)
    always, multi_always = shown(1.0)
    assert multi_never and all(sum(p.visible) == 1 for p in multi_never)  # only the one sure view
    assert all(all(p.visible) for p in multi_always)
    # the same studies, views and findings: only the visibility differs
    assert [(p.label, p.views, p.finding) for p in never] == [(p.label, p.views, p.finding) for p in always]
    with pytest.raises(ConfigError):
        plan_studies(20, visibility=1.5)


def test_the_difficulty_levels_are_the_choices_the_cli_offers():
    from muracli.choices import DIFFICULTIES as NAMES

    assert tuple(DIFFICULTIES) == NAMES
