"""``<dir>/report.md``: the demo's numbers, its pictures (relative links) and the command of every step.

``report_markdown`` joins one function per section (the introduction, then
result, data, preprocessing, training, evaluation, prediction and files); each
returns its lines, and sections are separated by one blank line.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muracli import __version__
from muracli.demo.config import training_options
from muracli.demo.result import DemoResult, number
from muracli.files import write_atomic

if TYPE_CHECKING:
    from muracli.data.layout import MuraLayout
    from muracli.evaluation.evaluate import Evaluation


def write_report(result: DemoResult, layout: "MuraLayout", evaluation: "Evaluation", history: list[dict]) -> Path:
    """``<dir>/report.md``: the numbers, the pictures (relative links) and the commands."""
    path = result.dir / "report.md"
    write_atomic(path, report_markdown(result, layout, evaluation, history).encode("utf-8"))
    return path


def report_markdown(result: DemoResult, layout: "MuraLayout", evaluation: "Evaluation", history: list[dict]) -> str:
    report = evaluation.report
    sections = (
        _introduction(result),
        _result(result, report),
        _data(result, layout),
        _preprocessing(result),
        _training(result, history),
        _evaluation(result, report),
        _prediction(result),
        _files(result),
    )
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _introduction(result: DemoResult) -> list[str]:
    reused = [s.name for s in result.stages if s.reused]
    return [
        "# mura demo",
        "",
        f"The whole pipeline on a synthetic MURA, made by `mura demo` (mura {__version__}) on "
        f"{datetime.now().strftime('%Y-%m-%d %H:%M')} in {result.seconds:.0f} s on {result.device}"
        + (f" ({result.threads} CPU thread{'s' if result.threads != 1 else ''})" if result.threads else "")
        + (f", reusing the earlier {', '.join(reused)}" if reused else "")
        + ".",
        "The images are synthetic, not radiographs of people, and mura is research software, not a medical device.",
        "",
        "The `sh` blocks give the `mura` command that does each step by hand. They write to the same places as "
        "the demo: pass `--force` to `mura download`, and remove a step's output (e.g. the run folder) before "
        "redoing it, or point them at another folder.",
    ]


def _result(result: DemoResult, report: dict[str, Any]) -> list[str]:
    overall = report["overall"]
    ci = overall.get("ci") or {}

    def with_ci(name: str) -> str:
        text = number(overall.get(name))
        if ci.get(name):
            text += f" | {ci[name][0]:.3f} to {ci[name][1]:.3f}"
        else:
            text += " | n/a"
        return text

    lines = [
        "## Result",
        "",
        f"Study-level metrics of the `{training_options(result.config)['model']}` on the {overall['n']} valid studies "
        f"({report.get('n_images', '?')} images; {report['aggregate']} of the view probabilities, threshold "
        f"{report['threshold']:g}), with 95% bootstrap intervals over studies ({result.config.bootstrap} resamples):",
        "",
        "| metric | value | 95% CI |",
        "|---|---|---|",
        f"| Cohen's kappa | {with_ci('kappa')} |",
        f"| AUC | {with_ci('auc')} |",
        f"| accuracy | {with_ci('accuracy')} |",
        f"| sensitivity | {with_ci('sensitivity')} |",
        f"| specificity | {with_ci('specificity')} |",
        "",
        "| stage | time | |",
        "|---|---|---|",
    ]
    for s in result.stages:
        how = "reused" if s.reused else f"{s.seconds:.1f} s"
        lines.append(f"| {s.name} | {how} | {_md(s.summary)} |")
    return lines


def _data(result: DemoResult, layout: "MuraLayout") -> list[str]:
    config = result.config
    stats = next(s for s in result.stages if s.name == "stats")
    lines = [
        "## 1. Data",
        "",
        f"{len(layout.studies)} synthetic studies (seed {config.seed}, difficulty `{config.difficulty}`, "
        f"longest side {config.max_side} px) in `{_link(result, layout.root)}/`, in MURA v1.1's layout.",
        "",
        "| split | body part | normal | abnormal | images |",
        "|---|---|---|---|---|",
    ]
    for row in stats.details["breakdown"]:
        if row["split"] not in ("train", "valid") and row["body_part"] != "total":
            continue  # the per-part rows of both splits together repeat the two tables above
        part = f"**{row['body_part']}**" if row["body_part"] == "total" else row["body_part"]
        lines.append(f"| {row['split']} | {part} | {row['normal']} | {row['abnormal']} | {row['images']} |")
    return lines + [
        "",
        "Normal and abnormal examples per body part (boxes: the synthetic ground-truth findings):",
        "",
        f"![montage]({_link(result, result.files['montage'])})",
        "",
        *_sh(result.commands["dataset"], result.commands["stats"]),
    ]


def _preprocessing(result: DemoResult) -> list[str]:
    return [
        "## 2. Preprocessing",
        "",
        f"Every image decoded once, padded to a square and resized to {result.config.image_size} px, in the cache "
        f"`{_link(result, result.files['cache'])}/`.",
        "",
        *_sh(result.commands["preprocess"]),
    ]


def _training(result: DemoResult, history: list[dict]) -> list[str]:
    t = training_options(result.config)
    lines = [
        "## 3. Training",
        "",
        f"The from-scratch `{t['model']}`, {t['epochs']} epochs, batch {t['batch_size']}, Adam at lr {t['lr']:g} with "
        f"{t['schedule']} decay, dropout {t['dropout']:g}, augmentation {'on' if t['augment'] else 'off'}"
        f"{', class weights as in the MURA paper' if t['class_weights'] else ''}; the checkpoint of the best "
        f"valid kappa is `{_link(result, result.files['checkpoint'])}`.",
        "",
        f"![training curves]({_link(result, result.files['curves'])})",
        "",
        "| epoch | train loss | valid loss | valid kappa | valid AUC | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in history:
        lines.append(
            f"| {row.get('epoch')} | {number(row.get('train_loss'))} | {number(row.get('valid_loss'))} | "
            f"{number(row.get('valid_kappa'))} | {number(row.get('valid_auc'))} | {number(row.get('seconds'), 1)} |"
        )
    return lines + ["", *_sh(result.commands["train"])]


def _evaluation(result: DemoResult, report: dict[str, Any]) -> list[str]:
    files = result.files
    lines = [
        "## 4. Evaluation",
        "",
        f"![ROC curve]({_link(result, files['roc'])}) ![confusion matrix]({_link(result, files['confusion'])})",
        "",
        "| body part | studies | kappa | AUC |",
        "|---|---|---|---|",
    ]
    for part, block in report["by_body_part"].items():
        lines.append(f"| {part} | {block['n']} | {number(block.get('kappa'))} | {number(block.get('auc'))} |")
    return lines + [
        "",
        f"All numbers: `{_link(result, files['metrics'])}`; per study: "
        f"`{_link(result, files['evaluation'] / 'predictions.csv')}`.",
        "",
        *_sh(result.commands["evaluate"]),
    ]


def _prediction(result: DemoResult) -> list[str]:
    lines = [
        "## 5. Prediction with Grad-CAM",
        "",
        "Valid studies the model saw only in validation; the overlays colour where the evidence for "
        "\"abnormal\" lies (red: strongest).",
        "",
        "| study | truth | p(abnormal) | prediction |",
        "|---|---|---|---|",
    ]
    for record in result.predictions:
        probability = "error" if record["probability"] is None else f"{record['probability']:.3f}"
        label = record["label"] or record["error"] or "?"
        mark = "" if record["correct"] is None else (" (right)" if record["correct"] else " (wrong)")
        lines.append(f"| `{record['study']}` | {record['truth']} | {probability} | {label}{mark} |")
    lines.append("")
    for record in result.predictions:
        images = [i for i in record["images"] if i.get("cam")]
        if not images:
            continue
        name = "/".join(record["study"].rstrip("/").split("/")[2:])
        lines.append(f"**{name}** ({record['truth']}, p = {record['probability']:.3f}):")
        lines.append("")
        lines.append(" ".join(f"![{Path(i['path']).name}]({_link(result, i['cam'])})" for i in images))
        lines.append("")
    return lines + _sh(result.commands["predict"])


def _files(result: DemoResult) -> list[str]:
    lines = ["## Files", ""]
    for role in ("data", "cache", "montage", "run", "checkpoint", "curves", "evaluation", "cams"):
        lines.append(f"- {role}: `{_link(result, result.files[role])}`")
    return lines + [
        "",
        f"Run `mura demo --dir {shlex.quote(str(result.config.dir))}` again to redo evaluation and prediction "
        "and reuse the rest.",
    ]


def _sh(*commands: str) -> list[str]:
    """A fenced ``sh`` block of command lines."""
    return ["```sh", *commands, "```"]


def _link(result: DemoResult, path: Path | str) -> str:
    """``path`` relative to the demo folder, as the report links it."""
    return Path(os.path.relpath(Path(path).resolve(), result.dir.resolve())).as_posix()


def _md(text: str) -> str:
    return text.replace("|", "\\|")
