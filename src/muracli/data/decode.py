"""Decode one radiograph file (PNG, JPEG, DICOM) into an 8-bit greyscale array.

``read_greyscale`` is the one entry point: the cache (``mura preprocess``)
and ``mura predict`` both go through it, so a model sees the same pixels at
training and at prediction time.

What "greyscale" means per input:

* 8-bit ``L`` is kept as is; RGB, palette, CMYK and bilevel images are
  converted with ITU-R 601 luma (Pillow's ``convert("L")``); alpha is
  dropped, never composited (compositing onto black would darken a
  radiograph whose alpha is a mask).
* 16-bit and 32-bit images (``I;16``, ``I``, ``F``) are scaled from the
  image's real minimum..maximum to 0..255: MURA-style PNGs of 12-bit data
  would otherwise clip to white.
* 12-bit and lossless JPEGs, which Pillow does not open, are decoded by
  imagecodecs (libjpeg-turbo) and scaled like 16-bit images.
* DICOM, recognised by content (``data.dicom.looks_like_dicom``) or a
  ``.dcm`` name: Modality LUT (rescale slope/intercept), then the VOI LUT or
  window centre/width when present, MONOCHROME1 inverted so bone is bright,
  first frame of a multi-frame file, colour converted to luma; the result is
  scaled to 0..255 (the window's output range when a window was applied,
  otherwise the real range). pydicom decodes uncompressed (implicit/explicit
  VR, little/big endian), deflated and RLE pixel data; imagecodecs the JPEG
  Baseline, Extended 12-bit, Lossless, JPEG-LS, JPEG 2000 and HTJ2K frames
  (``data.dicom_codecs``). Objects without pixel data (structured reports,
  RT plans, presentation states) are ``not_an_image``; images of another
  modality than CR, DX or RG are ``not_a_radiograph`` unless asked for.

Every failure is an ``ImageReadError`` whose ``reason`` is one of
``REASONS``, so a batch job can skip and report instead of dying. Huge
images (decompression bombs) are rejected from their header, before any
pixel is decoded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from muracli.data.dicom import RADIOGRAPH_MODALITIES, is_dicom_name, looks_like_dicom
from muracli.errors import ImageReadError

# MURA images are at most 512 px a side; 50 megapixels leaves room for
# full-resolution radiographs (a 43x43 cm detector at 0.1 mm is ~18 MP) while
# bounding one decoded image to ~50 MB (uint8) or ~400 MB (float64 DICOM).
MAX_PIXELS = 50_000_000

# Reasons an image is skipped. "missing" and "unreadable" (an OS error such as
# permission denied) are not image faults but are reported the same way.
REASONS = ("empty", "truncated", "not_an_image", "not_a_radiograph", "junk", "too_large", "unsupported", "missing",
           "unreadable")

# Pillow formats we decode. Restricting them keeps Pillow from handing a file
# to a plugin we never meant to run (EPS would start Ghostscript).
PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "PPM")  # JPEG covers MPO

JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_APPLEDOUBLE_MAGIC = b"\x00\x05\x16\x07"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
_KNOWN_MAGIC = (
    (_PNG_MAGIC, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
)


def read_greyscale(
    path: str | os.PathLike[str], *, max_pixels: int | None = None, any_modality: bool = False
) -> np.ndarray:
    """Decode ``path`` into a uint8 ``H x W`` greyscale array.

    ``max_pixels`` (default ``MAX_PIXELS``) bounds width x height, checked
    from the header before decoding. A DICOM image whose Modality is not a
    radiograph's (``RADIOGRAPH_MODALITIES``) is refused as
    ``not_a_radiograph`` unless ``any_modality``. Raises ``ImageReadError``
    with a ``reason`` from ``REASONS``.
    """
    path = Path(path)
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    name = path.name
    if name.startswith("._") or name in JUNK_NAMES:
        raise ImageReadError(f"{path} is a junk file (macOS/Windows metadata), not an image", "junk")
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageReadError(f"{path} is not a file", "not_an_image")
        with open(path, "rb") as f:
            head = f.read(132)
            if size == 0:
                raise ImageReadError(f"{path} is empty (0 bytes)", "empty")
            if head.startswith(_APPLEDOUBLE_MAGIC):
                raise ImageReadError(f"{path} is a macOS AppleDouble file, not an image", "junk")
            f.seek(0)
            if _is_dicom(head, name):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # pydicom warns on every lenient read
                    return _read_dicom(f, path, limit, any_modality)
            return _read_pillow(f, path, head, size, limit)
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path} does not exist", "missing") from exc
    except MemoryError as exc:
        raise ImageReadError(f"{path} needs more memory to decode than is available", "too_large") from exc
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}", "unreadable") from exc


def _is_dicom(head: bytes, name: str) -> bool:
    """DICOM by content (whatever the name), else a ``.dcm`` name without another format's magic."""
    if looks_like_dicom(head):
        return True
    return is_dicom_name(name) and not any(head.startswith(magic) for magic, _ in _KNOWN_MAGIC)


