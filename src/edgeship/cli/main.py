"""The typer app: the global options, every command in the order ``--help`` lists them, the
entry point, and usage errors that read like every other error (``error: ...``)."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Any

import typer

from .._version import __version__
from ..errors import printable
from . import commands_deploy, commands_local, commands_measure, commands_release, commands_run, commands_updates
from .help import Command, Group

__all__ = ["app", "entrypoint"]

app = typer.Typer(cls=Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="edgeship: take a trained model to the edge — converted, verified, measured, packaged.")

# the commands, in the order --help lists them
for _name, _command in (
        ("deploy", commands_deploy.deploy), ("classify", commands_deploy.classify), ("ocr", commands_run.ocr),
        ("targets", commands_local.targets),
        ("package", commands_release.package), ("verify", commands_release.verify), ("keygen", commands_release.keygen),
        ("sweep", commands_measure.sweep), ("publish", commands_updates.publish),
        ("serve-updates", commands_updates.serve_updates), ("serve", commands_run.serve_cmd),
        ("compare-cloud", commands_measure.compare_cloud_cmd), ("benchmark", commands_measure.benchmark),
        ("report", commands_measure.report), ("analyze", commands_measure.analyze), ("compress", commands_deploy.compress),
        ("quantize", commands_deploy.quantize)):
    app.command(_name, cls=Command)(_command)
app.add_typer(commands_local.cache_app, name="cache")
app.add_typer(commands_release.release_app, name="release")
app.add_typer(commands_updates.repo_app, name="repo")
app.add_typer(commands_updates.agent_app, name="agent")


@app.callback(invoke_without_command=True)
def main(version: bool = typer.Option(False, "--version", metavar="", help="print the version and exit"),
         debug: bool = typer.Option(False, "--debug", metavar="",
                                    help="show full tracebacks, also from the isolated child processes")) -> None:
    if debug:
        os.environ["EDGESHIP_DEBUG"] = "1"  # read here and by the child processes, which inherit it
    if version:
        typer.echo(f"edgeship {__version__}")
        raise typer.Exit(0)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Python warnings the CLI process shows, made printable like everything else it prints (a
    library's warning may quote a name from the file it read)."""
    text = printable(warnings.formatwarning(message, category, filename, lineno, line))
    with contextlib.suppress(OSError, ValueError):
        (file or sys.stderr).write(text)


def _usage_error(e: Any) -> None:
    """A usage error the way every other error reads: ``error: ...`` on one line, then where to
    look (click's boxed "Error" panel was a second style)."""
    if type(e).__name__ == "NoArgsIsHelpError":  # the help was printed already
        return
    ctx = getattr(e, "ctx", None)
    print(f"error: {printable(e.format_message())}", file=sys.stderr)
    if ctx is not None:
        print(f"see {ctx.command_path} --help", file=sys.stderr)


def entrypoint() -> None:  # console script
    from typer import rich_utils  # typer's error formatting, needed only when the command line runs

    warnings.showwarning = _show_warning
    rich_utils.rich_format_error = _usage_error
    app()
