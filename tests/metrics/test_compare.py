"""Reading run directories into rows (metrics.compare)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from muracli.errors import DataError, MuraError
from muracli.metrics.compare import compare_runs, find_runs, read_run, sort_runs

HEADER = "epoch,train_loss,valid_loss,valid_kappa,valid_auc,valid_accuracy,lr,seconds,images_per_s\n"


def write_run(folder: Path, *, kappas, seconds=10.0, image_size=64, **config) -> Path:
    """A run directory by hand: config.json and metrics.csv as `mura train` writes them."""
    folder.mkdir(parents=True)
    settings = {"model": "cnn", "image_size": image_size, "augment": True, "dropout": 0.5, "weight_decay": 0.0,
                "optimizer": "adam", "lr": 0.001, "epochs": len(kappas), "pretrained": False, "weights": None, **config}
    (folder / "config.json").write_text(json.dumps({"config": settings, "device": {"type": "cpu"}}))
    rows = [f"{e},0.5,0.6,{'' if k is None else k},{'' if k is None else k / 2 + 0.5},0.7,0.001,{seconds},100\n"
            for e, k in enumerate(kappas, start=1)]
    (folder / "metrics.csv").write_text(HEADER + "".join(rows))
    return folder


def test_a_trained_run_reads_into_a_row(trained_run):
    row = read_run(trained_run)
    with (trained_run / "metrics.csv").open(newline="") as handle:
        metrics = list(csv.DictReader(handle))
    assert row.run == trained_run.name and row.model == "cnn" and row.image_size == 32
    assert row.pretrained == "no" and row.augment is True and row.optimizer == "adam" and row.lr == 0.002
    assert row.epochs_run == 2 and row.epochs_planned == 2
    kappas = [float(m["valid_kappa"]) for m in metrics]
    assert row.best_epoch == kappas.index(max(kappas)) + 1 and row.best_kappa == max(kappas)
    assert row.best_auc == float(metrics[row.best_epoch - 1]["valid_auc"])
    assert row.train_seconds == pytest.approx(sum(float(m["seconds"]) for m in metrics))


def test_best_epoch_is_the_first_highest_kappa(tmp_path):
    row = read_run(write_run(tmp_path / "r", kappas=[0.2, None, 0.5, 0.5, 0.1], seconds=3.0))
    assert (row.best_epoch, row.best_kappa, row.best_auc) == (3, 0.5, 0.75)
    assert row.epochs_run == 5 and row.train_seconds == 15.0


def test_weights_file_name_stands_for_pretrained(tmp_path):
    row = read_run(write_run(tmp_path / "r", kappas=[0.1], model="vgg16", weights="/w/vgg16-397923af.pth"))
    assert row.pretrained == "vgg16-397923af.pth"
    assert read_run(write_run(tmp_path / "s", kappas=[0.1], pretrained=True)).pretrained == "yes"


def test_sort_orders(tmp_path):
    a = write_run(tmp_path / "a", kappas=[0.3], seconds=50, image_size=128)
    b = write_run(tmp_path / "b", kappas=[0.6], seconds=20, image_size=320)
    c = write_run(tmp_path / "c", kappas=[None], seconds=5, image_size=64)
    names = lambda key: [r.run for r in compare_runs([a, b, c], sort=key).runs]  # noqa: E731
    assert names("kappa") == ["b", "a", "c"]  # best first, undefined last
    assert names("auc") == ["b", "a", "c"]
    assert names("name") == ["a", "b", "c"]
    assert names("time") == ["c", "b", "a"]
    assert names("image_size") == ["c", "a", "b"]
    with pytest.raises(DataError, match="unknown sort key"):
        sort_runs([], "loss")


def test_a_parent_folder_and_globs_expand_to_runs(tmp_path):
    for name, kappa in (("x", 0.1), ("y", 0.2)):
        write_run(tmp_path / "runs" / name, kappas=[kappa])
    (tmp_path / "runs" / "notes").mkdir()  # not a run: ignored inside a parent folder
    folders, skipped = find_runs([tmp_path / "runs"])
    assert [f.name for f in folders] == ["x", "y"] and not skipped
    folders, _ = find_runs([str(tmp_path / "runs" / "*"), tmp_path / "runs" / "x"])
    assert [f.name for f in folders] == ["x", "y"]  # the glob, once each


def test_broken_runs_are_skipped_with_a_reason(tmp_path):
    good = write_run(tmp_path / "good", kappas=[0.4])
    bad_json = tmp_path / "bad-json"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{not json")
    bad_csv = write_run(tmp_path / "bad-csv", kappas=[0.3])
    (bad_csv / "metrics.csv").write_text(HEADER + "one,two\n")
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    (no_config / "best.pt").write_bytes(b"")
    empty = tmp_path / "empty"
    empty.mkdir()
    comparison = compare_runs([good, bad_json, bad_csv, no_config, empty])
    assert [r.run for r in comparison.runs] == ["good"]
    reasons = {Path(s.path).name: s.reason for s in comparison.skipped}
    assert "config.json is unreadable" in reasons["bad-json"]
    assert "metrics.csv" in reasons["bad-csv"]
    assert reasons["no-config"] == "no config.json"
    assert "not a run directory" in reasons["empty"]


def test_nothing_readable_or_not_a_folder(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("[]")
    comparison = compare_runs([bad])
    assert not comparison.runs and len(comparison.skipped) == 1
    with pytest.raises(MuraError) as info:
        comparison.require_runs()
    assert info.value.exit_code == 1 and "no readable run" in info.value.message
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="is not a directory"):
        compare_runs([tmp_path / "file.txt"])
    with pytest.raises(DataError, match="does not exist"):
        compare_runs([tmp_path / "missing"])


def test_a_run_without_epochs_yet_is_a_row(tmp_path):
    folder = write_run(tmp_path / "fresh", kappas=[])
    (folder / "metrics.csv").unlink()
    row = read_run(folder)
    assert row.epochs_run == 0 and row.best_kappa is None and row.train_seconds is None


SELECT_HEADER = "epoch,train_loss,valid_loss,valid_kappa,valid_auc,select_loss,select_kappa,select_auc,lr,seconds\n"


def test_a_run_chosen_on_train_reports_valid_at_the_epoch_select_chose(tmp_path):
    folder = write_run(tmp_path / "sel", kappas=[0.1], select_on="train:0.1")
    # valid peaks at epoch 1, the held-out part of train at epoch 2: best.pt holds epoch 2
    (folder / "metrics.csv").write_text(SELECT_HEADER + "1,0.5,0.5,0.6,0.8,0.5,0.3,0.7,0.001,1\n"
                                        "2,0.4,0.5,0.4,0.75,0.4,0.5,0.8,0.001,1\n")
    row = read_run(folder)
    assert row.selected_on == "train:0.1" and row.best_epoch == 2
    assert (row.best_kappa, row.best_auc, row.chosen_kappa) == (0.4, 0.75, 0.5)
    plain = read_run(write_run(tmp_path / "plain", kappas=[0.2, 0.4]))
    assert plain.selected_on == "valid" and plain.chosen_kappa == plain.best_kappa == 0.4


def test_an_ema_run_reports_the_weights_best_pt_holds(tmp_path):
    folder = write_run(tmp_path / "ema", kappas=[0.1], ema=0.99)
    header = "epoch,valid_kappa,valid_auc,ema_valid_kappa,ema_valid_auc,seconds\n"
    (folder / "metrics.csv").write_text(header + "1,0.3,0.7,0.35,0.72,1\n2,0.4,0.8,0.38,0.79,1\n3,0.2,0.6,0.45,0.85,1\n")
    row = read_run(folder)
    assert (row.best_epoch, row.best_kappa, row.best_auc, row.best_weights) == (3, 0.45, 0.85, "ema")


def test_seeds_fold_into_mean_and_sd(tmp_path):
    from muracli.metrics.compare import fold_runs, varying_fields

    runs = [read_run(write_run(tmp_path / f"cnn-seed{seed}", kappas=[k], seed=seed, out=f"runs/cnn-seed{seed}",
                               device=device))
            for seed, k, device in ((1, 0.5, "cpu"), (2, 0.6, "cuda"), (3, 0.7, "cpu"))]
    other = read_run(write_run(tmp_path / "big", kappas=[0.2], seed=1, image_size=128))
    groups = fold_runs(runs + [other], ignore={"device"})
    assert [g.n for g in groups] == [3, 1] and groups[0].name == "cnn" and groups[0].seeds == [1, 2, 3]
    assert groups[0].kappa == pytest.approx(0.6) and groups[0].kappa_sd == pytest.approx(0.1)
    assert groups[0].auc == pytest.approx(0.8) and groups[0].auc_sd == pytest.approx(0.05)
    assert groups[1].kappa == 0.2 and groups[1].kappa_sd is None
    assert len(fold_runs(runs)) == 2  # device is a difference unless ignored
    assert varying_fields(groups, ignore={"device"}) == ["image_size"]
