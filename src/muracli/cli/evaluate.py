"""`mura evaluate`: study-level metrics of a run on a split, per body part."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

from muracli.cli import console
from muracli.choices import CALIBRATION_SPLITS, CALIBRATIONS, METRICS
from muracli.cli.options import Aggregate, DataOption, ManifestOption, Split, choice_enum, examples

if TYPE_CHECKING:
    from muracli.evaluation.evaluate import Evaluation

EXAMPLES = examples(
    """
  # the latest run's study-level kappa on the valid split
  mura evaluate --metric kappa

  # everything, per body part, with 95% bootstrap intervals, saved to a folder
  mura evaluate runs/cnn-20260101-120000 --bootstrap 1000 --out eval/cnn

  # a run trained with --manifest finds its manifest again; or name one
  mura evaluate runs/mine --manifest other/manifest.csv

  # wrists only (a run trained with --body-part is evaluated on its own parts by default)
  mura evaluate runs/cnn-20260101-120000 --body-part XR_WRIST

  # fit a temperature and a 95%-sensitivity threshold on the run's selection split, saved for `mura predict`
  mura evaluate runs/cnn-20260101-120000 --calibrate temperature --operating-point sensitivity=0.95 --save

  # a checkpoint file, max over views instead of the mean, as JSON
  mura evaluate runs/cnn-20260101-120000/last.pt --aggregate max --json

  # an ensemble: the mean of the runs' image probabilities, members side by side
  mura evaluate runs/cnn-a runs/densenet169-b --bootstrap 1000 --out eval/ensemble

  # the MURA paper's recipe: the five runs under runs/ of best kappa on their choosing split
  mura evaluate --ensemble-top 5 runs/ --bootstrap 1000
