"""Image files the tests write byte by byte: PNG headers (bombs, zero sizes) and DICOM."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def png_bytes(width: int, height: int, *, bit_depth: int = 8, color_type: int = 0, idat: bytes | None = None) -> bytes:
    """A PNG whose header claims ``width x height`` (by default with an empty image stream)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat if idat is not None else zlib.compress(b""))
            + chunk(b"IEND", b""))


def write_dicom(path: Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits: int = 12,
                preamble: bool = True, syntax: str | None = None, frame: bytes | None = None, **elements) -> Path:
    """A DICOM file holding ``pixels`` as stored values: greyscale (H, W), frames
    (N, H, W) or RGB (H, W, 3); ``preamble=False`` writes one without the
    128-byte preamble and ``DICM``; ``elements`` are set on the dataset.

    ``syntax`` is the transfer syntax UID (default explicit VR little endian;
    pydicom itself writes implicit VR and deflated); with ``frame``, the
    already-encoded frame is stored encapsulated (``pydicom.encaps``) under
    ``syntax`` instead of ``pixels``, which then only give the image's shape."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    colour = pixels.ndim == 3 and pixels.shape[-1] == 3
    frames = pixels.shape[0] if pixels.ndim == 3 and not colour else 1
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for key, value in elements.items():
        setattr(ds, key, value)
    if frame is None:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    else:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    if preamble:
        try:
            ds.save_as(path, enforce_file_format=True)  # pydicom 3
        except TypeError:  # pragma: no cover - pydicom 2.x
            ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.save_as(path, write_like_original=False)
    else:
        from pydicom.filewriter import dcmwrite

        ds.file_meta = FileMetaDataset()
        try:
            dcmwrite(path, ds, implicit_vr=False, little_endian=True)
        except TypeError:  # pragma: no cover - pydicom 2.x
            ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.save_as(path, write_like_original=True)
    return path


#: Identifying tags every file of ``write_flat_export`` carries: none may appear in any output.
PATIENT = {"PatientName": "Doe^Jane^Quincy", "PatientID": "PID-98765", "PatientBirthDate": "19230417",
           "OtherPatientIDs": "OPID-4321", "InstitutionName": "St Elsewhere Radiology"}


def write_structured_report(path: Path, **elements) -> Path:
    """A DICOM structured report: no pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = BasicTextSRStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality = "SR"
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_flat_export(folder: Path, pixels: list[np.ndarray]) -> dict:
    """A PACS export in one folder, files named as PACS name them (no suffix, dotted UIDs, one
    without the preamble): three radiograph studies, a CT slice in the second, a structured
    report in the first. ``pixels``: three 12-bit images, one per study. Returns what the
    studies should be, in discovery order (natural file order of each study's first file)."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    uids = [generate_uid() for _ in range(3)]
    accessions = ["ACC-1001", "ACC-1002", ""]
    files = [  # (name, study, elements)
        ("1.2.840.113619.2.55.3.2", 1, {"Modality": "CR", "BodyPartExamined": "ELBOW"}),
        ("IM000001", 0, {"Modality": "DX", "BodyPartExamined": "WRIST"}),
        ("IM000003", 0, {"Modality": "DX", "BodyPartExamined": "WRIST"}),
        ("IM000004", 2, {"Modality": "DX", "StudyDescription": "XR FOREARM LEFT 2 VIEWS", "preamble": False}),
        ("IM000005", 1, {"Modality": "CT", "BodyPartExamined": "ELBOW"}),
    ]
    for name, study, elements in files:
        ids = {"StudyInstanceUID": uids[study], "SeriesInstanceUID": generate_uid(), **PATIENT}
        if accessions[study]:
            ids["AccessionNumber"] = accessions[study]
        write_dicom(folder / name, pixels[study], **ids, **elements)
    write_structured_report(folder / "IM000006", StudyInstanceUID=uids[0], AccessionNumber=accessions[0], **PATIENT)
    return {
        "studies": [  # (StudyInstanceUID, accession, body part, images scored, files skipped)
            (uids[1], accessions[1], "XR_ELBOW", ["1.2.840.113619.2.55.3.2"], {"IM000005": "not_a_radiograph"}),
            (uids[0], accessions[0], "XR_WRIST", ["IM000001", "IM000003"], {"IM000006": "not_an_image"}),
            (uids[2], accessions[2], "XR_FOREARM", ["IM000004"], {}),
        ],
    }
