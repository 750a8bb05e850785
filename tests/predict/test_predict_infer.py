"""Streaming inference of `mura predict`: same numbers as evaluate, bad files, DICOM, TTA."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from muracli.data.decode import read_greyscale
from muracli.errors import ConfigError
from muracli.metrics.aggregate import aggregate_studies
from muracli.predict import Study, discover_studies, predict_studies, study_probability


def by_path(results) -> dict[str, float]:
    return {image.path: image.probability for r in results for image in r.images}


def test_probabilities_equal_evaluate_on_the_cache(loaded_cnn, synthetic_data, synthetic_cache):
    from muracli.runtime.inference import image_probabilities

    table = image_probabilities(
        loaded_cnn.model, synthetic_cache.split("valid"), device=torch.device("cpu"), mean=loaded_cnn.mean, std=loaded_cnn.std
    )
    expected = {str(synthetic_data / p): prob for p, prob in zip(table["path"], table["probability"])}
    results = list(predict_studies(loaded_cnn, discover_studies([synthetic_data / "MURA-v1.1" / "valid"]), batch_images=7))
    got = by_path(results)
    assert set(got) == set(expected)
    assert max(abs(got[p] - expected[p]) for p in got) <= 1e-6

    studies = aggregate_studies(table, method=loaded_cnn.aggregate, threshold=loaded_cnn.threshold)
    reference = {str(synthetic_data / s.rstrip("/")): (p, y) for s, p, y in zip(studies["study"], studies["probability"], studies["prediction"])}
    assert {r.study for r in results} == set(reference)
    for r in results:
        assert r.probability == pytest.approx(reference[r.study][0], abs=1e-6)
        assert r.prediction == reference[r.study][1] and r.label == loaded_cnn.class_names[r.prediction]


def test_batch_size_does_not_change_results_and_studies_stream(loaded_cnn, synthetic_data):
    folders = [Study(name=str(f), folder=f, images=tuple(sorted(f.glob("*.png"))), key=f.name)
               for f in sorted((synthetic_data / "MURA-v1.1" / "valid").glob("XR_*/*/study*"))[:6]]
    pulled = []

    def source():
        for study in folders:
            pulled.append(study.name)
            yield study

    stream = predict_studies(loaded_cnn, source(), batch_images=2)
    first = next(stream)
    assert first.study == folders[0].name
    # Only the studies needed to fill one or two batches were read, not the whole input.
    assert len(pulled) <= 3
    small = [first, *stream]
    large = list(predict_studies(loaded_cnn, iter(folders), batch_images=64))
    assert [r.study for r in small] == [r.study for r in large] == [s.name for s in folders]
    assert by_path(small) == pytest.approx(by_path(large), abs=1e-6)


def test_tta_changes_probabilities_slightly_and_is_deterministic(loaded_cnn, synthetic_data):
    studies = lambda: discover_studies([synthetic_data / "MURA-v1.1" / "valid" / "XR_WRIST"])  # noqa: E731
    plain = by_path(predict_studies(loaded_cnn, studies()))
    tta = by_path(predict_studies(loaded_cnn, studies(), tta=True))
    again = by_path(predict_studies(loaded_cnn, studies(), tta=True))
    assert tta == again
    differences = np.array([abs(tta[p] - plain[p]) for p in plain])
    assert differences.max() > 0 and differences.max() < 0.25


def test_bad_files_are_skipped_and_named(loaded_cnn, synthetic_data, tmp_path, build):
    good = build.valid_study_folders(synthetic_data)[0] / "image1.png"
    mixed = tmp_path / "mixed"
    expected = build.write_bad_files(mixed, good)
    shutil.copy(good, mixed / "image1.png")
    only_bad = tmp_path / "only_bad"
    build.write_bad_files(only_bad, good)

    first, second = predict_studies(loaded_cnn, discover_studies([mixed, only_bad]))
    assert first.ok and first.n_images == 1 and first.images[0].path == str(mixed / "image1.png")
    assert {Path(s.path).name: s.reason for s in first.skipped} == expected
    assert all(s.detail for s in first.skipped)
    assert first.probability == first.images[0].probability

    assert not second.ok and second.probability is None and second.prediction is None and second.n_images == 0
    assert "no readable image" in second.error and "image2.png: empty" in second.error
    assert len(second.skipped) == len(expected)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_dicom_monochrome1_and_2_predict_like_the_png(loaded_cnn, synthetic_data, tmp_path, build, bits):
    png = build.valid_study_folders(synthetic_data)[1] / "image1.png"
    grey = read_greyscale(png).copy()
    grey[0, 0], grey[0, 1] = 0, 255  # full range: decoding maps the stored values back onto exactly these pixels
    reference = tmp_path / "png" / "image1.png"
    reference.parent.mkdir()
    from PIL import Image

    Image.fromarray(grey).save(reference)
    top = (1 << bits) - 1
    stored = grey if bits == 8 else np.rint(grey.astype(np.float64) * top / 255).astype(np.uint16)
    (tmp_path / "m2").mkdir()
    (tmp_path / "m1").mkdir()
    build.write_dicom(tmp_path / "m2" / "IM0001", stored, bits=bits)  # no suffix: found by its DICM preamble
    build.write_dicom(tmp_path / "m1" / "image1.dcm", (top - stored).astype(stored.dtype), bits=bits, photometric="MONOCHROME1")
    results = {r.study: r for r in predict_studies(loaded_cnn, discover_studies([tmp_path / "png", tmp_path / "m2", tmp_path / "m1"]))}
    probabilities = [results[str(tmp_path / name)].probability for name in ("png", "m2", "m1")]
    assert all(r.ok and r.n_images == 1 for r in results.values())
    assert probabilities[0] == probabilities[1] == probabilities[2]


def test_pydicom_sample_files_predict(loaded_cnn, tmp_path):
    from pydicom.data import get_testdata_file

    study = tmp_path / "export"
    study.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_truncated.dcm"):
        shutil.copy(get_testdata_file(name, download=False), study / name)
    shutil.copy(study / "CT_small.dcm", study / "IM_NO_SUFFIX")
    # Two StudyInstanceUIDs in one folder: two studies (CT, CT copy | MR, MR cut short), in file order.
    ct, mr = predict_studies(loaded_cnn, discover_studies([study]), any_modality=True)
    assert ct.study == f"{study} (study 1 of 2)" and ct.ok and ct.n_images == 2 and 0.0 <= ct.probability <= 1.0
    assert [Path(i.path).name for i in ct.images] == ["CT_small.dcm", "IM_NO_SUFFIX"]
    assert mr.ok and mr.n_images == 1
    assert [(Path(s.path).name, s.reason) for s in mr.skipped] == [("MR_truncated.dcm", "truncated")]
    # Without --any-modality neither is scored: a radiograph model does not read CT or MR.
    ct, mr = predict_studies(loaded_cnn, discover_studies([study]))
    assert not ct.ok and not mr.ok
    assert {s.reason for s in ct.skipped + mr.skipped} == {"not_a_radiograph"}
    assert "is a CT image" in ct.skipped[0].detail


@pytest.mark.parametrize("method", ["mean", "max", "vote"])
def test_study_rule_is_aggregate_studies_rule(method):
    rng = np.random.default_rng(0)
    images = pd.DataFrame({"study": np.repeat([f"s{i}" for i in range(40)], 3), "probability": rng.random(120)})
    images.loc[images.index[:3], "probability"] = [0.3, 0.3, 0.7]  # a 1-of-3 vote
    images.loc[images.index[3:6], "probability"] = [0.5, 0.1, 0.6]  # exactly at the threshold
    expected = aggregate_studies(images, method=method, threshold=0.4)
    for study, group in images.groupby("study", sort=False):
        row = expected[expected["study"] == study].iloc[0]
        assert study_probability(group["probability"].to_numpy(), method, 0.4) == pytest.approx(row["probability"], abs=1e-12)


def test_cam_needs_a_feature_map(synthetic_data, tmp_path, build):
    from muracli.predict import CamWriter

    loaded = build.in_memory_model("cnn")
    loaded.model.cam_layer_name = None
    with pytest.raises(ConfigError, match="Grad-CAM"):  # at call time, before any image is decoded
        predict_studies(loaded, discover_studies([synthetic_data / "MURA-v1.1" / "valid"]), cam=CamWriter(tmp_path))


def test_dicom_without_suffix_or_preamble_gets_the_original_prediction(loaded_cnn, synthetic_data, tmp_path, build):
    grey = np.asarray(Image.open(next((synthetic_data / "MURA-v1.1" / "valid").glob("XR_*/*/*/image1.png"))).convert("L"))
    stored = grey.astype(np.uint16) * 16
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
    original = build.write_dicom(tmp_path / "a" / "scan.dcm", stored)
    shutil.copy(original, tmp_path / "b" / "IM000001")  # the same file without its suffix
    build.write_dicom(tmp_path / "c" / "1.2.840.113619.2.55.3.7", stored, preamble=False)  # no preamble, dotted name
    results = list(predict_studies(loaded_cnn, discover_studies([tmp_path / "a", tmp_path / "b", tmp_path / "c"])))
    assert [r.n_images for r in results] == [1, 1, 1]
    assert results[0].probability == results[1].probability == results[2].probability


def test_a_12_bit_lossless_jpeg_is_predicted(loaded_cnn, synthetic_data, tmp_path):
    import imagecodecs

    grey = np.asarray(Image.open(next((synthetic_data / "MURA-v1.1" / "valid").glob("XR_*/*/*/image1.png"))).convert("L"))
    stored = grey.astype(np.uint16) * 16 + 7  # 12-bit values
    (tmp_path / "jpeg").mkdir()
    (tmp_path / "jpeg" / "image1.jpg").write_bytes(
        imagecodecs.jpeg8_encode(stored, lossless=True, predictor=1, bitspersample=12))
    (tmp_path / "png").mkdir()
    Image.fromarray(stored).save(tmp_path / "png" / "image1.png")  # the same pixels as a 16-bit PNG
    jpeg, png = predict_studies(loaded_cnn, discover_studies([tmp_path / "jpeg", tmp_path / "png"]))
    assert jpeg.ok and jpeg.n_images == 1 and jpeg.skipped == []
    assert jpeg.probability == png.probability