"""
)


Metric = choice_enum("Metric", (*METRICS, "all"))
Calibration = choice_enum("Calibration", CALIBRATIONS)
CalibrationSplit = choice_enum("CalibrationSplit", CALIBRATION_SPLITS)


TABLE_METRICS = ["kappa", "auc", "accuracy", "sensitivity", "specificity", "f1"]
LABELS = {"kappa": "kappa", "auc": "AUC", "accuracy": "accuracy", "f1": "F1", "sensitivity": "sensitivity", "specificity": "specificity"}


def register(app: typer.Typer) -> None:
    app.command(name="evaluate", epilog=EXAMPLES)(evaluate)


def evaluate(
    targets: Annotated[
        Optional[list[Path]],
        typer.Argument(
            metavar="RUN_DIR|CHECKPOINT...",
            help="A run directory (its best.pt), a .pt file, or nothing for the latest run; several: their ensemble; "
            "with --ensemble-top: folders of runs.",
            show_default=False,
        ),
    ] = None,
    data: DataOption = None,
    manifest: ManifestOption = None,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Evaluate on this preprocess cache (it must hold the model's image size).")] = None,
    split: Annotated[Split, typer.Option("--split", help="The split to evaluate.")] = Split.valid,
    body_part: Annotated[
        Optional[str],
        typer.Option("--body-part", help="Only these body parts, comma-separated (XR_WRIST,XR_HAND). "
                     "[default: the run's own, else all]", show_default=False),
    ] = None,
    metric: Annotated[Metric, typer.Option("--metric", help="The metric to show first; all: a table per body part.")] = Metric.all,
    aggregate: Annotated[
        Optional[Aggregate], typer.Option("--aggregate", help="Study probability from image probabilities. [default: the run's, usually mean]", show_default=False)
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option("--threshold", min=0.0, max=1.0, help="Abnormal when the probability is >= this. [default: the run's, usually 0.5]", show_default=False)
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Resamples of studies for 95% confidence intervals (0: none).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resamples.")] = 0,
    gpu: Annotated[
        Optional[bool], typer.Option("--gpu/--cpu", help="Run on CUDA or the CPU. Default: the GPU when present.", show_default=False)
    ] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed precision. [default: on for CUDA]", show_default=False)] = None,
    batch_images: Annotated[int, typer.Option("--batch-images", min=1, help="At most this many images per forward pass (bounds memory).")] = 256,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Write metrics.json, predictions.csv, image_predictions.csv, roc.png, confusion.png and reliability.png here "
                     "(an ensemble's default: a new runs/ensemble-<timestamp>).", show_default=False),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print metrics.json on stdout.")] = False,
    ensemble_top: Annotated[
        Optional[int],
        typer.Option("--ensemble-top", min=1, metavar="K", show_default=False,
                     help="The ensemble of the K runs under the folders given with the best kappa on the split that "
                     "chose their checkpoints (the MURA paper: 5)."),
    ] = None,
    calibrate: Annotated[
        Optional[Calibration],
        typer.Option("--calibrate", help="Fit a temperature on the split that chose the checkpoint and write "
                     "calibration.json beside it (evaluate and predict then apply it).", show_default=False),
    ] = None,
    calibrate_on: Annotated[
        Optional[CalibrationSplit],
        typer.Option("--calibrate-on", help="Where --calibrate and --operating-point fit: select (the run's "
                     "--select-on split) or valid (then valid's numbers are optimistic). [default: select]",
                     show_default=False),
    ] = None,
    operating_point: Annotated[
        Optional[str],
        typer.Option("--operating-point", metavar="youden|sensitivity=S|specificity=S",
                     help="Choose the study threshold on the split that chose the checkpoint; report sensitivity "
                     "and specificity there and on --split.", show_default=False),
    ] = None,
    save: Annotated[bool, typer.Option("--save", help="Record the --operating-point threshold in calibration.json, "
                                       "which predict then uses.")] = False,
) -> None:
    """Evaluate a run, or an ensemble of runs, at study level: Cohen's kappa, AUC and more, overall and per body part."""
    from muracli.evaluation.evaluate import evaluate_run

    if ensemble_top is not None or len(targets or []) > 1:
        if calibrate or operating_point or save:
            from muracli.errors import ConfigError

            raise ConfigError(
                "--calibrate, --operating-point and --save apply to one run, not to an ensemble",
                "calibrate each member with `mura evaluate RUN --calibrate temperature`: "
                "the ensemble applies each member's calibration.json",
            )
        _ensemble(
            targets or [], ensemble_top, metric=metric.value, json_output=json_output, out=out,
            data=data, manifest=manifest, cache=cache, split=split.value,
            aggregate=aggregate.value if aggregate else None, threshold=threshold, bootstrap=bootstrap, seed=seed,
            device="auto" if gpu is None else ("cuda" if gpu else "cpu"), amp=amp, batch_images=batch_images,
            body_parts=body_part,
        )
        return
    with console.RichProgress() as progress:
        evaluation = evaluate_run(
            targets[0] if targets else None,
            data=data,
            manifest=manifest,
            cache=cache,
            split=split.value,
            aggregate=aggregate.value if aggregate else None,
            threshold=threshold,
            bootstrap=bootstrap,
            seed=seed,
            device="auto" if gpu is None else ("cuda" if gpu else "cpu"),
            amp=amp,
            batch_images=batch_images,
            out=out,
            progress=progress,
            body_parts=body_part,
            calibrate=calibrate.value if calibrate else None,
            calibrate_on=calibrate_on.value if calibrate_on else None,
            operating_point=operating_point,
            save=save,
        )
    for note in evaluation.notes:
        console.warn(note)
    if json_output:
        console.print_json(evaluation.report)
        return
    render(evaluation, metric.value)


