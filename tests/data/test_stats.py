"""The data breakdown (`mura stats`)."""

from __future__ import annotations

import json

from muracli.data.layout import read_layout
from muracli.data.stats import breakdown


def test_breakdown_counts(tiny_mura):
    table = breakdown(read_layout(tiny_mura)).set_index(["split", "body_part"])
    wrist = table.loc[("train", "XR_WRIST")]
    assert (wrist.patients, wrist.normal, wrist.abnormal, wrist.studies, wrist.images) == (1, 1, 1, 2, 3)
    assert wrist.views_per_study == 1.5
    total = table.loc[("train", "total")]
    assert (total.normal, total.abnormal, total.studies, total.images) == (2, 2, 4, 8)
    everything = table.loc[("all", "total")]
    assert (everything.studies, everything.images, everything.patients) == (6, 11, 5)


def test_stats_cli_table_and_json(cli, tiny_mura):
    result = cli("stats", "--data", tiny_mura)
    assert result.exit_code == 0
    assert "XR_WRIST" in result.stdout and "total" in result.stdout
    result = cli("stats", "--data", tiny_mura, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    rows = {(r["split"], r["body_part"]): r for r in data["breakdown"]}
    assert rows[("valid", "total")]["studies"] == 2
    assert data["problems"] == []


def test_stats_cli_reports_problems_as_warnings(cli, tiny_mura):
    (tiny_mura / "MURA-v1.1/train/XR_HAND/patient00003/study1_positive/image2.png").unlink()
    result = cli("stats", "--data", tiny_mura)
    assert result.exit_code == 0
    assert "missing_file" in result.stderr and "image2.png" in result.stderr
