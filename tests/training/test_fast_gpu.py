"""Issue #12's GPU-speed options, checked on the CPU: the loss read back at ticks only,
--amp-dtype, --compile-mode (eager backend), and the device-sized batch and learning rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from muracli.errors import ConfigError, DeviceError
from muracli.runtime import devices
from muracli.runtime.checkpoint import load_checkpoint
from muracli.runtime.devices import Precision, choose_precision, compile_model
from muracli.training.checkpointer import Progress
from muracli.training.config import TrainConfig
from muracli.training.meter import CUDA_TICK_STEPS, LossMeter, is_tick, tick_every
from muracli.training.sizing import default_batch, default_eval_images, resolve_sizes

GIB = 2**30
CPU = torch.device("cpu")


# -- the loss, summed on the device --------------------------------------------------------------


class CountingTensor(torch.Tensor):
    """A tensor that counts how often it is read back to the host."""

    reads = 0

    def __float__(self):
        CountingTensor.reads += 1
        return super().__float__()

    def item(self):
        CountingTensor.reads += 1
        return super().item()


@pytest.mark.parametrize("on_device", [True, False], ids=["device-sum", "host-sum"])
def test_the_loss_sum_is_the_per_step_float_sum_to_the_last_bit(on_device):
    generator = torch.Generator().manual_seed(0)
    losses = [torch.rand((), generator=generator) * 3 for _ in range(200)]
    sizes = [int(s) for s in torch.randint(1, 65, (200,), generator=generator)]
    state = Progress(loss_sum=0.123456789, seen=7)  # a resumed epoch starts from the saved sum
    meter = LossMeter(state, CPU, on_device=on_device)
    expected, seen = 0.123456789, 7
    for loss, size in zip(losses, sizes):
        meter.add(loss, size)
        expected += float(loss) * size  # the loop before issue #12, one host read per step
        seen += size
    assert state.seen == seen and meter.reads == 0
    assert meter.sync() == expected / seen
    assert state.loss_sum == expected and meter.reads == int(on_device)


def test_adding_a_loss_reads_nothing_back():
    CountingTensor.reads = 0
    meter = LossMeter(Progress(), CPU, on_device=True)  # what a CUDA run does, here on the CPU
    for _ in range(50):
        meter.add(torch.tensor(0.5).as_subclass(CountingTensor), 4)
    assert CountingTensor.reads == 0
    assert meter.sync() == 0.5


def test_ticks_every_step_on_the_cpu_and_every_n_steps_on_cuda():
    assert tick_every(CPU) == 1
    every = tick_every(torch.device("cuda"))
    assert every == CUDA_TICK_STEPS > 1
    ticks = [step for step in range(1, 51) if is_tick(step, 50, every)]
    assert ticks == [20, 40, 50]  # and always at the epoch's last step
    assert all(is_tick(step, 7, 1) for step in range(1, 8))


def test_the_loop_reads_the_loss_back_only_at_ticks_and_logs_the_same_train_loss(synthetic_cache, tmp_path, monkeypatch):
    """The trainer with a CUDA-like tick every 3 steps: progress (and a host read) at ticks and
    the epoch's end only, and the same train_loss as with a read every step."""
    from muracli.training import meter as meter_module
    from muracli.training import trainer
    from muracli.training.trainer import train

    reads = []
    sync = meter_module.LossMeter.sync
    monkeypatch.setattr(meter_module.LossMeter, "sync", lambda self: reads.append(self.state.step) or sync(self))

    def run(every: int, out: Path) -> tuple[list[int], float]:
        monkeypatch.setattr(trainer, "tick_every", lambda device: every)
        ticks, reads[:] = [], []
        config = TrainConfig(cache=str(synthetic_cache.path), image_size=synthetic_cache.size, model="cnn", epochs=1,
                             batch_size=4, device="cpu", out=str(out), seed=3, workers=0)
        result = train(config, progress=lambda task, done, total=None, **fields: task == "train" and ticks.append((done, total)))
        return ticks, result.history[-1]["train_loss"]

    ticks, loss_at_ticks = run(3, tmp_path / "ticks")
    steps = ticks[-1][1]
    assert steps > 4 and [done for done, _ in ticks] == [s for s in range(1, steps + 1) if s % 3 == 0 or s == steps]
    assert reads == [done for done, _ in ticks] + [steps]  # one read per tick, and one as the epoch ends
    every_step, loss_every_step = run(1, tmp_path / "every")
    assert len(every_step) == steps and loss_at_ticks == loss_every_step


