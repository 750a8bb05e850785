"""Options shared by several commands, and the options built from a core option table.

Choices come from ``muracli.choices`` (``choice_enum`` turns a tuple into the
Enum click shows and checks); a command whose options are the fields of a
core config (``mura train`` and ``TrainConfig``) gets them from
``config_parameters`` and maps the values back with ``config_values``, so a
default, a range or a help line is written once, in the core.
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
import typing
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from muracli import choices
from muracli.data.layout import BODY_PART_HELP


def examples(text: str) -> str:
    """An epilog of examples that click prints verbatim (each paragraph marked with \\b)."""
    paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
    return "Examples:\n\n" + "\n\n".join("\b\n" + p for p in paragraphs)


def choice_enum(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A ``str`` Enum whose members are ``values`` (what Typer turns into a click Choice)."""
    return Enum(name, {value: value for value in values}, type=str)


Difficulty = choice_enum("Difficulty", choices.DIFFICULTIES)
Fit = choice_enum("Fit", choices.FITS)
Aggregate = choice_enum("Aggregate", choices.AGGREGATES)
Split = choice_enum("Split", choices.SPLITS)
SortKey = choice_enum("SortKey", choices.SORT_KEYS)
CompareFormat = choice_enum("CompareFormat", choices.COMPARE_FORMATS)

DataOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data",
        help="The folder holding MURA-v1.1/ (or that folder itself). Default: $MURA_DATA, else ./data.",
        show_default=False,
    ),
]

ManifestOption = Annotated[
    Optional[Path],
    typer.Option(
        "--manifest",
        help="Instead of --data: a CSV manifest of your own images (path,label,study,split[,body_part,patient]).",
        show_default=False,
    ),
]


BodyPartOption = Annotated[
    Optional[str],
    typer.Option("--body-part", help=BODY_PART_HELP, show_default=False),
]


def config_parameters(config: type) -> list[inspect.Parameter]:
    """One Typer option per field of the dataclass ``config`` that has a help line.

    Every option defaults to None ("not given"), so the config's own default
    applies, and a resumed run can tell what was asked for; the help line
    states that default (or the field's ``shown`` text).
    """
    from muracli.training.config import declarations

    hints = typing.get_type_hints(config)
    parameters = []
    for f in dataclasses.fields(config):
        meta = f.metadata
        if meta.get("help") is None:
            continue
        kind = _value_type(f, hints[f.name])
        decls = declarations(f, kind)
        limits = {"min": meta["low"], "max": meta["high"]} if kind in (int, float) else {}
        info = typer.Option(*decls, help=_help(f), show_default=False, **limits)
        parameters.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                              annotation=Annotated[Optional[kind], info])
        )
    return parameters


def config_values(config: type, values: dict[str, Any]) -> dict[str, Any]:
    """The config fields given on the command line (``None`` = not given), as the config stores them."""
    given = {}
    for f in dataclasses.fields(config):
        value = values.get(f.name)
        if value is None:
            continue
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        convert = f.metadata.get("to_config")
        given[f.name] = convert(value) if convert else value
    return given


def _value_type(f: dataclasses.Field, hint: Any) -> type:
    from muracli.training.config import value_type

    meta = f.metadata
    if meta["cli_type"] is None and meta["choices"]:
        return choice_enum(f.name.title().replace("_", ""), meta["choices"])
    if meta["cli_type"] is None and meta["path"]:
        return Path
    return value_type(f, hint)


def _help(f: dataclasses.Field) -> str:
    meta = f.metadata
    shown = meta["shown"]
    if shown is None and f.default is not None and f.default is not dataclasses.MISSING:
        default = f.default
        shown = ("on" if default else "off") if isinstance(default, bool) else format(default, "g") if isinstance(
            default, float) else str(default)
    return meta["help"] + (f" [default: {shown}]" if shown else "")
