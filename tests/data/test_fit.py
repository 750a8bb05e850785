"""fit_square: pad keeps the aspect ratio, stretch resizes, crop keeps the centre."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from muracli.data.fit import FITS, fit_square
from muracli.errors import ConfigError


def test_pad_keeps_aspect_and_pads_with_zero_bands():
    tall = np.full((60, 40), 200, np.uint8)  # H x W = 60 x 40 -> 30 x 20 inside 30 x 30
    out = fit_square(tall, 30, "pad")
    assert out.shape == (30, 30) and out.dtype == np.uint8
    assert (out[:, :5] == 0).all() and (out[:, 25:] == 0).all()
    assert (out[:, 5:25] == 200).all()

    wide = np.full((40, 60), 90, np.uint8)
    out = fit_square(wide, 30, "pad")
    assert (out[:5] == 0).all() and (out[25:] == 0).all() and (out[5:25] == 90).all()


def test_pad_odd_padding_is_centred():
    out = fit_square(np.full((50, 21), 255, np.uint8), 10, "pad")  # 10 x 4 (4.2 rounds to 4)
    cols = np.flatnonzero(out.max(axis=0))
    assert cols.tolist() == [3, 4, 5, 6]


def test_stretch_is_a_plain_bilinear_resize():
    img = np.random.default_rng(0).integers(0, 256, (60, 40), dtype=np.uint8)
    reference = np.asarray(Image.fromarray(img).resize((32, 32), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(fit_square(img, 32, "stretch"), reference)


def test_crop_keeps_the_centre():
    img = np.zeros((40, 80), np.uint8)
    img[:, 40:] = 255  # left half black, right half white
    out = fit_square(img, 40, "crop")  # already 40 high: columns 20..60 are kept
    assert out.shape == (40, 40)
    assert (out[:, :20] == 0).all() and (out[:, 20:] == 255).all()

    tall = np.zeros((120, 30), np.uint8)
    tall[:30] = 255  # the top band is outside the centre crop
    out = fit_square(tall, 15, "crop")  # 60 x 15, rows 22..37 kept
    assert (out == 0).all()


def test_downscaling_is_antialiased():
    checker = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = fit_square(checker, 64, "stretch")
    # Without antialiasing a 1-px checkerboard aliases to black or white.
    assert abs(out.mean() - 127.5) < 3 and out.std() < 10


def test_same_size_is_unchanged_and_a_copy():
    img = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)
    for fit in FITS:
        out = fit_square(img, 32, fit)
        np.testing.assert_array_equal(out, img)
        assert out is not img


def test_bad_arguments():
    with pytest.raises(ConfigError):
        fit_square(np.zeros((4, 4), np.uint8), 8, "squash")
    with pytest.raises(ConfigError):
        fit_square(np.zeros((4, 4), np.uint8), 0, "pad")
    with pytest.raises(ValueError):
        fit_square(np.zeros((4, 4, 3), np.uint8), 8, "pad")


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), size=st.integers(1, 64), fit=st.sampled_from(FITS))
def test_any_shape_gives_a_square(h, w, size, fit):
    out = fit_square(np.full((h, w), 100, np.uint8), size, fit)
    assert out.shape == (size, size) and out.dtype == np.uint8
    if fit != "pad":
        assert (out == 100).all()
    else:
        assert out.max() == 100 and ((out == 0) | (out == 100)).all()