def _ensemble(targets: list[Path], top: int | None, *, metric: str, json_output: bool, out: Path | None,
              **options: Any) -> None:
    """`mura evaluate RUN RUN ...` and `--ensemble-top K FOLDER`: each member, then their ensemble."""
    from muracli.errors import ConfigError
    from muracli.evaluation.ensemble import evaluate_ensemble
    from muracli.evaluation.members import top_runs

    picked = None
    if top is not None:
        if not targets:
            raise ConfigError("--ensemble-top needs the folder(s) of runs to pick from",
                              "e.g. mura evaluate --ensemble-top 5 runs/")
        picked = top_runs(targets, top)
        for skipped in picked.skipped:
            console.warn(f"skipping {skipped.path}: {skipped.reason}")
        targets = [Path(run.path) for run in picked.picked]
    with console.RichProgress() as progress:
        evaluation = evaluate_ensemble(targets, out=out, picked=picked, progress=progress, **options)
    for note in evaluation.notes:
        console.warn(note)
    if json_output:
        console.print_json(evaluation.report)
        return
    from muracli.cli.evaluate_ensemble import header_lines, members_table

    report = evaluation.report
    for line in header_lines(evaluation):
        console.out.print(line, soft_wrap=True)
    console.out.print()
    console.print_whole(members_table(evaluation, metric))
    console.out.print()
    console.out.print("Ensemble " + _headline(report, "kappa" if metric == "all" else metric), soft_wrap=True)
    console.out.print()
    console.print_whole(_table(report, TABLE_METRICS if metric == "all" else [metric]))
    console.out.print(_image_line(report), soft_wrap=True)
    folder = next(iter(evaluation.files.values())).parent
    names = ", ".join(path.name for path in evaluation.files.values())
    console.out.print(f"Wrote {names} to {escape(str(folder))}", soft_wrap=True)


def render(evaluation: "Evaluation", metric: str) -> None:
    """The human report: header, the chosen metric in bold, the per-body-part table, files."""
    report = evaluation.report

    def write(text: str = "") -> None:
        console.out.print(text, soft_wrap=True)

    epoch = f", epoch {evaluation.epoch}" if evaluation.epoch is not None else ""
    write(f"Checkpoint  {escape(str(evaluation.checkpoint))} ({report['model']}{epoch}, {report['image_size']} px)")
    write(f"Split       {report['split']}: {report['n_studies']} studies, {report['n_images']} images")
    only = f", {', '.join(report['body_parts'])} only" if report.get("body_parts") else ""
    write(f"Data        {escape(str(evaluation.cache_path))} (device {evaluation.device}{only})")
    write(f"Chosen on   {_chosen_on(report)}")
    write(f"Calibration {escape(_calibration_line(report))}")
    if report["aggregate"] == "vote":
        write(
            f"Aggregate   vote of views, threshold {report['threshold']:g} per view; a study is abnormal "
            f"when >= {report['decision_threshold']:g} of its views vote abnormal"
        )
    elif report["aggregate"] == "study":
        pool = (report.get("study_model") or {}).get("view_pool", "?")
        write(f"Aggregate   study model ({pool} pooling of view features), threshold {report['threshold']:g}")
    else:
        write(f"Aggregate   {report['aggregate']} of views, threshold {report['threshold']:g}")
    write()
    headline = "kappa" if metric == "all" else metric
    write(_headline(report, headline))
    write()
    table = _table(report, TABLE_METRICS if metric == "all" else [metric])
    console.print_whole(table)
    write(_image_line(report))
    write(_calibration_metrics(report))
    if report.get("operating_point"):
        write(_operating_point(report))
    outputs = {role: path for role, path in evaluation.files.items() if role != "calibration"}
    if outputs:
        folder = next(iter(outputs.values())).parent
        names = ", ".join(path.name for path in outputs.values())
        write(f"Wrote {names} to {escape(str(folder))}")
    if "calibration" in evaluation.files:
        write(f"Wrote {escape(str(evaluation.files['calibration']))}: evaluate and predict apply it "
              "(delete it to return to the checkpoint's own)")


def _chosen_on(report: dict[str, Any]) -> str:
    """Which split chose the checkpoint, and what that means for the numbers below."""
    selected = report.get("selected_on", "valid")
    if Path(report["checkpoint"]).name == "last.pt":
        return "none: last.pt is the run's last epoch"
    if selected == "valid":
        honest = " (these valid numbers are optimistic)" if report["split"] == "valid" else ""
        return f"valid: the epoch of best valid kappa{honest}"
    return f"{selected}: a held-out part of train (valid never chose it)"


