"""The root ``mura`` command: global options, command registry, error mapping.

Each command lives in its own module under ``muracli.cli`` and imports
torch, pandas and friends inside its body, so ``mura --help`` and shell
completion stay instant.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from muracli import __version__
from muracli.cli import average, compare, console, demo, download, evaluate, predict, preprocess, stats, sweep, train

app = typer.Typer(
    name="mura",
    help=(
        "Abnormality classification of musculoskeletal radiographs (MURA): "
        "get the data, preprocess it once, train PyTorch models, evaluate them at study "
        "level with Cohen's kappa, and predict on new studies. Not a medical device."
    ),
    no_args_is_help=True,
    # Static scripts in completions/ complete without starting Python; no
    # --install-completion that would hook a slower dynamic one into the shell.
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        console.out.print(f"mura {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version and exit."),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks on errors (also MURA_DEBUG=1).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status lines.")] = False,
) -> None:
    console.configure(debug=debug, quiet=quiet)


for module in (download, stats, preprocess, train, sweep, average, evaluate, predict, compare, demo):
    module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (for tests and ``python -m muracli``)."""
    from muracli.errors import MuraError

    click_exceptions = _click_exceptions()
    try:
        result = app(args=argv, prog_name="mura", standalone_mode=False)
    except MuraError as exc:
        if console.state.debug:
            console.err.print_exception()
        console.error(exc.message, exc.hint)
        return exc.exit_code
    except click_exceptions.ClickException as exc:
        if console.state.debug:
            console.err.print_exception()
        command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "mura"
        console.error(exc.format_message(), f"see '{command} --help'")
        return exc.exit_code
    except typer.Abort:
        console.error("aborted")
        return 130
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # the last line of defence: no traceback unless asked
        if console.state.debug:
            console.err.print_exception()
        else:
            console.error(
                f"unexpected {type(exc).__name__}: {exc}",
                "run again with --debug (or MURA_DEBUG=1) for the traceback, and report it",
            )
        return 1
    return result if isinstance(result, int) else 0


def _click_exceptions():
    # Typer vendors click in recent releases and depends on it in older ones.
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - older Typer
        from click import exceptions
    return exceptions


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
