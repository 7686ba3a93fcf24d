"""How every command runs: stdout is kept for the one result (a table, or exactly one JSON
document with ``--json``); progress, converter chatter and errors go to stderr. Errors from the
error tree exit with their code; anything else is a bug and shows a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from .._version import __version__
from ..errors import EdgeshipError
from .console import SafeConsole, err_console

__all__ = ["progress", "run_command"]


@contextlib.contextmanager
def _stdout_reserved() -> Iterator[Any]:
    """Send everything written to stdout (by us or by converters, even natively) to stderr;
    yield a writer for the one real result."""
    sys.stdout.flush()
    real_fd = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(real_fd, "w", buffering=1)
    try:
        yield real
    finally:
        sys.stdout.flush()
        os.dup2(real.fileno(), 1)
        real.close()


def _out_width(real: Any) -> int:
    """The width results are drawn at: COLUMNS, else the terminal's, else 80 (a pipe or a file)."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return int(cols)
    with contextlib.suppress(OSError, ValueError):
        if real.isatty():
            return os.get_terminal_size(real.fileno()).columns
    return 80


def run_command(as_json: bool, body: Callable[[], tuple[Any, Callable[[Console], None] | None]]) -> None:
    """Run ``body`` -> (json_result, human_printer); map errors to exit codes."""
    code = 0
    with _stdout_reserved() as real:
        out_console = SafeConsole(file=real, width=_out_width(real))
        try:
            result, human = body()
            if as_json:
                real.write(json.dumps(result, indent=2, default=str) + "\n")
            elif human is not None:
                human(out_console)
        except EdgeshipError as e:
            code = e.exit_code
            if not as_json and getattr(e, "human", None) is not None:
                e.human(out_console)  # what was done before the error (deploy: the artifacts written)
            if as_json:
                real.write(json.dumps({"ok": False, "error": e.to_dict()}, indent=2, default=str) + "\n")
            line = f"error: {e.message}" + (f" — {e.hint}" if e.hint else "")
            err_console.print(line, style="bold red", highlight=False, markup=False, soft_wrap=True)
        except KeyboardInterrupt as e:
            code = 130
            err_console.print(str(e) or "interrupted: nothing half-written was left in the output folder",
                              highlight=False, markup=False, soft_wrap=True)
        except Exception:  # a bug: show it
            code = 1
            err_console.print(traceback.format_exc(), highlight=False, end="", soft_wrap=True)
            err_console.print(Text.assemble(("internal error", "bold red"), f" in edgeship {__version__}: this is a "
                                            "bug, please report it with the traceback above"))
            if as_json:
                real.write(json.dumps({"ok": False, "error": {"type": "InternalError", "exit_code": 1,
                                                              "message": traceback.format_exc(limit=1).strip()}}) + "\n")
    if code:
        raise typer.Exit(code)


@contextlib.contextmanager
def progress() -> Iterator[Callable[[str], None]]:
    """A spinner on stderr (a line per step when stderr is not a terminal); yields the update function."""
    status = err_console.status("starting", spinner="dots")
    status.start()

    def update(msg: str) -> None:
        status.update(msg)
        if not err_console.is_terminal:
            err_console.print(f"· {msg}", highlight=False)

    try:
        yield update
    finally:
        status.stop()
