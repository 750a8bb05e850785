"""The preprocess cache: pixels, index, manifest, reuse, resume, bad images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from image_files import png_bytes
from PIL import Image

from muracli.data import cache_build
from muracli.data.cache import FORMAT_VERSION, INDEX_COLUMNS, MANIFEST_NAME, STAGING_NAME, default_cache_dir, open_cache
from muracli.data.cache_build import build_cache
from muracli.data.decode import read_greyscale
from muracli.data.fit import fit_square
from muracli.data.layout import read_layout
from muracli.errors import DataError

RNG = np.random.default_rng(3)
REAL_PROCESS_CHUNK = cache_build.process_chunk


# ------------------------------------------------------------------ tiny MURA trees


class Tree:
    """Writes a MURA-v1.1 layout: folders, images and the four header-less CSVs."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "MURA-v1.1"
        self.rows: dict[str, list[str]] = {"train": [], "valid": []}
        self.studies: dict[str, list[str]] = {"train": [], "valid": []}
        self._patient = 0

    def study(self, split: str, label: int, writers: list[Callable[[Path], None]], part: str = "XR_WRIST",
              names: list[str] | None = None) -> str:
        self._patient += 1
        study = f"MURA-v1.1/{split}/{part}/patient{self._patient:05d}/study1_{'positive' if label else 'negative'}/"
        folder = self.base / study
        folder.mkdir(parents=True, exist_ok=True)
        for i, write in enumerate(writers, 1):
            name = names[i - 1] if names else f"image{i}.png"
            if write is not None:
                write(folder / name)
            self.rows[split].append(study + name)
        self.studies[split].append(f"{study},{label}")
        return study

    def write_csvs(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        for split in ("train", "valid"):
            (self.root / f"{split}_image_paths.csv").write_text("".join(r + "\n" for r in self.rows[split]))
            (self.root / f"{split}_labeled_studies.csv").write_text("".join(r + "\n" for r in self.studies[split]))
        return self.base


def png(array: np.ndarray, mode: str | None = None, **save) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path, format="PNG", **save)
    return write


def grey(h: int, w: int) -> Callable[[Path], None]:
    return png(RNG.integers(0, 256, (h, w), dtype=np.uint8))


