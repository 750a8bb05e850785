"""Every common DICOM transfer syntax decodes, exactly where lossless, within a stated tolerance where lossy.

Files come from pydicom's wheel where it ships one (MR_small.dcm in six
encodings, the JPEG Extended and JPEG-LS near-lossless samples), else the
test encodes the pixels of MR_small.dcm (a bundled uncompressed file; its
values 127..2145 fit 12 bits) with imagecodecs' encoders and wraps the frame
with pydicom's encapsulation helpers.
"""

from __future__ import annotations

import shutil

import imagecodecs
import numpy as np
import pydicom
import pytest
from image_files import write_dicom
from pydicom.data import get_testdata_file
from pydicom.pixels import pixel_array

from muracli.data.decode import REASONS, read_greyscale
from muracli.data.dicom_codecs import CODECS, plugin_for
from muracli.errors import ImageReadError

MR_SMALL = get_testdata_file("MR_small.dcm", download=False)
REFERENCE = pydicom.dcmread(MR_SMALL).pixel_array  # int16, 64 x 64
BASE = REFERENCE.astype(np.uint16)  # the same values as an unsigned 12-bit radiograph


def stored(path) -> np.ndarray:
    """The first frame's stored values, decoded as ``read_greyscale`` decodes them."""
    ds = pydicom.dcmread(path)
    return pixel_array(ds, index=0, decoding_plugin=plugin_for(str(ds.file_meta.TransferSyntaxUID)))


def syntax_of(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def reason_of(path, **kwargs) -> tuple[str, str]:
    with pytest.raises(ImageReadError) as info:
        read_greyscale(path, **kwargs)
    assert info.value.reason in REASONS
    return info.value.reason, info.value.message


# ----------------------------------------------------------------- pydicom's own files


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),  # implicit VR little endian
        ("MR_small.dcm", "1.2.840.10008.1.2.1"),  # explicit VR little endian
        ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),  # explicit VR big endian
        ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),  # RLE lossless
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),  # JPEG-LS lossless
        ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),  # JPEG 2000 lossless
    ],
)
def test_lossless_samples_of_pydicom_decode_to_the_original_pixels(name, syntax):
    path = get_testdata_file(name, download=False)
    assert syntax_of(path) == syntax
    np.testing.assert_array_equal(stored(path), REFERENCE)
    np.testing.assert_array_equal(read_greyscale(path, any_modality=True), read_greyscale(MR_SMALL, any_modality=True))


def test_jpeg_extended_12_bit_samples_decode():
    """4.51 with 12-bit samples (libjpeg in Pillow refuses these). JPGExtended.dcm and JPEG-lossy.dcm hold
    the same stream; JPEG2000.dcm is the same image through another lossy codec."""
    extended, lossy = (get_testdata_file(n, download=False) for n in ("JPGExtended.dcm", "JPEG-lossy.dcm"))
    assert syntax_of(extended) == syntax_of(lossy) == "1.2.840.10008.1.2.4.51"
    pixels = stored(extended)
    assert pixels.shape == (1024, 256) and pixels.max() > 255  # 12-bit values, not 8-bit
    np.testing.assert_array_equal(pixels, stored(lossy))
    other = stored(get_testdata_file("JPEG2000.dcm", download=False)).astype(float)
    assert np.abs(pixels - other).mean() < 5  # measured 4.25 on values 0..264
    out = read_greyscale(extended, any_modality=True)
    assert out.shape == (1024, 256) and out.max() == 255


@pytest.mark.parametrize("name", ["JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm", "JPEG2000.dcm",
                                  "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_jpeg_dcmtk.dcm", "examples_jpeg2k.dcm"])
def test_other_compressed_samples_decode(name):
    """Near-lossless JPEG-LS (8 and 16 bit), lossy JPEG 2000, colour JPEG Lossless, Baseline and JPEG 2000 (YBR_RCT)."""
    path = get_testdata_file(name, download=False)
    assert syntax_of(path) in CODECS
    out = read_greyscale(path, any_modality=True)
    assert out.dtype == np.uint8 and out.ndim == 2 and out.max() == 255


def test_colour_jpeg_matches_the_uncompressed_original():
    odd, odd_jpeg = (get_testdata_file(n, download=False) for n in ("SC_rgb_small_odd.dcm", "SC_rgb_small_odd_jpeg.dcm"))
    assert syntax_of(odd_jpeg) == "1.2.840.10008.1.2.4.50"
    assert np.abs(stored(odd_jpeg).astype(int) - stored(odd)).max() <= 8  # 3x3 RGB through baseline JPEG


def test_deflated_dataset_decodes(tmp_path):
    assert syntax_of(get_testdata_file("image_dfl.dcm", download=False)) == "1.2.840.10008.1.2.1.99"
    assert read_greyscale(get_testdata_file("image_dfl.dcm", download=False), any_modality=True).shape == (512, 512)
    path = write_dicom(tmp_path / "deflated.dcm", BASE, syntax="1.2.840.10008.1.2.1.99")
    assert syntax_of(path) == "1.2.840.10008.1.2.1.99"
    np.testing.assert_array_equal(stored(path), BASE)


# ------------------------------------------------------- encoded here from MR_small.dcm


def _jpeg_lossless(predictor: int, bits: int) -> bytes:
    return imagecodecs.jpeg8_encode(BASE, lossless=True, predictor=predictor, bitspersample=bits)