# -- --amp-dtype ---------------------------------------------------------------------------------


def test_fp16_turns_the_scaler_on_and_bf16_leaves_it_off():
    assert Precision(torch.float16).scaled and Precision(torch.float16).scaler(CPU).is_enabled()
    assert not Precision(torch.bfloat16).scaler(CPU).is_enabled()
    assert Precision(torch.float16).name == "fp16"


def test_amp_dtype_choices_on_the_cpu(monkeypatch):
    assert choose_precision(CPU, None, "auto") == Precision(None)  # the CPU default is unchanged: fp32
    assert choose_precision(CPU, True, "auto") == Precision(torch.bfloat16)
    assert choose_precision(CPU, True, "bf16") == Precision(torch.bfloat16)
    if devices.autocast_supported("cpu", torch.float16):
        assert choose_precision(CPU, True, "fp16") == Precision(torch.float16)
    monkeypatch.setattr(devices, "autocast_supported", lambda device_type, dtype: False)
    with pytest.raises(DeviceError, match="cannot autocast to fp16 on cpu"):
        choose_precision(CPU, True, "fp16")


def test_amp_dtype_turns_amp_on_and_conflicts_with_no_amp():
    assert TrainConfig(amp_dtype="fp16").amp is True
    assert TrainConfig().amp is None and TrainConfig().amp_dtype == "auto"
    with pytest.raises(ConfigError, match="--no-amp"):
        TrainConfig(amp=False, amp_dtype="bf16").validate()


def test_fp16_on_the_cpu_trains_with_loss_scaling_or_stops_with_an_error(cli, synthetic_cache, tmp_path, monkeypatch):
    if devices.autocast_supported("cpu", torch.float16):  # a recent torch: fp16 autocast on the CPU, scaler on
        run = tmp_path / "fp16"
        result = cli(*train_args(synthetic_cache, run, "--epochs", "1", "--amp-dtype", "fp16"))
        assert result.exit_code == 0, result.stderr
        assert json.loads((run / "config.json").read_text())["device"]["precision"] == "fp16"
        assert "scale" in load_checkpoint(run / "last.pt")["scaler"]  # an enabled GradScaler's state
    monkeypatch.setattr(devices, "autocast_supported", lambda device_type, dtype: False)  # an older torch
    result = cli(*train_args(synthetic_cache, tmp_path / "old", "--epochs", "1", "--amp-dtype", "fp16"))
    assert result.exit_code == 2
    assert "Error: --amp-dtype fp16: this torch" in result.stderr and "cannot autocast to fp16 on cpu" in result.stderr
    assert not (tmp_path / "old" / "metrics.csv").exists()


# -- --compile-mode ------------------------------------------------------------------------------


def test_compile_mode_implies_compile_and_cuda_modes_fall_back_on_the_cpu(monkeypatch):
    assert TrainConfig(compile_mode="default").compile is True
    assert TrainConfig().compile is False
    monkeypatch.setenv("MURA_COMPILE_BACKEND", "eager")
    for mode in ("reduce-overhead", "max-autotune"):
        model, notes = compile_model(torch.nn.Linear(3, 2), mode, CPU)
        assert notes == [f"--compile-mode {mode} needs CUDA; compiling with mode default on cpu"]
        assert model(torch.ones(1, 3)).shape == (1, 2)
    assert compile_model(torch.nn.Linear(3, 2), "default", CPU)[1] == []


def train_args(cache, out: Path, *extra) -> list:
    return ["train", "--cache", cache.path, "--model", "cnn", "--cpu", "--out", out, "--seed", "2", *extra]


