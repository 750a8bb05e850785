"""`mura predict`: probability of abnormality per study for new images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from muracli.cli import console
from muracli.cli.options import examples

EXAMPLES = examples(
    """
  # one study folder with the latest run
  mura predict data/MURA-v1.1/valid/XR_WRIST/patient11185/study1_positive

  # every study below a folder, most suspicious first, with Grad-CAM overlays
  mura predict data/MURA-v1.1/valid --sort --cam cams/

  # a single DICOM file with a given run, test-time augmentation, as JSON
  mura predict scan.dcm --checkpoint runs/densenet169-20260101-120000 --tta --json

  # a triage list for a spreadsheet
  mura predict incoming/ --sort --csv worklist.csv

  # a flat PACS export (any file names), with the study UIDs and accession numbers to link back
  mura predict pacs_export/ --with-ids --csv worklist.csv

  # an ensemble of two runs (each resizes the images its own way)
  mura predict incoming/ -c runs/cnn-64 -c runs/densenet169-320 --sort
"""
)

MAX_IMAGE_PROBABILITIES = 8  # per table row; the rest are in --json


def register(app: typer.Typer) -> None:
    app.command(name="predict", epilog=EXAMPLES)(predict)


def predict(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Study folders (holding images), single images, or folders of study folders (searched recursively). "
            "PNG, JPEG or DICOM (any file name; a flat export is split by StudyInstanceUID; a DICOMDIR is followed).",
            show_default=False,
        ),
    ],
    checkpoint: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--checkpoint", "-c", show_default=False,
            help="A run directory (its best.pt) or a checkpoint file. Default: the latest run. "
            "Repeat it for an ensemble: the mean of the members' image probabilities.",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON (field names: see the README).")] = False,
    csv_file: Annotated[
        Optional[Path], typer.Option("--csv", help="Write one CSV row per study to FILE ('-': stdout).", metavar="FILE", show_default=False)
    ] = None,
    cam: Annotated[
        Optional[Path], typer.Option("--cam", help="Write a Grad-CAM heat-map overlay per image (PNG, original size) into DIR.", metavar="DIR", show_default=False)
    ] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Test-time augmentation: average each image with its left-right mirror.")] = False,
    sort: Annotated[bool, typer.Option("--sort", help="Order studies by probability, highest first (a triage worklist).")] = False,
    gpu: Annotated[
        Optional[bool], typer.Option("--gpu/--cpu", help="Run on CUDA or the CPU. Default: the GPU when present.", show_default=False)
    ] = None,
    batch_images: Annotated[int, typer.Option("--batch-images", min=1, help="Images decoded and run through the model at once.")] = 64,
    with_ids: Annotated[
        bool, typer.Option("--with-ids", help="Add each study's DICOM StudyInstanceUID and AccessionNumber to --json and --csv (never patient tags).")
    ] = False,
    any_modality: Annotated[
        bool, typer.Option("--any-modality", help="Also score DICOM images whose Modality is not a radiograph's (CR, DX, RG): CT, MR, US, ...")
    ] = False,
) -> None:
    """Predict abnormality per study (table, --json or --csv). Research use only: not a medical device."""
    from muracli.errors import ConfigError, DataError
    from muracli.predict.discover import check_paths

    # Cheap checks first: a typo in PATH should not wait for torch to load.
    check_paths(paths)
    to_stdout_csv = csv_file is not None and str(csv_file) == "-"
    if to_stdout_csv and json_output:
        raise ConfigError("--json and --csv - both write to stdout", "write the CSV to a file (--csv FILE), or drop one of them")
    if csv_file is not None and not to_stdout_csv and not csv_file.parent.is_dir():
        raise DataError(f"cannot write {csv_file}: {csv_file.parent} is not a folder", "create the folder first, or pick another --csv FILE")

    from muracli.predict.cam import CamWriter
    from muracli.predict.discover import discover_studies
    from muracli.predict.ensemble import ensemble_header, predict_ensemble, refuse_cam
    from muracli.predict.output import prediction_report, report_header, sort_by_probability, study_record
    from muracli.runtime.checkpoint import load_model
    from muracli.runtime.devices import Precision, choose_precision, select_device

    refuse_cam(len(checkpoint or []), cam)
    device = select_device("auto" if gpu is None else ("cuda" if gpu else "cpu"))
    members = [load_model(target, device) for target in (checkpoint or [None])]
    from muracli.runtime.calibration import apply_calibration, describe

    for loaded in members:
        for note in apply_calibration(loaded):  # calibration.json beside the checkpoint, when there
            console.warn(note)
        if loaded.calibration is not None:
            owner = "" if len(members) == 1 else f" ({loaded.path})"
            console.info(f"Calibration:{owner} {describe(loaded.calibration)}")
    # fp32 on the CPU keeps the probabilities equal to `mura evaluate`'s; CUDA uses AMP as training does.
    precision = choose_precision(device, None) if device.type == "cuda" else Precision(None)
    writer = CamWriter(cam) if cam is not None else None
    header = report_header(members[0], tta=tta) if len(members) == 1 else ensemble_header(members, tta=tta)

    records: list[dict[str, Any]] = []  # small per-study records; pixels never outlive their batch
    studies = discover_studies(paths, on_empty=lambda p: console.warn(f"no images found in {p}"))
    with console.RichProgress() as progress:
        for result in predict_ensemble(
            members, studies, batch_images=batch_images, tta=tta, cam=writer, precision=precision,
            any_modality=any_modality, progress=progress,
        ):
            records.append(study_record(result, with_ids=with_ids))
    if sort:
        records = sort_by_probability(records)
    report = prediction_report(header, records)

    if csv_file is not None:
        _write_csv(records, None if to_stdout_csv else csv_file, with_ids=with_ids)
    if json_output:
        console.print_json(report)
    elif csv_file is None:
        _print_table(report, cam)
    if csv_file is not None or json_output:
        skipped = sum(len(r["skipped"]) for r in records)
        if skipped:
            console.warn(f"{skipped} file(s) skipped (see \"skipped\" in the output)")
        if csv_file is not None and not to_stdout_csv:
            console.info(f"Wrote {len(records)} studies to {csv_file}")
    if csv_file is not None and not json_output:
        # The CSV stays pure data; the note goes beside it.
        console.err.print(f"[dim]{report['disclaimer']}[/]", soft_wrap=True)

    if report["n_predicted"] == 0:
        n = report["n_studies"]
        raise DataError(
            ("the study could not" if n == 1 else f"none of the {n} studies could") + " be predicted: no readable image",
            "check the files named in the output (empty, truncated, not images?); "
            "DICOM images of another modality than CR, DX or RG are scored only with --any-modality",
        )


def _write_csv(records: list[dict[str, Any]], path: Path | None, *, with_ids: bool = False) -> None:
    import csv
    import io

    from muracli.errors import DataError
    from muracli.files import atomic_output
    from muracli.predict.output import csv_columns, csv_row

    columns = csv_columns(with_ids=with_ids)
    if path is None:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_row(r) for r in records)
        sys.stdout.flush()
        return
    try:
        with atomic_output(path) as raw:
            handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(csv_row(r) for r in records)
            handle.detach()  # flushes; atomic_output syncs, closes and renames the file itself
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}", "check the folder's permissions and free space") from exc


def _print_table(report: dict[str, Any], cam: Path | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    names = report["class_names"]
    prefix, shown = _short_names([r["study"] for r in report["studies"]])
    notes = any(r["skipped"] or r["error"] is not None for r in report["studies"])
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("study", overflow="fold")
    table.add_column("p(abnormal)", justify="right", no_wrap=True)
    table.add_column("label", no_wrap=True)
    table.add_column("images", justify="right", no_wrap=True)
    table.add_column("per image", overflow="fold", max_width=24)
    if notes:
        table.add_column("skipped / error", overflow="fold", max_width=40)
    for record, name in zip(report["studies"], shown):
        skipped = ", ".join(f"{Path(s['path']).name}: {s['reason']}" for s in record["skipped"])
        if record["error"] is not None:
            table.add_row(escape(name), "-", "[bold red]error[/]", "0", "", f"[red]{escape(record['error'])}[/]")
            continue
        label = escape(str(record["label"]))
        style = "bold red" if record["prediction"] == 1 else "green"
        probabilities = [f"{i['probability']:.3f}" for i in record["images"]]
        if len(probabilities) > MAX_IMAGE_PROBABILITIES:
            probabilities = probabilities[:MAX_IMAGE_PROBABILITIES] + [f"+{len(probabilities) - MAX_IMAGE_PROBABILITIES}"]
        table.add_row(
            escape(name),
            f"{record['probability']:.3f}",
            f"[{style}]{label}[/]",
            str(record["n_images"]),
            " ".join(probabilities),
            *([f"[yellow]{escape(skipped)}[/]" if skipped else ""] if notes else []),
        )
    out = console.out
    if prefix:
        out.print(escape(f"Studies in {prefix}:"), soft_wrap=True)
    console.print_whole(table)
    abnormal = sum(1 for r in report["studies"] if r["prediction"] == 1)
    normal = sum(1 for r in report["studies"] if r["prediction"] == 0)
    failed = report["n_failed"]
    counts = f"{report['n_studies']} stud{'y' if report['n_studies'] == 1 else 'ies'}: {abnormal} {names[1] if len(names) > 1 else 'abnormal'}, {normal} {names[0]}"
    if failed:
        counts += f", {failed} failed"
    how = "study model over all views" if report["aggregate"] == "study" else f"{report['aggregate']} of views"
    members = report["members"]
    if len(members) > 1:
        model = f"Ensemble of {len(members)} ({'; '.join(_member_text(m, with_checkpoint=True) for m in members)})"
        checkpoint = ""
    else:
        model, checkpoint = f"Model {_member_text(members[0])}", f"; checkpoint {report['checkpoint']}"
    out.print(
        escape(
            f"{counts}. {model}, {how}, threshold {report['decision_threshold']:.3g}{_calibration_words(report)}"
            f"{', TTA' if report['tta'] else ''}{checkpoint}"
        ),
        soft_wrap=True,
    )
    if cam is not None:
        out.print(escape(f"Grad-CAM overlays: {cam}"), soft_wrap=True)
    out.print(f"[dim]{escape(report['disclaimer'])}[/]", soft_wrap=True)


def _member_text(member: dict[str, Any], *, with_checkpoint: bool = False) -> str:
    text = f"{member['model']} ({member['image_size']} px, {member['fit']})"
    return f"{text} {member['checkpoint']}" if with_checkpoint else text


def _calibration_words(report: dict[str, Any]) -> str:
    """`` (from calibration.json: sensitivity=0.95 on select), temperature 1.4``, or nothing."""
    words = ""
    calibration = report["calibration"] or {}
    point = calibration.get("operating_point")
    if report["threshold_source"] != "checkpoint" and point:
        words += f" (from calibration.json: {point.get('rule')} on {point.get('split')})"
    if report["temperature"] != 1.0:
        fit = calibration.get("temperature_fit") or {}
        words += f", temperature {report['temperature']:.3g} (fitted on {fit.get('split')})"
    return words


def _short_names(studies: list[str]) -> tuple[str, list[str]]:
    """Study names without the folder they all share (the JSON keeps the full paths)."""
    import os

    if len(studies) < 2:
        return "", studies
    try:
        prefix = os.path.commonpath(studies)
    except ValueError:  # a mix of absolute and relative paths
        return "", studies
    if not prefix or prefix in studies:
        return "", studies
    return prefix, [os.path.relpath(s, prefix) for s in studies]
