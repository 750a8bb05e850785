"""Smoke tests for the training benchmarks: each script runs with its tiniest settings
(--smoke, on the CPU) and prints the JSON the README describes."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory) -> Path:
    """One tiny synthetic dataset for both scripts (the first one generates it)."""
    return tmp_path_factory.mktemp("bench") / "data"


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def load_script(name: str):
    """Import a benchmark script by path, leaving sys.path and sys.modules as they were."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    saved_path, saved_train = list(sys.path), sys.modules.get("train")
    try:
        spec.loader.exec_module(module)  # gpu.py puts benchmarks/ on sys.path to import train.py
    finally:
        sys.path[:] = saved_path
        if saved_train is None:
            sys.modules.pop("train", None)
        else:
            sys.modules["train"] = saved_train
    return module


@pytest.mark.slow
def test_train_benchmark_smoke(bench_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    result = run([sys.executable, "benchmarks/train.py", "--smoke", "--device", "cpu", "--data", str(bench_data),
                  "--out", str(out)])
    printed = json.loads(result.stdout)
    assert printed == json.loads(out.read_text())
    assert printed["benchmark"] == "train" and printed["device"] == "cpu"
    assert {"cpus", "torch_threads", "torch", "load_average_at_start", "load_average_at_end"} <= set(printed["machine"])
    (config,) = printed["configs"]
    assert (config["model"], config["size"], config["run"]) == ("cnn", 32, {"steps": 2})
    for side in ("mura", "plain"):
        stats = config[side]
        assert stats["images_per_s"] > 0 and stats["ms_per_step"] > 0
        assert stats["peak_rss_mb"] >= stats["rss_start_mb"] > 0
        assert len(stats["runs_images_per_s"]) == 1 and stats["runs_steps"] == [2]
        assert stats["images_per_cpu_s"] is None or stats["images_per_cpu_s"] > 0
        assert stats["cpu_share"] >= 0 and stats["minor_faults_per_step"] >= 0
    assert config["mura"]["augment"] is True and config["mura"]["precision"] == "fp32"
    assert config["ratio"] == pytest.approx(config["mura"]["images_per_s"] / config["plain"]["images_per_s"], rel=0.01)
    assert {"peak_rss_ratio", "ratio_per_cpu_s"} <= set(config) and len(config["load_average_at_start"]) == 3


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_script_smoke_on_cpu(bench_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    result = run(["bash", "benchmarks/gpu.sh", "--device", "cpu", "--smoke"], env=env)
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["benchmark"] == "gpu" and saved["device"] == "cpu" and saved["compile_backend"] == "eager"
    assert {"device_name", "peak_bf16_tflops", "fp32_note", "flops_note", "peer_note", "configs", "epoch_projection"} <= set(saved)
    rows = saved["configs"]
    assert [(row["section"], row.get("precision"), row.get("compile")) for row in rows] == [
        ("core", "bf16", None), ("profile", "bf16", None), ("eval", "fp32", None), ("e2e", "fp32", None),
        ("compile", "bf16", "default"), ("matrix", "fp16", None), ("matrix", "fp32", None)]
    for row in rows:
        if row["section"] in ("core", "compile", "matrix"):
            assert row["mura_images_per_s"] > 0 and row["peer_images_per_s"] > 0 and row["forward_gflops_per_image"] > 0
            assert row["ratio"] == pytest.approx(row["mura_images_per_s"] / row["peer_images_per_s"], rel=0.01)
            assert row["mura"]["runs_steps"] == row["peer"]["runs_steps"] == [2]
            assert row["mfu"] is None  # no peak FLOP/s for a CPU
    assert rows[-1]["channels_last"] is False and rows[-1]["tf32"] is False
    profile = (tmp_path / "profile-cnn-32.txt").read_text()
    assert rows[1]["file"] == str(tmp_path / "profile-cnn-32.txt") and "Self CPU" in profile
    assert rows[2]["images_per_s"] > 0 and rows[2]["batch_images"] == 16
    e2e = rows[3]
    assert e2e["epochs"] == 2 and e2e["images_per_s"] > 0 and e2e["over_benchmark"] > 0 and e2e["batch_size"] == 32
    assert saved["epoch_projection"][0]["seconds_per_epoch"] > 0
    lines = result.stdout.strip().splitlines()
    table = (tmp_path / "gpu.txt").read_text().strip().splitlines()
    assert lines[-len(table):] == table and table[1].split()[:2] == ["section", "model"]


def test_peak_table_and_model_list() -> None:
    gpu = load_script("gpu")
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == (989.0, 67.0)
    assert gpu.peak_tflops("NVIDIA H100 PCIe")[0] == 756.0
    assert gpu.peak_tflops("NVIDIA H200")[0] == 989.0
    assert gpu.peak_tflops("Some Other Card") == (None, None)
    train = load_script("train")
    assert train.parse_models("cnn@128, resnet18@224") == [("cnn", 128), ("resnet18", 224)]
    with pytest.raises(SystemExit):
        train.parse_models("cnn")


def test_gpu_end_to_end_run_is_stopped_at_the_budget(tmp_path: Path) -> None:
    import torch

    gpu = load_script("gpu")
    row = gpu.end_to_end("cnn", 32, tmp_path / "data", tmp_path / "runs", torch.device("cpu"), 2, None, timeout=0.01)
    assert row["section"] == "e2e" and row["skipped"].startswith("mura train still running after 0 s")


@pytest.mark.slow
def test_cam_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "cam.json"
    result = run([sys.executable, "benchmarks/cam.py", "--smoke", "--work", str(tmp_path / "work"), "--out", str(out)])
    printed = json.loads(result.stdout)
    assert printed == json.loads(out.read_text())
    assert printed["benchmark"] == "cam-pointing-game" and printed["model"] == "cnn"
    assert printed["images"] > 0 and sum(v["images"] for v in printed["by_kind"].values()) >= printed["images"]
    for key in ("hit_rate", "random_point_hit_rate", "centre_point_hit_rate"):
        assert 0.0 <= printed[key] <= 1.0
    assert 0.0 < printed["random_point_hit_rate"] < 1.0  # boxes cover part of each image
    assert "| Grad-CAM maximum |" in result.stderr
    # scoring an existing run reuses its data and gives the same figures
    again = run([sys.executable, "benchmarks/cam.py", "--run", printed["run"], "--data", printed["data"],
                 "--work", str(tmp_path / "work")])
    assert json.loads(again.stdout)["hit_rate"] == printed["hit_rate"]


def test_cam_benchmark_geometry() -> None:
    cam = load_script("cam")
    assert cam.inside(2, 3, (2, 3, 4, 5)) and not cam.inside(4, 3, (2, 3, 4, 5))  # x1, y1 exclusive
    assert cam.grow((2, 3, 4, 5), 2, width=5, height=100) == (0, 1, 5, 7)
    assert cam.covered_fraction([(0, 0, 5, 10), (0, 0, 10, 5)], width=10, height=10) == pytest.approx(0.75)
    assert cam.relative_path("/data/x/MURA-v1.1/valid/a.png") == "MURA-v1.1/valid/a.png"


@pytest.mark.slow
def test_multiview_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "multiview.json"
    result = run([sys.executable, "benchmarks/multiview.py", "--smoke", "--device", "cpu",
                  "--work", str(tmp_path / "work"), "--out", str(out)])
    printed = json.loads(result.stdout)
    assert printed == json.loads(out.read_text())
    methods = [row["method"] for row in printed["rows"]]
    assert methods == ["image model, mean of views", "image model, max of views", "study model, mean pooling",
                       "study model, max pooling", "study model, attention pooling"]
    for row in printed["rows"]:
        assert row["auc"] is None or 0.0 <= row["auc"] <= 1.0
        assert len(row["runs"]) == 1
    assert "| method | study kappa | study AUC |" in result.stderr