def raw(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def truncated_png(path: Path) -> None:
    Image.fromarray(RNG.integers(0, 256, (50, 40), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def mode_writers() -> list[Callable[[Path], None]]:
    """One image per PNG mode the cache must handle."""
    rgb = RNG.integers(0, 256, (36, 28, 3), dtype=np.uint8)
    alpha = RNG.integers(0, 256, (36, 28), dtype=np.uint8)
    ramp16 = np.linspace(1000, 4000, 30 * 44).reshape(30, 44).astype(np.uint16)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return [
        grey(40, 30),  # L, portrait
        png(rgb),  # RGB
        png(np.dstack([rgb, alpha]), "RGBA"),
        png(np.dstack([alpha, alpha[::-1]]), "LA"),
        png(ramp16),  # I;16, 1000..4000
        lambda path: palette.save(path),  # P
        grey(24, 50),  # L, landscape
    ]


@pytest.fixture
def modes_tree(tmp_path) -> Path:
    tree = Tree(tmp_path / "data")
    tree.study("train", 1, mode_writers())
    tree.study("train", 0, [grey(33, 33), grey(20, 45)])
    tree.study("train", 1, [grey(64, 48)])
    tree.study("valid", 0, [grey(30, 40), grey(41, 29)])
    tree.study("valid", 1, [grey(25, 25)])
    return tree.write_csvs()


@pytest.fixture
def small_tree(tmp_path) -> Path:
    """13 train and 5 valid images; with CHUNK_SIZE 2 that is 7 + 3 chunks."""
    tree = Tree(tmp_path / "data")
    for i in range(5):
        tree.study("train", i % 2, [grey(30 + i, 20 + 2 * i) for _ in range(1 + i % 3)])
    tree.study("train", 1, [grey(21, 21)] * 2)
    tree.study("train", 0, [grey(18, 26)] * 2)
    tree.study("valid", 0, [grey(20, 30), grey(30, 20)])
    tree.study("valid", 1, [grey(25, 31)] * 3)
    return tree.write_csvs()


def count_chunks(monkeypatch, fail_after: int | None = None) -> list:
    """Wrap process_chunk (in-process builds) to count calls, optionally failing after some."""
    calls: list = []
    original = REAL_PROCESS_CHUNK

    def wrapped(job):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt
        calls.append((job.split, job.number))
        return original(job)

    monkeypatch.setattr(cache_build, "process_chunk", wrapped)
    return calls


def files_of(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in ("train.npy", "train.csv", "valid.npy", "valid.csv")}


def manifest_without_time(folder: Path) -> dict:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest.pop("created")
    return manifest


# ------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("fit", ["pad", "stretch", "crop"])
def test_cache_pixels_match_a_direct_decode_and_fit(modes_tree, fit):
    cache = build_cache(modes_tree, size=24, fit=fit, workers=0)
    layout = read_layout(modes_tree)
    for split in ("train", "valid"):
        part = cache.split(split)
        assert part.pixels.shape == (len(layout.split(split)), 24, 24)
        assert part.pixels.dtype == np.uint8
        for i, rel in enumerate(part.index["path"]):
            direct = fit_square(read_greyscale(modes_tree / rel), 24, fit)
            assert np.abs(part.pixels[i].astype(int) - direct).max() <= 1, rel


def test_cache_greyscale_of_each_mode(modes_tree):
    cache = build_cache(modes_tree, size=24, fit="stretch", workers=0)
    train = cache.split("train")
    by_view = {int(v): train.pixels[i] for i, v in enumerate(train.index["view"][:7])}
    folder = modes_tree / train.index["study"][0]
    # RGB / RGBA / P: ITU-R 601 luma of the colours, alpha ignored
    for view in (2, 3, 6):
        rgb = np.asarray(Image.open(folder / f"image{view}.png").convert("RGB"), dtype=np.float64)
        luma = Image.fromarray(np.rint(rgb @ [0.299, 0.587, 0.114]).astype(np.uint8))
        expected = np.asarray(luma.resize((24, 24), Image.Resampling.BILINEAR)).astype(int)
        assert np.abs(by_view[view].astype(int) - expected).max() <= 2, view
    # LA: the grey channel
    la = np.asarray(Image.open(folder / "image4.png"))[..., 0]
    expected = np.asarray(Image.fromarray(la).resize((24, 24), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(by_view[4].astype(int) - expected).max() <= 1
    # I;16 holding 1000..4000: the full 0..255 range, not clipped white
    assert by_view[5].min() <= 2 and by_view[5].max() >= 253 and len(np.unique(by_view[5])) > 100


def test_pad_in_the_cache_keeps_aspect(modes_tree):
    cache = build_cache(modes_tree, size=24, fit="pad", workers=0)
    train = cache.split("train")
    index = train.index
    portrait = index.index[(index.width == 30) & (index.height == 40)][0]  # 24 x 18 inside 24 x 24
    assert (train.pixels[portrait][:, :3] == 0).all() and (train.pixels[portrait][:, 21:] == 0).all()
    landscape = index.index[(index.width == 50) & (index.height == 24)][0]  # 12 x 24 (11.52 -> 12)
    assert (train.pixels[landscape][:6] == 0).all() and (train.pixels[landscape][18:] == 0).all()


def test_index_and_manifest(small_tree):
    progress_calls = []
    cache = build_cache(small_tree, size=16, workers=0, progress=lambda *a, **k: progress_calls.append(a))
    layout = read_layout(small_tree)
    assert cache.path == default_cache_dir(layout, 16, "pad")
    assert cache.path.parent.name == "mura-cache" and cache.path.name.startswith("16px-pad-")
    assert not cache.reused and not (cache.path / STAGING_NAME).exists()

    train = cache.split("train")
    assert list(train.index.columns) == list(INDEX_COLUMNS)
    expected = layout.split("train")
    assert train.index["path"].tolist() == expected["path"].tolist()  # CSV order
    assert train.index["label"].tolist() == expected["label"].tolist()
    assert train.index["view"].tolist() == expected["view"].tolist()
    first = Image.open(small_tree / train.index["path"][0])
    assert (train.index["width"][0], train.index["height"][0]) == first.size
    assert isinstance(train.pixels, np.memmap) and not train.pixels.flags.writeable
    assert len(train) == 13 and train.labels.dtype == np.int64

    m = cache.manifest
    assert (m.format_version, m.size, m.fit) == (FORMAT_VERSION, 16, "pad")
    assert m.fingerprint == layout.fingerprint() and m.source == str(layout.root)
    assert m.counts == {"train": 13, "valid": 5} and m.study_counts == {"train": 7, "valid": 2}
    assert m.skipped == [] and m.dropped_studies == [] and m.created and m.mura_version
    on_disk = json.loads((cache.path / MANIFEST_NAME).read_text())
    assert on_disk == m.to_dict()
    assert ("preprocess train", 13, 13) in progress_calls and ("preprocess valid", 5, 5) in progress_calls

    # The pixels are a plain .npy file that np.load maps.
    mapped = np.load(cache.path / "train.npy", mmap_mode="r")
    assert mapped.shape == (13, 16, 16)


def test_complete_cache_is_reused_without_work(small_tree, monkeypatch):
    first = build_cache(small_tree, size=16, workers=0)
    calls = count_chunks(monkeypatch)
    again = build_cache(small_tree, size=16, workers=0)
    assert again.reused and again.path == first.path and calls == []


# ------------------------------------------------------------------------- resume


def test_interrupted_build_resumes_without_redoing_chunks(small_tree, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_build, "CHUNK_SIZE", 2)  # 7 train + 3 valid chunks
    reference = build_cache(small_tree, size=16, out=tmp_path / "reference", workers=0)

    count_chunks(monkeypatch, fail_after=4)
    with pytest.raises(cache_build.PreprocessInterrupted):
        build_cache(small_tree, size=16, out=tmp_path / "resumed", workers=0)
    assert not (tmp_path / "resumed" / MANIFEST_NAME).exists()
    with pytest.raises(DataError, match="incomplete"):
        open_cache(tmp_path / "resumed")

    calls = count_chunks(monkeypatch)
    resumed = build_cache(small_tree, size=16, out=tmp_path / "resumed", workers=0)
    assert len(calls) == 10 - 4  # 7 train + 3 valid chunks
    assert ("train", 0) not in calls and ("train", 4) in calls
    assert files_of(resumed.path) == files_of(reference.path)
    assert manifest_without_time(resumed.path) == manifest_without_time(reference.path)


def test_resume_with_a_worker_pool_gives_the_same_bytes(small_tree, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_build, "CHUNK_SIZE", 2)
    reference = build_cache(small_tree, size=16, out=tmp_path / "reference", workers=0)
    count_chunks(monkeypatch, fail_after=3)
    with pytest.raises(cache_build.PreprocessInterrupted):
        build_cache(small_tree, size=16, out=tmp_path / "resumed", workers=0)
    monkeypatch.undo()
    monkeypatch.setattr(cache_build, "CHUNK_SIZE", 2)
    # Workers are separate processes: they see the real CHUNK_SIZE, but only the parent plans chunks.
    resumed = build_cache(small_tree, size=16, out=tmp_path / "resumed", workers=2)
    assert files_of(resumed.path) == files_of(reference.path)


def test_damaged_marker_is_redone(small_tree, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_build, "CHUNK_SIZE", 2)
    reference = build_cache(small_tree, size=16, out=tmp_path / "reference", workers=0)
    count_chunks(monkeypatch, fail_after=9)
    with pytest.raises(cache_build.PreprocessInterrupted):
        build_cache(small_tree, size=16, out=tmp_path / "resumed", workers=0)
    staging = tmp_path / "resumed" / STAGING_NAME
    (staging / "train" / "000003.json").write_text("{not json")  # a marker cut short
    calls = count_chunks(monkeypatch)
    resumed = build_cache(small_tree, size=16, out=tmp_path / "resumed", workers=0)
    assert sorted(calls) == [("train", 3), ("valid", 2)]
    assert files_of(resumed.path) == files_of(reference.path)


def test_crash_between_finalising_and_the_manifest(small_tree, tmp_path, monkeypatch):
    reference = build_cache(small_tree, size=16, out=tmp_path / "reference", workers=0)

    def crash(self, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_build.CacheManifest, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        build_cache(small_tree, size=16, out=tmp_path / "resumed", workers=0)
    assert (tmp_path / "resumed" / "train.npy").exists() and not (tmp_path / "resumed" / MANIFEST_NAME).exists()
    with pytest.raises(DataError):
        open_cache(tmp_path / "resumed")
    monkeypatch.undo()
    calls = count_chunks(monkeypatch)
    resumed = build_cache(small_tree, size=16, out=tmp_path / "resumed", workers=0)
    assert calls == []  # every chunk was done; only the finalisation is repeated
    assert files_of(resumed.path) == files_of(reference.path)
    assert not (resumed.path / STAGING_NAME).exists()


@pytest.mark.slow
def test_sigkill_midway_then_resume(tmp_path, monkeypatch):
    tree = Tree(tmp_path / "data")
    for i in range(60):
        tree.study("train" if i < 48 else "valid", i % 2, [grey(60, 50), grey(50, 60)])
    data = tree.write_csvs()
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import time
        from muracli.data import cache_build
        from muracli.data.cache_build import build_cache
        cache_build.CHUNK_SIZE = 4
        def slow(task, done, total, **fields):
            time.sleep(0.05)
        if __name__ == "__main__":
            build_cache({str(data)!r}, size=32, out={str(out)!r}, workers=2, progress=slow)
    """)
    (tmp_path / "run.py").write_text(script)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py")], start_new_session=True)
    markers = out / STAGING_NAME / "train"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not markers.is_dir() or len(list(markers.glob("*.json"))) < 4):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(markers.glob("*.json")))
    assert 4 <= done_before < 30, "the build should have been killed midway"
    assert not (out / MANIFEST_NAME).exists()
    with pytest.raises(DataError):
        open_cache(out)

    monkeypatch.setattr(cache_build, "CHUNK_SIZE", 4)
    calls = count_chunks(monkeypatch)
    resumed = build_cache(data, size=32, out=out, workers=0)
    assert len(calls) <= 30 - done_before  # 24 train + 6 valid chunks in all
    reference = build_cache(data, size=32, out=tmp_path / "reference", workers=0)
    assert files_of(resumed.path) == files_of(reference.path)


# --------------------------------------------------------------------- bad images


@pytest.fixture
def bad_tree(tmp_path) -> Path:
    tree = Tree(tmp_path / "data")
    ok = tree.study("train", 0, [grey(30, 20), raw(b""), truncated_png])
    tree.study("train", 1, [grey(20, 30), raw(b"hello, I am text\n"), raw(png_bytes(100_000, 100_000))])
    tree.study("train", 0, [grey(25, 25)], names=["image1.png"])
    # A macOS junk file that the CSV lists (and that exists on disk)
    junk_study = tree.study("train", 1, [grey(22, 22)])
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "data" / junk_study / "._image1.png", format="PNG")
    tree.rows["train"].append(junk_study + "._image1.png")
    # A study whose every image is bad: dropped
    dead = tree.study("valid", 1, [raw(b""), truncated_png])
    tree.study("valid", 0, [grey(20, 20), None])  # image2 listed but missing on disk
    tree.write_csvs()
    tree.ok_study, tree.dead_study = ok, dead
    return tree.base


def test_bad_images_are_skipped_and_reported(bad_tree, tmp_path):
    cache = build_cache(bad_tree, size=16, workers=2)
    m = cache.manifest
    reasons = {entry["path"].split("/", 2)[-1]: entry["reason"] for entry in m.skipped}
    assert reasons == {
        "XR_WRIST/patient00001/study1_negative/image2.png": "empty",
        "XR_WRIST/patient00001/study1_negative/image3.png": "truncated",
        "XR_WRIST/patient00002/study1_positive/image2.png": "not_an_image",
        "XR_WRIST/patient00002/study1_positive/image3.png": "too_large",
        "XR_WRIST/patient00004/study1_positive/._image1.png": "junk",
        "XR_WRIST/patient00005/study1_positive/image1.png": "empty",
        "XR_WRIST/patient00005/study1_positive/image2.png": "truncated",
        "XR_WRIST/patient00006/study1_negative/image2.png": "missing",
    }
    assert all(entry["detail"] and str(tmp_path) not in entry["detail"] for entry in m.skipped)
    assert m.counts == {"train": 4, "valid": 1}
    assert m.dropped_studies == ["MURA-v1.1/valid/XR_WRIST/patient00005/study1_positive/"]
    assert m.study_counts == {"train": 4, "valid": 1}

    # Row i of the pixels is still the image in row i of the index.
    for split in ("train", "valid"):
        part = cache.split(split)
        assert len(part.pixels) == len(part.index)
        for i, rel in enumerate(part.index["path"]):
            np.testing.assert_array_equal(part.pixels[i], fit_square(read_greyscale(bad_tree / rel), 16, "pad"))


def test_bad_images_give_the_same_bytes_in_and_out_of_process(bad_tree, tmp_path):
    a = build_cache(bad_tree, size=16, out=tmp_path / "a", workers=0)
    b = build_cache(bad_tree, size=16, out=tmp_path / "b", workers=2)
    assert files_of(a.path) == files_of(b.path)
    assert manifest_without_time(a.path) == manifest_without_time(b.path)


# ------------------------------------------------------------- folders and opening


def test_other_options_or_data_give_another_folder(small_tree):
    base = build_cache(small_tree, size=16, fit="pad", workers=0)
    crop = build_cache(small_tree, size=16, fit="crop", workers=0)
    bigger = build_cache(small_tree, size=20, fit="pad", workers=0)
    assert len({base.path, crop.path, bigger.path}) == 3

    labels = small_tree / "MURA-v1.1" / "train_labeled_studies.csv"
    labels.write_text(labels.read_text().replace(",1\n", ",0\n", 1))
    relabelled = build_cache(small_tree, size=16, fit="pad", workers=0)
    assert relabelled.path != base.path and not relabelled.reused
    assert relabelled.path.name.startswith("16px-pad-")

    image = small_tree / base.split("train").index["path"][0]
    Image.fromarray(np.full((30, 20), 9, np.uint8)).save(image)
    os.utime(image, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = build_cache(small_tree, size=16, fit="pad", workers=0)
    assert changed.path not in (base.path, relabelled.path)
    assert (changed.split("train").pixels[0][:, 4:12] == 9).all()


def test_open_cache_refuses_what_is_not_a_finished_cache(small_tree, tmp_path):
    with pytest.raises(DataError, match="no preprocessed cache"):
        open_cache(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        open_cache(tmp_path / "empty")
    assert "mura preprocess" in info.value.hint

    cache = build_cache(small_tree, size=16, workers=0)
    assert open_cache(cache.path).manifest == cache.manifest
    assert open_cache(cache.path / MANIFEST_NAME).path == cache.path

    manifest = json.loads((cache.path / MANIFEST_NAME).read_text())
    (cache.path / MANIFEST_NAME).write_text(json.dumps({**manifest, "format_version": 999}))
    with pytest.raises(DataError, match="format version 999"):
        open_cache(cache.path)
    (cache.path / MANIFEST_NAME).write_text("{")
    with pytest.raises(DataError, match="unreadable"):
        open_cache(cache.path)
    (cache.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    (cache.path / "valid.npy").unlink()
    with pytest.raises(DataError, match="damaged"):
        open_cache(cache.path)


def test_wrong_shape_is_damage(small_tree):
    cache = build_cache(small_tree, size=16, workers=0)
    np.save(cache.path / "train.npy", np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(DataError, match="damaged"):
        open_cache(cache.path).split("train")
    with pytest.raises(DataError, match="no split"):
        open_cache(cache.path).split("test")


def test_old_format_in_the_default_folder_is_rebuilt(small_tree):
    cache = build_cache(small_tree, size=16, workers=0)
    manifest = json.loads((cache.path / MANIFEST_NAME).read_text())
    (cache.path / MANIFEST_NAME).write_text(json.dumps({**manifest, "format_version": 0}))
    rebuilt = build_cache(small_tree, size=16, workers=0)
    assert not rebuilt.reused and rebuilt.manifest.format_version == FORMAT_VERSION


def test_out_folder_holding_something_else_is_refused(small_tree, tmp_path):
    build_cache(small_tree, size=16, out=tmp_path / "c", workers=0)
    with pytest.raises(DataError, match="another dataset or options"):
        build_cache(small_tree, size=20, out=tmp_path / "c", workers=0)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("\\documentclass{article}")
    with pytest.raises(DataError, match="not empty"):
        build_cache(small_tree, size=16, out=tmp_path / "mine", workers=0)


def test_a_split_with_no_images(tmp_path):
    tree = Tree(tmp_path / "data")
    tree.study("train", 0, [grey(20, 20)])
    data = tree.write_csvs()
    cache = build_cache(data, size=16, workers=0)
    assert cache.split("valid").pixels.shape == (0, 16, 16) and len(cache.split("valid").index) == 0


def test_bad_options(small_tree):
    from muracli.errors import ConfigError

    with pytest.raises(ConfigError):
        build_cache(small_tree, size=16, fit="squash")
    with pytest.raises(ConfigError):
        build_cache(small_tree, size=3)
    with pytest.raises(ConfigError):
        build_cache(small_tree, size=16, workers=-1)


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError):
        build_cache(tmp_path / "nothing-here", workers=0)
