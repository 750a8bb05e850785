"""Grad-CAM overlays of `mura predict --cam`: geometry, files, architectures."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from muracli.data.fit import fit_square
from muracli.predict import CamWriter, discover_studies, heatmap_to_original, overlay, predict_studies
from muracli.predict.cam import cam_file_name


@pytest.mark.parametrize("fit", ["pad", "stretch", "crop"])
@pytest.mark.parametrize("shape", [(60, 100), (100, 60), (64, 64)])
def test_heat_map_goes_back_onto_the_original_geometry(fit, shape):
    # A box in the original; fit it like the pixels, then map the fitted box back: it must land where it was.
    height, width = shape
    mask = np.zeros(shape, np.uint8)
    mask[20:45, 30:52] = 255
    heat = fit_square(mask, 32, fit).astype(np.float32) / 255.0
    back = heatmap_to_original(heat, height, width, fit)
    assert back.shape == shape and back.dtype == np.float32
    inside, outside = back[mask > 0], back[mask == 0]
    assert inside.mean() > 0.8 and outside.mean() < 0.06
    iou = ((back > 0.5) & (mask > 0)).sum() / ((back > 0.5) | (mask > 0)).sum()
    assert iou > 0.8


def test_crop_leaves_the_unseen_margins_uncoloured():
    heat = np.ones((32, 32), np.float32)
    back = heatmap_to_original(heat, 40, 100, "crop")  # the model saw the central 40 x 40
    assert back[:, :25].max() == 0 and back[:, -25:].max() == 0 and back[:, 35:65].min() > 0.9


def test_overlay_keeps_size_and_leaves_cold_regions_grey():
    image = np.tile(np.arange(200, dtype=np.uint8), (120, 1))
    heat = np.zeros(image.shape, np.float32)
    heat[40:80, 50:100] = 1.0
    picture = np.asarray(overlay(image, heat, caption="p(abnormal) 0.900"))
    assert picture.shape == (120, 200, 3)
    cold = picture[100:, 120:]
    assert (cold[..., 0] == image[100:, 120:]).all() and (cold[..., 0] == cold[..., 2]).all()
    hot = picture[50:70, 60:90].astype(int)
    assert (hot[..., 0] - hot[..., 2]).mean() > 50  # red on top


def test_file_names_are_readable_and_unique(tmp_path):
    assert cam_file_name("valid/XR_WRIST/patient1/study1_positive", "x/image1.png") == (
        "valid__XR_WRIST__patient1__study1_positive__image1_cam.png"
    )
    assert cam_file_name("odd name/ü:x", "a b.dcm") == "odd_name__ü_x__a_b_cam.png"
    writer = CamWriter(tmp_path / "cams")
    # image1.png and image1.dcm of one study share a readable name: later ones are numbered
    assert writer.path_for("a/study1", "image1.png").name == "a__study1__image1_cam.png"
    assert writer.path_for("a/study1", "image1.dcm").name == "a__study1__image1-2_cam.png"
    assert writer.path_for("a/study1", "image1.jpg").name == "a__study1__image1-3_cam.png"


def test_cam_overlays_at_original_size_for_the_trained_cnn(loaded_cnn, synthetic_data, tmp_path, build):
    studies = build.copy_studies(synthetic_data, tmp_path / "in" / "valid", 2)
    results = list(predict_studies(loaded_cnn, discover_studies([tmp_path / "in"]), cam=CamWriter(tmp_path / "cams")))
    paths = [image.cam for r in results for image in r.images]
    assert len(paths) == sum(len(list(s.glob("*.png"))) for s in studies) == len(set(paths))
    assert sorted(p.name for p in (tmp_path / "cams").iterdir()) == sorted(p.split("/")[-1] for p in paths)
    for r in results:
        for image in r.images:
            with Image.open(image.path) as original, Image.open(image.cam) as cam:
                assert cam.size == original.size and cam.mode == "RGB"
                assert float(cam.text["probability"]) == pytest.approx(image.probability, abs=1e-6)
    assert paths[0].endswith("in__valid__" + results[0].study.split("/valid/")[1].replace("/", "__") + "__image1_cam.png")


# densenet169's first pass on a CPU spends seconds creating oneDNN kernels for its ~170 layer shapes.
@pytest.mark.parametrize("name", ["resnet18", pytest.param("densenet169", marks=pytest.mark.slow), "vgg16"])
def test_cam_works_for_torchvision_cnns(name, synthetic_data, tmp_path, build):
    study = build.valid_study_folders(synthetic_data)[0]
    shutil.copytree(study, tmp_path / "study")
    loaded = build.in_memory_model(name, image_size=32)
    (result,) = predict_studies(loaded, discover_studies([tmp_path / "study"]), cam=CamWriter(tmp_path / "cams"))
    assert result.ok and result.n_images == len(list(study.glob("*.png")))
    for image in result.images:
        with Image.open(image.path) as original, Image.open(image.cam) as cam:
            assert cam.size == original.size