# --------------------------------------------------------------------- Pillow


def _read_pillow(f, path: Path, head: bytes, size: int, limit: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow warns (and above 2x its own limit raises) on decompression
        # bombs; make the warning an error so it cannot slip through.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(f, formats=_pil_formats())
        except Image.DecompressionBombError as exc:
            raise ImageReadError(f"{path} is too large to decode safely: {exc}", "too_large") from exc
        except Image.DecompressionBombWarning as exc:
            raise ImageReadError(f"{path} is too large to decode safely: {exc}", "too_large") from exc
        except UnidentifiedImageError as exc:
            fmt = _sniff(head)
            if fmt == "JPEG":  # 12-bit, 16-bit or lossless: libjpeg-turbo reads what Pillow's build refuses
                return _read_jpeg_codecs(f, path, limit)
            if fmt is None:
                other = _other_format(f)
                if other is not None:
                    raise ImageReadError(f"{path}: {other} images are not supported (PNG, JPEG, TIFF, BMP, GIF, WebP, DICOM are)",
                                         "unsupported") from exc
                raise ImageReadError(f"{path} is not an image Pillow or pydicom can read", "not_an_image") from exc
            raise ImageReadError(f"{path} looks like a {fmt} file but its header is cut short or corrupt", "truncated") from exc
        except (ValueError, SyntaxError, EOFError, OSError) as exc:
            raise ImageReadError(f"{path} has a corrupt header: {exc}", "truncated") from exc

        with img:
            width, height = img.size
            _check_size(path, width, height, limit)
            try:
                img.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise ImageReadError(f"{path} is too large to decode safely: {exc}", "too_large") from exc
            except ValueError as exc:
                # e.g. a PNG text chunk over PngImagePlugin.MAX_TEXT_CHUNK (a zTXt bomb)
                if "too large" in str(exc).lower():
                    raise ImageReadError(f"{path}: {exc}", "too_large") from exc
                raise ImageReadError(f"{path} is corrupt: {exc}", "truncated") from exc
            except (OSError, SyntaxError, EOFError) as exc:
                raise ImageReadError(f"{path} is truncated or corrupt: {exc}", "truncated") from exc
            if img.format == "PNG":
                _check_png_complete(f, path, size)
            if img.format in ("JPEG", "MPO", "TIFF", "WEBP"):
                img = _exif_upright(img)
            return _to_grey(img, path)


def _read_jpeg_codecs(f, path: Path, limit: int) -> np.ndarray:
    """A JPEG that Pillow does not open (12/16-bit samples, lossless), decoded by imagecodecs' libjpeg-turbo."""
    import imagecodecs

    f.seek(0)
    data = f.read()
    frame = _jpeg_frame(data)
    if frame is None:
        raise ImageReadError(f"{path} looks like a JPEG file but its header is cut short or corrupt", "truncated")
    width, height, start = frame
    _check_size(path, width, height, limit)
    # libjpeg fills a cut-off scan with grey and only warns; a file without its EOI
    # marker (FF D9, which byte stuffing keeps out of the scan data) was not copied whole.
    if data.find(b"\xff\xd9", start) < 0:
        raise ImageReadError(f"{path} is truncated: the JPEG ends before its end-of-image marker", "truncated")
    try:
        arr = imagecodecs.jpeg8_decode(data)
    except Exception as exc:  # imagecodecs.Jpeg8Error and friends
        raise ImageReadError(f"{path} is a truncated or corrupt JPEG: {exc}", "truncated") from exc
    if arr.ndim == 3:
        arr = _luma(arr)
    return arr if arr.dtype == np.uint8 else scale_to_uint8(arr)


# Start-of-frame markers (SOF0..SOF15 without DHT, JPG and DAC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, offset) of a JPEG's frame header, found by walking its marker segments without decoding.

    The decompression-bomb guard needs the size before any pixel is decoded,
    and imagecodecs has no header-only JPEG call.
    """
    i = 2  # after SOI
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            height, width = int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height, i
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


_AVAILABLE_FORMATS: tuple[str, ...] | None = None
_PIL_PLUGINS = ("Png", "Jpeg", "Tiff", "Bmp", "Gif", "WebP", "Ppm")


def _check_size(path: Path, width: int, height: int, limit: int) -> None:
    """Refuse an image with no pixels, or more than ``limit``, from its header alone."""
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{path} has no pixels ({width}x{height})", "not_an_image")
    if width * height > limit:
        raise ImageReadError(
            f"{path} is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the "
            f"{limit / 1e6:.0f}-megapixel limit (decompression-bomb guard)",
            "too_large",
        )


def _pil_formats() -> tuple[str, ...]:
    # Import just our plugins: Image.init() would import all ~45 of them in
    # every worker process. A Pillow build may lack one (WebP); skip it.
    global _AVAILABLE_FORMATS
    if _AVAILABLE_FORMATS is None:
        import importlib

        from PIL import Image

        for name in _PIL_PLUGINS:
            try:
                importlib.import_module(f"PIL.{name}ImagePlugin")
            except ImportError:  # pragma: no cover - depends on the Pillow build
                pass
        _AVAILABLE_FORMATS = tuple(fmt for fmt in PIL_FORMATS if fmt in Image.OPEN)
    return _AVAILABLE_FORMATS


def _other_format(f) -> str | None:
    """The name of a format Pillow knows but we do not decode (header only, never loaded)."""
    from PIL import Image

    f.seek(0)
    try:
        with Image.open(f) as img:
            return img.format
    except Exception:
        return None


def _sniff(head: bytes) -> str | None:
    for magic, fmt in _KNOWN_MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _check_png_complete(f, path: Path, size: int) -> None:
    # Pillow stops reading once it has the pixels, so a PNG cut inside the
    # zlib trailer or before IEND still "loads". A file without its IEND
    # chunk was not copied completely; refuse it rather than trust it.
    f.seek(max(0, size - 65536))
    if _PNG_IEND not in f.read():
        raise ImageReadError(f"{path} is truncated: the PNG ends before its IEND chunk", "truncated")


def _exif_upright(img):
    """Rotate camera JPEGs upright as viewers show them (no-op without EXIF)."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block is no reason to lose the image
        return img


def _to_grey(img, path: Path) -> np.ndarray:
    mode = img.mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "palette images with transparency ..."
        if mode == "L":
            return np.array(img, dtype=np.uint8)
        if mode == "LA" or mode == "La":
            return np.array(img.getchannel(0), dtype=np.uint8)
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            return scale_to_uint8(np.asarray(img))
        if mode in ("1", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA", "RGBa"):
            if mode in ("RGBA", "RGBa", "PA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGBA" if mode in ("RGBa", "PA") else "RGB")
            # RGB(A) -> L is ITU-R 601 luma (L = 299/1000 R + 587/1000 G + 114/1000 B);
            # RGBA -> L ignores alpha, which is what we want.
            return np.array(img.convert("L"), dtype=np.uint8)
        try:
            return np.array(img.convert("L"), dtype=np.uint8)
        except (ValueError, OSError) as exc:
            raise ImageReadError(f"{path}: Pillow mode {mode!r} is not supported", "unsupported") from exc


def scale_to_uint8(arr: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Map ``lo..hi`` (default: the array's real min..max) linearly onto 0..255.

    A constant image maps to 0. NaNs (float TIFF/DICOM) count as the minimum.
    """
    values = np.asarray(arr, dtype=np.float64)
    if values.size == 0:
        return np.zeros(values.shape, np.uint8)
    finite = np.isfinite(values)
    if not finite.all():
        fill = float(values[finite].min()) if finite.any() else 0.0
        values = np.where(finite, values, fill)
    lo = float(values.min()) if lo is None else float(lo)
    hi = float(values.max()) if hi is None else float(hi)
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    out = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- DICOM


def _read_dicom(f, path: Path, limit: int, any_modality: bool) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(f, force=True)
    except InvalidDicomError as exc:
        raise ImageReadError(f"{path} is not a valid DICOM file: {exc}", "not_an_image") from exc
    except (EOFError, ValueError, OSError, KeyError, TypeError, IndexError, OverflowError) as exc:
        raise ImageReadError(f"{path} is a truncated or corrupt DICOM file: {exc}", "truncated") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        kind = "a DICOM file" if getattr(ds, "preamble", None) or "SOPClassUID" in ds else "not an image"
        raise ImageReadError(f"{path} is {kind} without pixel data (a report, plan or presentation state?)", "not_an_image")
    _check_modality(ds, path, any_modality)

    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageReadError(f"{path} lacks the DICOM image size tags: {exc}", "not_an_image") from exc
    _check_size(path, cols, rows, limit)

    try:
        _ensure_transfer_syntax(ds)
    except Exception:  # pragma: no cover - let the decoder report what is wrong
        pass
    arr = _first_frame(ds, path)
    try:
        if photometric == "PALETTE COLOR":
            return scale_to_uint8(_luma(apply_color_lut(arr, ds)))
        if samples > 1 or arr.ndim == 3:  # pydicom returns YBR as RGB
            return scale_to_uint8(_luma(arr))

        arr = apply_modality_lut(arr, ds)
        voi_range = _voi_output_range(ds, apply_voi_lut)
        arr = apply_voi_lut(arr, ds, index=0)
        grey = scale_to_uint8(arr, *voi_range) if voi_range is not None else scale_to_uint8(arr)
    except ImageReadError:
        raise
    except Exception as exc:  # malformed LUTs, windows of width 0, ...
        raise ImageReadError(f"{path}: cannot apply its DICOM LUT/window: {exc}", "unsupported") from exc
    if photometric == "MONOCHROME1":  # 0 is white in MONOCHROME1; show bone bright
        grey = 255 - grey
    return grey


def _check_modality(ds, path: Path, any_modality: bool) -> None:
    """Refuse an image that is not a plain radiograph (a CT slice, an MR, ...); no Modality passes."""
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if any_modality or not modality or modality in RADIOGRAPH_MODALITIES:
        return
    raise ImageReadError(
        f"{path} is a {modality} image, not a radiograph ({', '.join(RADIOGRAPH_MODALITIES)})",
        "not_a_radiograph",
        "mura's models read musculoskeletal radiographs; pass --any-modality to score it all the same",
    )


def _ensure_transfer_syntax(ds) -> None:
    """A bare dataset (no preamble, no file meta) still says how it was encoded."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    encoding = getattr(ds, "original_encoding", None)  # (implicit_vr, little_endian)
    implicit, little = encoding if encoding and None not in encoding else (ds.is_implicit_VR, ds.is_little_endian)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )


def _first_frame(ds, path: Path) -> np.ndarray:
    """The first frame, decoded by pydicom (uncompressed, deflated, RLE) or imagecodecs (JPEG, JPEG-LS, JPEG 2000)."""
    from pydicom.pixels import pixel_array

    from muracli.data.dicom_codecs import plugin_for

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr = pixel_array(ds, index=0, decoding_plugin=plugin_for(str(syntax)))
    except (NotImplementedError, RuntimeError) as exc:
        if plugin_for(str(syntax)):  # a decoder was there and failed on this frame
            raise ImageReadError(f"{path}: its compressed pixel data is truncated or corrupt: {exc}", "truncated") from exc
        name = getattr(syntax, "name", syntax) or "unknown"
        raise ImageReadError(
            f"{path}: no decoder for its transfer syntax {name} ({syntax})",
            "unsupported",
            "export it uncompressed, or as RLE, JPEG, JPEG-LS or JPEG 2000 (all read here)",
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:
        raise ImageReadError(f"{path}: its DICOM pixel data is truncated or corrupt: {exc}", "truncated") from exc
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):  # a (frames, rows, cols) stack
        arr = arr[0]
    return arr


def _voi_output_range(ds, apply_voi_lut) -> tuple[float, float] | None:
    """The output range of the VOI transform ``apply_voi_lut`` will apply, if any.

    Scaling the window's own output range (not the data's) to 0..255 keeps
    the window's meaning: a window that clips nothing still maps its centre
    to mid-grey.
    """
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        data = seq[0].LUTData
        if isinstance(data, (bytes, bytearray)):  # OW-encoded table: fall back to the real range
            return None
        values = np.asarray(data if isinstance(data, (list, tuple)) else [data], dtype=np.float64)
        return (float(values.min()), float(values.max())) if values.size else None
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        # Probe the window with values far outside it: LINEAR clips to its
        # output range, SIGMOID approaches it.
        probe = apply_voi_lut(np.array([-1e15, 1e15], dtype=np.float64), ds, index=0)
        lo, hi = float(np.min(probe)), float(np.max(probe))
        return (lo, hi) if hi > lo else None
    return None


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float64)[..., :3]
    return rgb @ np.array([0.299, 0.587, 0.114])