# syntax -> (encoder, tolerance in stored values: max |error|, mean |error|); (0, 0) for lossless
ENCODED = {
    "1.2.840.10008.1.2.4.50": (lambda: imagecodecs.jpeg8_encode((BASE >> 4).astype(np.uint8), level=95), (12, 1.5)),
    "1.2.840.10008.1.2.4.51": (lambda: imagecodecs.jpeg8_encode(BASE, level=95, bitspersample=12), (16, 2.5)),
    "1.2.840.10008.1.2.4.57": (lambda: _jpeg_lossless(predictor=4, bits=12), (0, 0)),
    "1.2.840.10008.1.2.4.70": (lambda: _jpeg_lossless(predictor=1, bits=16), (0, 0)),
    "1.2.840.10008.1.2.4.80": (lambda: imagecodecs.jpegls_encode(BASE), (0, 0)),
    "1.2.840.10008.1.2.4.81": (lambda: imagecodecs.jpegls_encode(BASE, level=2), (2, 2)),  # NEAR=2 bounds the error
    "1.2.840.10008.1.2.4.90": (lambda: imagecodecs.jpeg2k_encode(BASE, level=0, reversible=True, codecformat="j2k"), (0, 0)),
    "1.2.840.10008.1.2.4.91": (lambda: imagecodecs.jpeg2k_encode(BASE, level=80, reversible=False, codecformat="j2k"), (32, 8)),
    "1.2.840.10008.1.2.4.201": (lambda: imagecodecs.htj2k_encode(BASE, reversible=True), (0, 0)),
    "1.2.840.10008.1.2.4.203": (lambda: imagecodecs.htj2k_encode(BASE, reversible=True), (0, 0)),
}


@pytest.mark.parametrize("syntax", sorted(ENCODED))
def test_encoded_frames_decode_exactly_or_within_tolerance(tmp_path, syntax):
    encode, (max_error, mean_error) = ENCODED[syntax]
    eight_bit = syntax == "1.2.840.10008.1.2.4.50"
    original = (BASE >> 4).astype(np.uint8) if eight_bit else BASE
    bits = 8 if eight_bit else 12
    path = write_dicom(tmp_path / "IM000001", original, bits=bits, syntax=syntax, frame=encode())
    reference = write_dicom(tmp_path / "plain.dcm", original, bits=bits)
    error = np.abs(stored(path).astype(int) - original)
    assert error.max() <= max_error and error.mean() <= mean_error
    grey, plain = read_greyscale(path).astype(int), read_greyscale(reference).astype(int)
    if max_error == 0:
        np.testing.assert_array_equal(grey, plain)
    else:  # the scaled 8-bit image stays as close as the stored values
        assert np.abs(grey - plain).mean() <= 2 * mean_error * 255 / (original.max() - original.min()) + 1


def test_every_syntax_with_a_codec_is_tested():
    tested = set(ENCODED) | {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80"}
    assert set(CODECS) - tested == {"1.2.840.10008.1.2.4.202"}  # HTJ2K RPCL: the 4.201 codestream with other options


def test_a_transfer_syntax_without_decoder_is_unsupported_and_named(tmp_path):
    path = write_dicom(tmp_path / "video.dcm", BASE, syntax="1.2.840.10008.1.2.4.100", frame=b"\x00\x00\x01\xb3" * 8)
    reason, message = reason_of(path)
    assert reason == "unsupported" and "MPEG2 Main Profile / Main Level" in message


# ------------------------------------------------------------ recognised by content


def test_dicom_without_preamble_or_suffix_is_read_by_content(tmp_path):
    original = read_greyscale(write_dicom(tmp_path / "x.dcm", BASE))
    bare = write_dicom(tmp_path / "1.2.840.113619.2.55.3.604688119", BASE, preamble=False)
    assert bare.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(read_greyscale(bare), original)
    np.testing.assert_array_equal(read_greyscale(shutil.copy(tmp_path / "x.dcm", tmp_path / "IM000001")), original)


def test_objects_without_pixels_are_not_images():
    for name in ("test-SR.dcm", "rtplan.dcm", "ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm"):  # the last two: no preamble
        reason, message = reason_of(get_testdata_file(name, download=False))
        assert reason == "not_an_image" and "without pixel data" in message


def test_other_modalities_are_not_radiographs_unless_asked(tmp_path):
    for modality in ("CT", "MR", "US", "MG"):
        path = write_dicom(tmp_path / f"{modality}.dcm", BASE, Modality=modality)
        reason, message = reason_of(path)
        assert reason == "not_a_radiograph" and f"is a {modality} image" in message
        assert read_greyscale(path, any_modality=True).shape == (64, 64)
    for modality in ("CR", "DX", "RG", ""):  # radiographs, and files that do not say
        assert read_greyscale(write_dicom(tmp_path / f"ok{modality}.dcm", BASE, Modality=modality)).shape == (64, 64)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"])
@pytest.mark.parametrize("keep", [1 / 3, 0.9])
def test_a_frame_cut_short_is_truncated(tmp_path, syntax, keep):
    """libjpeg would fill the missing rows with grey; CharLS took ~20 s on this JPEG-LS stream cut at a third."""
    frame = ENCODED[syntax][0]()
    path = write_dicom(tmp_path / "cut.dcm", BASE, syntax=syntax, frame=frame[: int(len(frame) * keep)])
    assert reason_of(path)[0] == "truncated"
