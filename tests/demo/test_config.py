"""The demo's training choices: one mapping of TrainConfig fields, from which the run, the JSON and the command come."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from types import SimpleNamespace

from muracli.demo import TRAINING, DemoConfig, reproduce_commands, train_config
from muracli.training.config import TrainConfig


def test_every_training_choice_is_a_trainconfig_field_and_stated_only_there():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(TRAINING) <= fields
    assert not set(TRAINING) & {f.name for f in dataclasses.fields(DemoConfig)}  # no second place for them


def test_train_config_is_the_choices_on_the_demo_cache(tmp_path):
    config = DemoConfig(dir=tmp_path, epochs=3, seed=7, image_size=48)
    cache = SimpleNamespace(path=tmp_path / "cache", size=48, fit="pad")
    train = train_config(cache, config, tmp_path / "run", "cpu").validate()
    for name, value in TRAINING.items():
        assert getattr(train, name) == value, name
    assert (train.epochs, train.seed, train.image_size, train.fit) == (3, 7, 48, "pad")
    assert (train.device, train.out, train.cache) == ("cpu", str(tmp_path / "run"), str((tmp_path / "cache").resolve()))


def test_the_train_command_gives_every_choice(tmp_path):
    command = reproduce_commands(DemoConfig(dir=tmp_path), [], "cpu", threads=1)["train"]
    words = shlex.split(command)
    for name, value in TRAINING.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            assert (flag if value else "--no-" + flag[2:]) in words, name
        else:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            assert words[words.index(flag) + 1] == shown, name


def test_json_lists_the_choices_after_epochs_as_it_always_has():
    options = DemoConfig(dir=Path("d")).to_dict()
    names = list(options)
    assert options["dir"] == "d"
    assert names[names.index("epochs") + 1:names.index("device")] == [k for k in TRAINING if k != "model"]
    assert options["lr"] == TRAINING["lr"]


def test_a_finished_demo_run_from_before_a_new_option_is_still_reused(tmp_path):
    """config.json written by a mura without a later field (here amp_dtype) matches the field's default,
    so `mura demo` reuses the run instead of training again."""
    import json

    from muracli.demo.stages import _finished_run
    from muracli.runtime.rundir import RunDir

    cache = SimpleNamespace(path=tmp_path / "cache", size=48, fit="pad")
    wanted = train_config(cache, DemoConfig(dir=tmp_path, epochs=2), tmp_path / "run", "cpu").to_dict()
    run = RunDir(tmp_path / "run")
    run.create()
    old = {k: v for k, v in wanted.items() if k not in ("amp_dtype", "compile_mode")}
    run.config_path.write_text(json.dumps({"config": old, "data": {"fingerprint": "f"}}))
    for epoch in (1, 2):
        run.append_metrics({"epoch": epoch, "train_loss": 0.5})
    run.best_path.write_bytes(b"")
    assert _finished_run(run.path, wanted, "f", 2) == (True, True)
    assert _finished_run(run.path, {**wanted, "amp_dtype": "fp16"}, "f", 2) == (False, False)
