"""`--body-part` on stats, preprocess, train and evaluate, and `--select-on` through the CLI."""

from __future__ import annotations

import json

from muracli.data.cache import open_cache


def test_stats_counts_only_the_body_parts_asked_for(cli, tiny_mura):
    (tiny_mura / "MURA-v1.1/train/XR_HAND/patient00003/study1_positive/image2.png").unlink()  # a hand problem
    result = cli("stats", "--data", tiny_mura, "--body-part", "XR_WRIST,elbow", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["body_parts"] == ["XR_ELBOW", "XR_WRIST"]
    rows = {(r["split"], r["body_part"]): r for r in data["breakdown"]}
    assert {part for _, part in rows} == {"XR_ELBOW", "XR_WRIST", "total"}
    assert (rows[("train", "total")]["studies"], rows[("train", "total")]["images"]) == (3, 6)
    assert (rows[("all", "total")]["studies"], rows[("all", "total")]["patients"]) == (5, 4)
    assert data["problems"] == []  # the missing hand image is not a wrist or elbow problem
    table = cli("stats", "--data", tiny_mura, "--body-part", "XR_WRIST")
    assert table.exit_code == 0 and "XR_WRIST only" in table.stdout and "XR_ELBOW" not in table.stdout


def test_a_bad_body_part_is_a_usage_error_everywhere(cli, tiny_mura, tmp_path):
    for command in (("stats",), ("preprocess", "--size", "16"), ("train", "--image-size", "16", "--cpu")):
        result = cli(*command, "--data", tiny_mura, "--body-part", "XR_KNEE")
        assert result.exit_code == 2, command
        assert result.stderr.startswith("Error: unknown body part 'XR_KNEE'") and "Hint:" in result.stderr
        assert "Traceback" not in result.stderr
    result = cli("stats", "--data", tiny_mura, "--body-part", "XR_SHOULDER")
    assert result.exit_code == 2 and "no studies of XR_SHOULDER" in result.stderr


def test_a_body_part_cache_serves_a_body_part_run_and_its_evaluation(cli, tiny_mura, tmp_path):
    built = cli("preprocess", "--data", tiny_mura, "--size", "16", "--workers", "0", "--body-part", "XR_WRIST", "--json")
    assert built.exit_code == 0, built.stderr
    summary = json.loads(built.stdout)
    assert summary["body_parts"] == ["XR_WRIST"] and summary["cache"].endswith("-wrist")
    assert summary["counts"] == {"train": 3, "valid": 2} and summary["study_counts"] == {"train": 2, "valid": 1}
    cache = open_cache(summary["cache"])
    assert set(cache.split("train").index["body_part"]) == {"XR_WRIST"} and cache.body_parts == ["XR_WRIST"]

    run = tmp_path / "run"
    trained = cli("train", "--data", tiny_mura, "--image-size", "16", "--body-part", "XR_WRIST", "--model", "cnn",
                  "--epochs", "1", "--cpu", "--out", run, "--json")
    assert trained.exit_code == 0, trained.stderr
    record = json.loads((run / "config.json").read_text())
    assert record["data"]["cache"] == summary["cache"]  # no cache of the whole dataset was built
    assert [p.name for p in (tiny_mura / "mura-cache").iterdir()] == [cache.path.name]
    assert record["config"]["body_parts"] == ["XR_WRIST"] and record["data"]["train_images"] == 3

    evaluated = cli("evaluate", run, "--json")  # the run's own body parts, without being told
    assert evaluated.exit_code == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["body_parts"] == ["XR_WRIST"] and list(report["by_body_part"]) == ["XR_WRIST"]
    assert report["n_images"] == 2 and report["selected_on"] == "valid"


def test_select_on_and_body_parts_through_train_and_evaluate(cli, synthetic_cache, tmp_path):
    parts = ["XR_SHOULDER", "XR_WRIST"]
    run = tmp_path / "run"
    result = cli("train", "--cache", synthetic_cache.path, "--model", "cnn", "--batch-size", "16", "--cpu", "--out", run,
                 "--epochs", "1", "--body-part", ",".join(parts), "--select-on", "train:0.40", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["selected_on"] == "train:0.4" and data["best_epoch"] == 1
    assert data["best_select_kappa"] == data["history"][0]["select_kappa"]
    assert data["best_valid_kappa"] == data["history"][0]["valid_kappa"]
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["body_parts"] == parts and record["config"]["select_on"] == "train:0.4"
    train = synthetic_cache.split("train").index
    assert record["data"]["train_images"] + record["data"]["select_images"] == int(train["body_part"].isin(parts).sum())

    evaluated = cli("evaluate", run, "--cache", synthetic_cache.path, "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    valid = synthetic_cache.split("valid").index
    assert report["selected_on"] == "train:0.4" and report["body_parts"] == parts
    assert set(report["by_body_part"]) == set(parts)
    assert report["n_studies"] == valid[valid["body_part"].isin(parts)]["study"].nunique()
    wrists = cli("evaluate", run, "--cache", synthetic_cache.path, "--body-part", "XR_WRIST")
    assert wrists.exit_code == 0, wrists.stderr
    assert "Chosen on   train:0.4: a held-out part of train (valid never chose it)" in wrists.stdout
    assert "XR_WRIST only" in wrists.stdout and "Shoulder" not in wrists.stdout
    bad = cli("evaluate", run, "--cache", synthetic_cache.path, "--body-part", "XR_KNEE")
    assert bad.exit_code == 2 and "unknown body part 'XR_KNEE'" in bad.stderr
