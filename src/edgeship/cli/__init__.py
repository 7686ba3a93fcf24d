"""The edgeship command line: a thin layer over :mod:`edgeship.api`.

Options come from the typed configs in :mod:`edgeship.config`, so CLI and API cannot drift.
Results go to stdout (a table, or exactly one JSON document with ``--json``); progress, converter
chatter and errors go to stderr. Errors from the error tree exit with their code; anything else is
a bug and shows a traceback.

One concern a module: :mod:`.main` (the app, global options, the entry point, usage errors),
:mod:`.options` (options from the configs), :mod:`.help` (``--help`` that fits the terminal),
:mod:`.console` (the safe console), :mod:`.run` (stdout discipline, exit codes, progress), the
``commands_*`` modules (the commands by group) and :mod:`.views` (every human printer).
"""

from .console import SafeConsole
from .main import app, entrypoint

__all__ = ["SafeConsole", "app", "entrypoint"]
