"""Checkpoints are written atomically and loaded without executing code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from muracli.errors import CheckpointError
from muracli.runtime.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint

MINIMAL = {
    "model": {"name": "cnn"},
    "state_dict": {"w": torch.ones(2)},
    "image_size": 32,
    "mean": 0.5,
    "std": 0.25,
}


class Payload:
    """Unpickling this would create a marker file: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip_adds_format_and_version(tmp_path):
    path = save_checkpoint(dict(MINIMAL), tmp_path / "a.pt")
    loaded = load_checkpoint(path)
    assert loaded["format"] == "mura-checkpoint" and loaded["format_version"] == FORMAT_VERSION
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({**MINIMAL, "format": "mura-checkpoint", "format_version": FORMAT_VERSION, "x": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()

    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_truncated_and_empty_files_are_corrupt(tmp_path):
    path = save_checkpoint(dict(MINIMAL), tmp_path / "a.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_other_format_versions_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({**MINIMAL, "format": "mura-checkpoint", "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(path)
    torch.save({"conv1.weight": torch.zeros(1)}, path)  # e.g. torchvision ImageNet weights
    with pytest.raises(CheckpointError, match="not a mura checkpoint") as info:
        load_checkpoint(path)
    assert "--weights" in info.value.hint
    torch.save({"format": "mura-checkpoint", "format_version": FORMAT_VERSION}, path)
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(path)


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint(dict(MINIMAL), tmp_path / "last.pt")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({**MINIMAL, "state_dict": {"w": torch.zeros(2)}}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
