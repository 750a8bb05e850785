"""The example montage (`mura stats --montage`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from muracli.data.layout import read_layout
from muracli.data.montage import draw_montage
from muracli.synthetic import generate_synthetic


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("montage") / "data"
    generate_synthetic(base, studies=30, seed=2, max_side=96, workers=1)
    return base


def test_montage_of_synthetic_data(synthetic, tmp_path):
    out = draw_montage(read_layout(synthetic), tmp_path / "sheets" / "montage.png", seed=0)
    assert out == tmp_path / "sheets" / "montage.png"
    with Image.open(out) as img:
        img.load()
        assert img.format == "PNG" and img.mode == "RGB"
        width, height = img.size
        pixels = np.asarray(img)
    assert 800 <= width <= 1400 and 1500 <= height <= 2400, img.size
    assert pixels.std() > 20, "the sheet shows images, not an empty canvas"
    # Finding boxes are drawn in amber on the abnormal tiles.
    amber = (pixels[..., 0] > 230) & (pixels[..., 1] > 180) & (pixels[..., 1] < 220) & (pixels[..., 2] < 80)
    assert amber.sum() > 20


def test_montage_is_deterministic_per_seed(synthetic, tmp_path):
    layout = read_layout(synthetic)
    a = draw_montage(layout, tmp_path / "a.png", seed=1).read_bytes()
    b = draw_montage(layout, tmp_path / "b.png", seed=1).read_bytes()
    assert a == b


def test_montage_of_a_sparse_tree(tiny_mura, tmp_path):
    # Random-pixel images, some body parts missing, no findings CSV: placeholders, no crash.
    out = draw_montage(read_layout(tiny_mura), tmp_path / "m.png")
    with Image.open(out) as img:
        assert img.size[0] > 800
