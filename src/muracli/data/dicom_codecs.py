"""Compressed DICOM frames decoded by imagecodecs, as a pydicom decoding plugin.

pydicom decodes uncompressed (implicit/explicit VR, little/big endian),
deflated and RLE pixel data itself and hands the frames of the compressed
transfer syntaxes to plugins. This module is such a plugin (pydicom's plugin
interface: ``DECODER_DEPENDENCIES``, ``is_available(uid)`` and a frame
function), backed by imagecodecs (BSD-3-Clause):

* ``jpeg8_decode`` (libjpeg-turbo 3): JPEG Baseline (1.2.840.10008.1.2.4.50),
  JPEG Extended with 12-bit samples (4.51), JPEG Lossless (4.57) and JPEG
  Lossless first-order prediction (4.70);
* ``jpegls_decode`` (CharLS): JPEG-LS lossless (4.80) and near-lossless (4.81);
* ``jpeg2k_decode`` (OpenJPEG): JPEG 2000 lossless (4.90) and lossy (4.91),
  and High-Throughput JPEG 2000 (4.201, 4.202, 4.203).

pydicom does the DICOM side around each frame (finding the frame, the
container size, sign correction, YBR to RGB), so a frame comes back exactly
as pydicom's own plugins would return it. ``register()`` adds the plugin
once per process; ``plugin_for(uid)`` names it for ``pixel_array(...,
decoding_plugin=...)`` so these syntaxes always go through imagecodecs,
whatever other plugins (Pillow) pydicom finds.
"""

from __future__ import annotations

import threading

PLUGIN = "imagecodecs"

# Transfer syntax UID -> the imagecodecs function that decodes its frames.
CODECS = {
    "1.2.840.10008.1.2.4.50": "jpeg8_decode",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51": "jpeg8_decode",  # JPEG Extended (Process 2 and 4), 12-bit
    "1.2.840.10008.1.2.4.57": "jpeg8_decode",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70": "jpeg8_decode",  # JPEG Lossless, Process 14, Selection Value 1
    "1.2.840.10008.1.2.4.80": "jpegls_decode",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "jpegls_decode",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": "jpeg2k_decode",  # JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.91": "jpeg2k_decode",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "jpeg2k_decode",  # High-Throughput JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.202": "jpeg2k_decode",  # High-Throughput JPEG 2000 with RPCL Options (Lossless Only)
    "1.2.840.10008.1.2.4.203": "jpeg2k_decode",  # High-Throughput JPEG 2000
}

DECODER_DEPENDENCIES = {uid: ("numpy", "imagecodecs>=2024.6.1") for uid in CODECS}

_EOI = b"\xff\xd9"
_EOI_SEARCH = 16  # fragments may carry padding after the marker

_lock = threading.Lock()
_registered: set[str] = set()


def is_available(uid: str) -> bool:
    """Whether imagecodecs is installed with the codec for ``uid`` (part of pydicom's plugin interface)."""
    if uid not in CODECS:
        return False
    try:
        import imagecodecs
    except ImportError:
        return False
    return callable(getattr(imagecodecs, CODECS[uid], None))


def decode_frame(src: bytes, runner) -> bytes:
    """One encoded frame as raw pixel bytes, with ``runner``'s options set to describe them."""
    import imagecodecs

    syntax = str(runner.transfer_syntax)
    name = CODECS[syntax]
    if name in ("jpeg8_decode", "jpegls_decode") and _EOI not in bytes(src[-_EOI_SEARCH:]):
        # A frame cut short: libjpeg would fill it with grey and only warn, and CharLS
        # can spend tens of seconds on one. Byte stuffing keeps FF D9 out of the scan
        # data of both, so its absence at the end means the stream was not copied whole.
        raise ValueError("the frame ends before its end-of-image marker (FF D9): it was cut short")
    colour = runner.samples_per_pixel > 1
    if name == "jpeg8_decode" and colour:
        # Hand back the stored components untransformed, as pydicom's own JPEG
        # plugins do: pydicom converts them by Photometric Interpretation.
        arr = imagecodecs.jpeg8_decode(src, colorspace="RGB", outcolorspace="RGB")
    else:
        arr = getattr(imagecodecs, name)(src)
    if colour:
        runner.set_option("planar_configuration", 0)  # imagecodecs returns rows x columns x samples
        if name == "jpeg2k_decode" and runner.photometric_interpretation in ("YBR_ICT", "YBR_RCT"):
            runner.set_option("photometric_interpretation", "RGB")  # OpenJPEG undoes the colour transform
    # The container follows the codestream's precision (8 -> 1 byte, 12/16 -> 2 bytes).
    runner.set_option("bits_allocated", 8 * arr.dtype.itemsize)
    return arr.tobytes()


def register() -> None:
    """Add the plugin to pydicom's decoders of ``CODECS`` (once per process, thread-safe)."""
    if len(_registered) == len(CODECS):
        return
    from pydicom.pixels import get_decoder

    with _lock:
        for uid in CODECS:
            if uid in _registered:
                continue
            decoder = get_decoder(uid)
            if PLUGIN not in decoder.available_plugins and PLUGIN not in getattr(decoder, "_unavailable", {}):
                decoder.add_plugin(PLUGIN, (__name__, "decode_frame"))
            _registered.add(uid)


def plugin_for(uid: str) -> str:
    """``"imagecodecs"`` when it decodes ``uid`` here, else ``""`` (pydicom picks its own decoder)."""
    if uid not in CODECS:
        return ""
    register()
    from pydicom.pixels import get_decoder

    return PLUGIN if PLUGIN in get_decoder(uid).available_plugins else ""