def _calibration_line(report: dict[str, Any]) -> str:
    """The temperature and threshold applied, and where they come from."""
    used = report["calibration"]
    parts = []
    if used["temperature"] != 1.0:
        parts.append(f"temperature {used['temperature']:.3g} (fitted on {used['temperature_fitted_on']})")
    source = used["threshold_source"]
    if source != "checkpoint":
        parts.append(f"threshold {report['threshold']:g} from {source}")
    if not parts:
        return "none (the checkpoint's own probabilities and threshold)"
    where = f" in {used['file']}" if used.get("file") else ""
    valid = "; fitted on valid: valid's numbers are optimistic" if used.get("fitted_on_valid") else ""
    return ", ".join(parts) + where + valid


def _calibration_metrics(report: dict[str, Any]) -> str:
    calibration = report["calibration"]
    study, image = calibration["study"], calibration["image"]
    text = f"Calibration ({calibration['binning']}): study ECE {study['ece']:.3f}, Brier {study['brier']:.3f}"
    if image is not None:
        text += f"; image ECE {image['ece']:.3f}, Brier {image['brier']:.3f}"
    return text


def _operating_point(report: dict[str, Any]) -> str:
    point = report["operating_point"]
    chosen, here = point["chosen_on"], point["evaluated_on"]

    def with_ci(name: str) -> str:
        ci = here["ci"][name]
        return _number(here[name]) + (f" ({100 * here['level']:g}% CI {ci[0]:.2f}–{ci[1]:.2f})" if ci else "")

    return (
        f"Operating point {point['rule']}: threshold {point['threshold']:.4g}, chosen on {chosen['split']} "
        f"({chosen['n_studies']} studies: sensitivity {_number(chosen['sensitivity'])}, specificity "
        f"{_number(chosen['specificity'])}); on {here['split']}: sensitivity {with_ci('sensitivity')}, "
        f"specificity {with_ci('specificity')}"
    )


def _level(report: dict[str, Any]) -> str:
    bootstrap = report.get("bootstrap") or {}
    return f"{100 * bootstrap.get('level', 0.95):g}%"


def _headline(report: dict[str, Any], metric: str) -> str:
    overall = report["overall"]
    value = overall.get(metric)
    text = f"[bold]{LABELS[metric]} {_number(value)}[/]"
    ci = (overall.get("ci") or {}).get(metric)
    if ci:
        text += f" [bold]({_level(report)} CI {ci[0]:.2f}–{ci[1]:.2f})[/]"
    elif value is not None and report.get("bootstrap"):
        text += " (no interval: undefined on every resample)"
    if value is None:
        text += " (undefined on this split, e.g. only one class present)"
    return text + f"  over {overall['n']} studies"


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _with_ci(block: dict[str, Any], metric: str) -> str:
    text = _number(block.get(metric))
    ci = (block.get("ci") or {}).get(metric)
    if ci:
        text += f" ({ci[0]:.2f}–{ci[1]:.2f})"
    return text


def _table(report: dict[str, Any], metrics: list[str]):
    from rich import box
    from rich.table import Table

    with_ci = {"kappa", "auc"} if len(metrics) > 1 else set(metrics)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    table.add_column("body part")
    table.add_column("studies", justify="right")
    for metric in metrics:
        header = LABELS[metric]
        if metric in with_ci and report.get("bootstrap"):
            header += f" ({_level(report)} CI)"
        table.add_column(header, justify="right")

    def row(name: str, block: dict[str, Any], **style: Any) -> None:
        cells = [_with_ci(block, m) if m in with_ci else _number(block.get(m)) for m in metrics]
        table.add_row(name, str(block["n"]), *cells, **style)

    for part, block in report["by_body_part"].items():
        row(_part_name(part), block)
    table.add_section()
    row("overall", report["overall"], style="bold")
    return table


def _part_name(part: str) -> str:
    # XR_SHOULDER -> Shoulder, as in the MURA paper's tables
    return part[3:].capitalize() if part.startswith("XR_") else part


def _image_line(report: dict[str, Any]) -> str:
    image = report["image_level"]
    if image is None:
        return "Image level: none (a study model scores whole studies)"
    return (
        f"Image level ({image['n']} images): kappa {_number(image['kappa'])}, AUC {_number(image['auc'])}, "
        f"accuracy {_number(image['accuracy'])}, sensitivity {_number(image['sensitivity'])}, "
        f"specificity {_number(image['specificity'])}"
    )
