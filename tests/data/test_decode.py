"""read_greyscale: every PNG/JPEG mode, DICOM transforms, and every kind of bad file."""

from __future__ import annotations

import time
import zlib

import numpy as np
import pytest
from image_files import png_bytes, write_dicom
from PIL import Image

from muracli.data import decode
from muracli.data.decode import REASONS, read_greyscale, scale_to_uint8
from muracli.errors import ImageReadError

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (20, 30), dtype=np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma computed independently of Pillow."""
    return np.rint(rgb[..., :3].astype(np.float64) @ [0.299, 0.587, 0.114]).astype(int)


def reason_of(path, **kwargs) -> str:
    with pytest.raises(ImageReadError) as info:
        read_greyscale(path, **kwargs)
    assert info.value.reason in REASONS
    return info.value.reason


# --------------------------------------------------------------------- PNG/JPEG modes


def test_l_png_is_returned_unchanged(tmp_path):
    Image.fromarray(GREY).save(tmp_path / "l.png")
    out = read_greyscale(tmp_path / "l.png")
    assert out.dtype == np.uint8 and out.shape == (20, 30)
    np.testing.assert_array_equal(out, GREY)


def test_rgb_png_becomes_601_luma(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "rgb.png")
    out = read_greyscale(tmp_path / "rgb.png")
    assert np.abs(out.astype(int) - luma(RGB)).max() <= 1


def test_rgba_drops_alpha_instead_of_compositing_on_black(tmp_path):
    transparent = np.dstack([RGB, np.zeros((20, 30), np.uint8)])
    Image.fromarray(transparent, "RGBA").save(tmp_path / "rgba.png")
    out = read_greyscale(tmp_path / "rgba.png")
    assert np.abs(out.astype(int) - luma(RGB)).max() <= 1
    assert out.mean() > 50  # composited onto black it would be all zeros


def test_la_keeps_the_grey_channel(tmp_path):
    Image.fromarray(np.dstack([GREY, np.zeros_like(GREY)]), "LA").save(tmp_path / "la.png")
    assert Image.open(tmp_path / "la.png").mode == "LA"
    np.testing.assert_array_equal(read_greyscale(tmp_path / "la.png"), GREY)


def test_16_bit_png_is_scaled_by_its_real_range_not_clipped(tmp_path):
    values = np.linspace(1000, 4000, 20 * 30).reshape(20, 30).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode.startswith("I")
    out = read_greyscale(tmp_path / "i16.png")
    assert out.min() == 0 and out.max() == 255
    expected = np.rint((values.astype(float) - 1000) / 3000 * 255)
    assert np.abs(out - expected).max() <= 1
    assert len(np.unique(out)) > 200  # a ramp, not a clipped white image


@pytest.mark.parametrize("mode", ["I;16B", "I;16"])
def test_16_bit_tiff_byte_orders(tmp_path, mode):
    values = (np.arange(600).reshape(20, 30) * 5 + 1000).astype(">u2" if mode == "I;16B" else "<u2")
    Image.frombytes(mode, (30, 20), values.tobytes()).save(tmp_path / "x.tif")
    out = read_greyscale(tmp_path / "x.tif")
    assert out[0, 0] == 0 and out[-1, -1] == 255
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)


def test_32_bit_and_float_images_are_scaled(tmp_path):
    Image.fromarray((np.arange(600).reshape(20, 30) * 100_000).astype(np.int32)).save(tmp_path / "i.tif")
    Image.fromarray(np.linspace(-1, 1, 600, dtype=np.float32).reshape(20, 30)).save(tmp_path / "f.tif")
    for name in ("i.tif", "f.tif"):
        out = read_greyscale(tmp_path / name)
        assert out[0, 0] == 0 and out[-1, -1] == 255


def test_palette_png_goes_through_rgb(tmp_path):
    pal = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    pal.save(tmp_path / "pt.png", transparency=0)
    reference = np.asarray(pal.convert("RGB"))
    for name in ("p.png", "pt.png"):
        assert Image.open(tmp_path / name).mode == "P"
        assert np.abs(read_greyscale(tmp_path / name).astype(int) - luma(reference)).max() <= 1


def test_bilevel_maps_to_0_and_255(tmp_path):
    Image.fromarray(GREY > 128).save(tmp_path / "b.png")
    out = read_greyscale(tmp_path / "b.png")
    assert set(np.unique(out)) == {0, 255}
    np.testing.assert_array_equal(out == 255, GREY > 128)


def test_jpeg_grey_rgb_and_cmyk(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 30, dtype=np.uint8), (20, 1))
    Image.fromarray(smooth).save(tmp_path / "g.jpg", quality=95)
    assert np.abs(read_greyscale(tmp_path / "g.jpg").astype(int) - smooth).max() <= 4
    rgb = np.dstack([smooth, smooth, smooth])
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    for name in ("c.jpg", "cmyk.jpg"):
        assert np.abs(read_greyscale(tmp_path / name).astype(int) - smooth).max() <= 6


def test_exif_orientation_turns_a_jpeg_upright(tmp_path):
    tall = np.zeros((40, 20), np.uint8)
    tall[:10] = 255  # bright top band
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    Image.fromarray(tall).save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    out = read_greyscale(tmp_path / "rotated.jpg")
    assert out.shape == (20, 40)
    assert out[:, -10:].mean() > 200 and out[:, :20].mean() < 50  # the band is now on the right


def test_progressive_jpeg(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 30, dtype=np.uint8), (20, 1))
    Image.fromarray(smooth).save(tmp_path / "p.jpg", quality=95, progressive=True)
    assert Image.open(tmp_path / "p.jpg").info.get("progressive")
    assert np.abs(read_greyscale(tmp_path / "p.jpg").astype(int) - smooth).max() <= 4


RAMP_12 = (np.arange(30 * 40).reshape(30, 40) * 3 % 4096).astype(np.uint16)


@pytest.mark.parametrize(("options", "tolerance"), [
    ({"lossless": True, "predictor": 1, "bitspersample": 12}, 0),  # lossless 12-bit (process 14)
    ({"lossless": True, "predictor": 7, "bitspersample": 16}, 0),  # lossless 16-bit
    ({"level": 95, "bitspersample": 12}, 3),  # extended 12-bit (process 4)
])
def test_jpegs_pillow_refuses_decode_through_libjpeg_turbo(tmp_path, options, tolerance):
    import imagecodecs
    from PIL import UnidentifiedImageError

    values = RAMP_12 if options["bitspersample"] == 12 else RAMP_12 * 16
    (tmp_path / "x.jpg").write_bytes(imagecodecs.jpeg8_encode(values, **options))
    with pytest.raises(UnidentifiedImageError):
        Image.open(tmp_path / "x.jpg")
    out = read_greyscale(tmp_path / "x.jpg")
    expected = scale_to_uint8(values)  # scaled by the real range, as 16-bit PNGs are
    assert out.shape == (30, 40) and np.abs(out.astype(int) - expected).max() <= tolerance


def test_12_bit_jpeg_cut_short_or_too_large(tmp_path):
    import imagecodecs

    data = imagecodecs.jpeg8_encode(RAMP_12, lossless=True, predictor=1, bitspersample=12)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])  # libjpeg alone would fill it with grey
    assert reason_of(tmp_path / "cut.jpg") == "truncated"
    (tmp_path / "head.jpg").write_bytes(data[:12])
    assert reason_of(tmp_path / "head.jpg") == "truncated"
    sof = data.index(b"\xff\xc3")
    huge = bytearray(data)
    huge[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2  # the frame header claims 60000 x 60000
    (tmp_path / "bomb.jpg").write_bytes(bytes(huge))
    assert reason_of(tmp_path / "bomb.jpg") == "too_large"


def test_other_containers_decode(tmp_path):
    for name in ("x.gif", "x.bmp", "x.tif", "x.webp"):
        Image.fromarray(GREY).save(tmp_path / name, **({"lossless": True} if name.endswith("webp") else {}))
        assert read_greyscale(tmp_path / name).shape == (20, 30)


def test_scale_to_uint8_constant_and_nan():
    assert scale_to_uint8(np.full((3, 3), 7.0)).max() == 0
    out = scale_to_uint8(np.array([[np.nan, 0.0, 10.0]]))
    assert out.tolist() == [[0, 0, 255]]


# ----------------------------------------------------------------------- bad files


def test_zero_byte_file_is_empty(tmp_path):
    (tmp_path / "image1.png").write_bytes(b"")
    assert reason_of(tmp_path / "image1.png") == "empty"


@pytest.mark.parametrize("keep", [0.5, 0.9, -12, -20, 30])
def test_truncated_png_raises_instead_of_returning_part(tmp_path, keep):
    Image.fromarray(RNG.integers(0, 256, (100, 120), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    (tmp_path / "cut.png").write_bytes(data[:cut])
    assert reason_of(tmp_path / "cut.png") == "truncated"


def test_truncated_jpeg(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (100, 120), dtype=np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert reason_of(tmp_path / "cut.jpg") == "truncated"


def test_text_file_named_png_is_not_an_image(tmp_path):
    (tmp_path / "image1.png").write_text("this is not a picture\n")
    assert reason_of(tmp_path / "image1.png") == "not_an_image"


def test_macos_junk_is_junk_by_name_and_by_content(tmp_path):
    Image.fromarray(GREY).save(tmp_path / "._image1.png", format="PNG")
    assert reason_of(tmp_path / "._image1.png") == "junk"
    (tmp_path / "image2.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\0" * 64)
    assert reason_of(tmp_path / "image2.png") == "junk"
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert reason_of(tmp_path / ".DS_Store") == "junk"


def test_missing_file(tmp_path):
    assert reason_of(tmp_path / "nope.png") == "missing"


def test_known_but_unsupported_format(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "x.ico")
    assert reason_of(tmp_path / "x.ico") == "unsupported"


def test_decompression_bomb_header_is_rejected_before_decoding(tmp_path):
    # 100000 x 100000 claimed; over Pillow's own hard limit.
    (tmp_path / "bomb.png").write_bytes(png_bytes(100_000, 100_000))
    # 8000 x 7500 = 60 MP: under Pillow's warning threshold (89 MP), over ours (50 MP).
    # Its IDAT is empty, so decoding would fail as truncated: too_large proves the header check came first.
    (tmp_path / "big.png").write_bytes(png_bytes(8000, 7500))
    started = time.perf_counter()
    assert reason_of(tmp_path / "bomb.png") == "too_large"
    assert reason_of(tmp_path / "big.png") == "too_large"
    assert time.perf_counter() - started < 1.0


def test_real_compressed_bomb_is_rejected(tmp_path):
    # A genuine 1-bit 9000 x 9000 PNG (81 MP) of zeros: ~10 KB on disk.
    row = b"\x00" + b"\x00" * (9000 // 8)
    (tmp_path / "bomb.png").write_bytes(png_bytes(9000, 9000, bit_depth=1, idat=zlib.compress(row * 9000, 9)))
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    assert reason_of(tmp_path / "bomb.png") == "too_large"


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    Image.fromarray(GREY).save(tmp_path / "x.png")
    assert reason_of(tmp_path / "x.png", max_pixels=100) == "too_large"
    monkeypatch.setattr(decode, "MAX_PIXELS", 100)
    assert reason_of(tmp_path / "x.png") == "too_large"


def test_png_header_with_zero_size_is_not_an_image(tmp_path):
    (tmp_path / "zero.png").write_bytes(png_bytes(0, 10))
    assert reason_of(tmp_path / "zero.png") in ("truncated", "not_an_image")


# --------------------------------------------------------------------------- DICOM

pydicom = pytest.importorskip("pydicom")


RAMP12 = np.linspace(0, 4095, 32 * 40).reshape(32, 40).astype(np.uint16)


def test_dicom_12_bit_is_scaled_to_full_range(tmp_path):
    out = read_greyscale(write_dicom(tmp_path / "x.dcm", RAMP12))
    assert out.dtype == np.uint8 and out.shape == (32, 40)
    assert out.min() == 0 and out.max() == 255
    assert np.abs(out.astype(int) - np.rint(RAMP12 / 4095 * 255)).max() <= 1


def test_dicom_16_bit_signed_is_scaled(tmp_path):
    values = np.linspace(-20000, 30000, 32 * 40).reshape(32, 40).astype(np.int16)
    out = read_greyscale(write_dicom(tmp_path / "s.dcm", values, bits=16))
    assert out[0, 0] == 0 and out[-1, -1] == 255


def test_monochrome1_is_inverted(tmp_path):
    mono2 = read_greyscale(write_dicom(tmp_path / "m2.dcm", RAMP12))
    mono1 = read_greyscale(write_dicom(tmp_path / "m1.dcm", RAMP12, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(mono1, 255 - mono2)
    assert mono1[0, 0] == 255


def test_voi_window_is_applied(tmp_path):
    out = read_greyscale(write_dicom(tmp_path / "w.dcm", RAMP12, WindowCenter=2048, WindowWidth=1024))
    below, above = RAMP12 < 1536 - 1, RAMP12 > 2560 + 1
    assert (out[below] == 0).all() and (out[above] == 255).all()
    middle = (RAMP12 > 1700) & (RAMP12 < 2400)
    assert 0 < out[middle].min() and out[middle].max() < 255
    centre = np.abs(RAMP12.astype(int) - 2048).argmin()
    assert abs(int(out.ravel()[centre]) - 128) <= 2


def test_window_that_clips_nothing_keeps_its_meaning(tmp_path):
    # Window 0..8191 around data 0..4095: the data should stay in the lower half.
    out = read_greyscale(write_dicom(tmp_path / "w.dcm", RAMP12, WindowCenter=4096, WindowWidth=8192))
    assert out.max() <= 130 and out.min() == 0


def test_modality_rescale_comes_before_the_window(tmp_path):
    # Stored 0..4095 -> 2*x - 1000 in output units; a narrow window at 0 splits at stored 500.
    out = read_greyscale(write_dicom(tmp_path / "r.dcm", RAMP12, RescaleSlope=2, RescaleIntercept=-1000,
                                     WindowCenter=0, WindowWidth=2))
    assert (out[RAMP12 < 495] == 0).all() and (out[RAMP12 > 505] == 255).all()


def test_window_on_monochrome1(tmp_path):
    out = read_greyscale(write_dicom(tmp_path / "w1.dcm", RAMP12, photometric="MONOCHROME1",
                                     WindowCenter=2048, WindowWidth=1024))
    assert (out[RAMP12 < 1500] == 255).all() and (out[RAMP12 > 2600] == 0).all()


def test_multiframe_takes_the_first_frame(tmp_path):
    frames = np.stack([RAMP12, RAMP12[::-1, ::-1], np.zeros_like(RAMP12)])
    out = read_greyscale(write_dicom(tmp_path / "mf.dcm", frames))
    np.testing.assert_array_equal(out, read_greyscale(write_dicom(tmp_path / "one.dcm", RAMP12)))


def test_colour_dicom_becomes_luma(tmp_path):
    rgb = np.tile(np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None], (32, 1, 3))
    out = read_greyscale(write_dicom(tmp_path / "c.dcm", rgb, photometric="RGB", bits=8))
    assert out.shape == (32, 40)
    assert np.abs(out.astype(int) - rgb[..., 0].astype(int)).max() <= 1


def test_dicom_without_preamble_is_found_by_suffix(tmp_path):
    out = read_greyscale(write_dicom(tmp_path / "raw.dcm", RAMP12, preamble=False))
    assert out.shape == (32, 40) and out.max() == 255


def test_dicom_preamble_wins_over_suffix(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", RAMP12)
    renamed = path.rename(tmp_path / "image1.png")
    assert read_greyscale(renamed).shape == (32, 40)


def test_bad_dicoms(tmp_path):
    path = write_dicom(tmp_path / "full.dcm", RAMP12)
    data = path.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 1000])
    assert reason_of(tmp_path / "cut.dcm") == "truncated"
    (tmp_path / "text.dcm").write_text("not dicom at all\n" * 20)
    assert reason_of(tmp_path / "text.dcm") in ("not_an_image", "truncated")
    huge = write_dicom(tmp_path / "huge.dcm", RAMP12)
    assert reason_of(huge, max_pixels=100) == "too_large"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "examples_palette.dcm", "examples_ybr_color.dcm",
                                  "SC_rgb_rle.dcm", "rtdose.dcm"])
def test_pydicom_sample_files_decode(name):
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name, download=False)
    except Exception:  # pragma: no cover - offline or older pydicom
        path = None
    if path is None:
        pytest.skip(f"{name} is not shipped with this pydicom")
    out = read_greyscale(path, any_modality=True)  # CT, MR, US, RTDOSE: not radiographs, decoded on request
    assert out.dtype == np.uint8 and out.ndim == 2 and out.max() == 255
    assert reason_of(path) == "not_a_radiograph"


def test_pydicom_truncated_sample():
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file("MR_truncated.dcm", download=False)
    except Exception:  # pragma: no cover
        path = None
    if path is None:
        pytest.skip("MR_truncated.dcm is not shipped with this pydicom")
    assert reason_of(path, any_modality=True) == "truncated"
