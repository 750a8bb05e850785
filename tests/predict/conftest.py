"""Builders shared by the predict tests: study folders copied from the synthetic
dataset, files of every bad kind, DICOM writers and in-memory models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from image_files import png_bytes, write_dicom


def valid_study_folders(synthetic_data: Path) -> list[Path]:
    """The valid split's study folders of ``synthetic_data``, sorted."""
    return sorted(p for p in (synthetic_data / "MURA-v1.1" / "valid").glob("XR_*/patient*/study*") if p.is_dir())


def copy_studies(synthetic_data: Path, dest: Path, n: int) -> list[Path]:
    """Copy the first ``n`` valid studies to ``dest`` (same relative layout); returns the copies."""
    copies = []
    for folder in valid_study_folders(synthetic_data)[:n]:
        target = dest / folder.relative_to(synthetic_data / "MURA-v1.1" / "valid")
        shutil.copytree(folder, target)
        copies.append(target)
    return copies


def write_bad_files(folder: Path, good_png: Path) -> dict[str, str]:
    """One file of every bad kind in ``folder``; returns {file name: expected skip reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good_png.read_bytes()
    (folder / "image2.png").write_bytes(b"")
    (folder / "image3.png").write_bytes(data[: len(data) // 2])
    (folder / "image4.png").write_text("this is not an image\n")
    (folder / "image5.png").write_bytes(png_bytes(100_000, 100_000))
    (folder / "._image1.png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    return {
        "image2.png": "empty",
        "image3.png": "truncated",
        "image4.png": "not_an_image",
        "image5.png": "too_large",
        "._image1.png": "junk",
    }


def in_memory_model(name: str, image_size: int = 32):
    """A freshly built ``name`` wrapped as ``load_model`` would return it (no checkpoint file)."""
    import torch

    from muracli.batches.augment import GREY_MEAN, GREY_STD
    from muracli.models import ModelSpec, build_model
    from muracli.runtime.checkpoint import LoadedModel

    torch.manual_seed(0)
    model = build_model(ModelSpec(name)).eval()
    return LoadedModel(
        model=model, path=Path(f"{name}.pt"), image_size=image_size, fit="pad", mean=GREY_MEAN, std=GREY_STD,
        aggregate="mean", threshold=0.5, class_names=["normal", "abnormal"], model_name=name, study_model=None,
        checkpoint={},
    )


@pytest.fixture(scope="session")
def loaded_cnn(trained_run):
    """The cnn of ``trained_run`` loaded for inference on the CPU (shared, read-only)."""
    from muracli.runtime.checkpoint import load_model

    return load_model(trained_run, "cpu")


@pytest.fixture(scope="session")
def build():
    """The builders above, for tests: ``build.copy_studies(...)``, ``build.write_bad_files(...)``, ..."""
    from types import SimpleNamespace

    return SimpleNamespace(
        valid_study_folders=valid_study_folders,
        copy_studies=copy_studies,
        png_bytes=png_bytes,
        write_bad_files=write_bad_files,
        write_dicom=write_dicom,
        in_memory_model=in_memory_model,
    )