def test_a_compiled_run_resumes_and_its_checkpoints_load_uncompiled(cli, synthetic_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("MURA_COMPILE_BACKEND", "eager")
    run = tmp_path / "run"
    result = cli(*train_args(synthetic_cache, run, "--epochs", "1", "--compile-mode", "reduce-overhead"))
    assert result.exit_code == 0, result.stderr
    assert "Warning: --compile-mode reduce-overhead needs CUDA" in result.stderr
    record = json.loads((run / "config.json").read_text())["config"]
    assert record["compile"] is True and record["compile_mode"] == "reduce-overhead"
    # unset batch size, lr and evaluation batch are recorded as the numbers the CPU run used
    assert (record["batch_size"], record["lr"], record["eval_batch_images"]) == (32, 1e-3, 256)
    for name in ("best.pt", "last.pt"):
        assert not any(key.startswith("_orig_mod.") for key in load_checkpoint(run / name)["state_dict"])

    # a run written before these options (config.json without them) resumes with their defaults
    saved = json.loads((run / "config.json").read_text())
    for key in ("amp_dtype", "compile_mode"):
        del saved["config"][key]
    (run / "config.json").write_text(json.dumps(saved))
    result = cli("train", "--resume", run, "--epochs", "2")
    assert result.exit_code == 0, result.stderr
    assert "epoch 2/2" in result.stdout

    from muracli.runtime.checkpoint import load_model

    loaded = load_model(run / "best.pt", device="cpu")  # an uncompiled model takes the compiled run's weights
    assert not isinstance(loaded.model, torch._dynamo.eval_frame.OptimizedModule)
    assert cli("evaluate", run, "--cache", synthetic_cache.path, "--cpu").exit_code == 0


# -- the device-sized batch and learning rate ----------------------------------------------------


def test_default_batch_on_the_cpu_is_32_whatever_the_model():
    for model, size in (("cnn", 32), ("densenet169", 320), ("vgg16", 224)):
        assert default_batch("cpu", None, model, size) == 32
        assert default_eval_images("cpu", None, model, size) == 256


def test_default_batch_on_cuda_follows_model_size_and_memory():
    big = 80 * GIB
    assert default_batch("cuda", big, "cnn", 224) == 256
    assert default_batch("cuda", big, "densenet169", 224) == 128
    assert default_batch("cuda", big, "densenet169", 320) == 64  # twice the area: half the batch
    assert default_batch("cuda", big, "vgg16", 320) == 64
    assert default_batch("cuda", big, "resnet50", 224) == 64
    assert default_batch("cuda", big, "densenet169", 448) == 32
    assert default_batch("cuda", big, "cnn", 64) == 256  # no larger than the table at small sizes
    assert default_batch("cuda", 16 * GIB, "densenet169", 320) == 16  # never more than half a small card
    assert default_batch("cuda", 1 * GIB, "densenet169", 1024) == 1
    assert default_batch("cuda", big, "densenet169", 224, views=4) == 32  # a study model's batch counts studies
    assert default_eval_images("cuda", big, "densenet169", 320) == 256
    assert default_eval_images("cuda", big, "vgg16", 224) == 512
    assert default_eval_images("cuda", big, "cnn", 224) == 1024


def test_lr_follows_the_batch_only_when_both_are_unset():
    def sized(device_type, **options):
        config = resolve_sizes(TrainConfig(model="densenet169", image_size=224, **options), device_type, 80 * GIB)
        return config.batch_size, config.lr, config.eval_batch_images

    assert sized("cpu") == (32, 1e-3, 256)
    assert sized("cpu", batch_size=64) == (64, 1e-3, 256)
    assert sized("cuda") == (128, 4e-3, 512)
    assert sized("cuda", batch_size=64) == (64, 1e-3, 512)
    assert sized("cuda", lr=1e-4) == (128, 1e-4, 512)
    assert sized("cuda", eval_batch_images=100) == (128, 4e-3, 100)
