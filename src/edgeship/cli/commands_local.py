"""Commands about this machine: targets (what it can convert to), cache (info, clear)."""

from __future__ import annotations

import typer
from rich.console import Console

from .._table import print_table
from .help import Command, Group
from .options import JSON_OPT
from .run import run_command

__all__ = ["cache_app", "targets"]


def targets(as_json: bool = JSON_OPT) -> None:
    """List the registered targets, what they produce and whether their extras are installed."""
    from ..api import targets_info

    def body():
        info = targets_info()

        def human(c: Console) -> None:
            rows = [[i["name"], i.get("format", "?"), ", ".join(i.get("precisions", [])), ", ".join(i.get("accepts", [])),
                     f"needs: {i.get('install')}" if i.get("missing") else i["problem"] if i.get("problem")
                     else "ready"] for i in info]
            print_table(c, "targets", ["name", "format", "precisions", "converts from", "status"], rows,
                        wrap=("precisions", "converts from", "status"))

        return {"ok": True, "targets": info}, human

    run_command(as_json, body)


cache_app = typer.Typer(cls=Group, no_args_is_help=True,
                        help="The cache of built artifacts and measured figures (info, clear).")


@cache_app.command("info", cls=Command)
def cache_info(as_json: bool = JSON_OPT) -> None:
    """What the cache holds: entries by kind and their size, and where it is ($EDGESHIP_CACHE_DIR)."""
    from .. import api

    def body():
        doc = api.cache_info()

        def human(c: Console) -> None:
            c.print(f"cache: {doc['dir']}", markup=False, highlight=False)
            c.print(f"{doc['entries']} entries, {_mb(doc['bytes'])}", markup=False, highlight=False)
            for kind, k in sorted(doc["kinds"].items()):
                c.print(f"  {kind:<11} {k['entries']:>4} entries {_mb(k['bytes']):>9}, "
                        f"least recently used {k['oldest_use_days']:g} days ago", markup=False, highlight=False)
            if doc["other"]:
                c.print("not cleared (not task results): " + ", ".join(f"{n} ({_mb(b)})" for n, b in doc["other"].items()),
                        markup=False, highlight=False)

        return doc, human

    run_command(as_json, body)


@cache_app.command("clear", cls=Command)
def cache_clear(
    older_than: float = typer.Option(None, "--older-than", metavar="DAYS", min=0,
                                     help="only entries not used for this many days"),
    as_json: bool = JSON_OPT,
) -> None:
    """Remove cached artifacts and figures (all, or those unused for --older-than DAYS)."""
    from .. import api

    def body():
        doc = api.cache_clear(older_than_days=older_than)
        return doc, lambda c: c.print(f"removed {doc['removed']} entries ({_mb(doc['bytes'])}) from {doc['dir']}",
                                      markup=False, highlight=False)

    run_command(as_json, body)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
