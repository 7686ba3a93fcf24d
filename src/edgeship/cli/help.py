"""``--help`` that fits the terminal: one panel per help panel (``rich_help_panel``), flag names
whole (never cut), help text wrapped beside them or, when narrow, below them."""

from __future__ import annotations

import inspect
from typing import Any

import typer
from rich.console import Console
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .console import SafeConsole
from .options import MAIN_PANEL

__all__ = ["Command", "Group", "print_help"]


def _help_option_without_placeholder(cmd: Any, ctx: Any, opt: Any) -> Any:
    if opt is not None:
        opt.metavar = ""  # a flag: no <bool> placeholder
    return opt


class Group(typer.core.TyperGroup):
    def get_help_option(self, ctx: Any) -> Any:
        return _help_option_without_placeholder(self, ctx, super().get_help_option(ctx))


class Command(typer.core.TyperCommand):
    """A command whose ``--help`` fits the terminal: one panel per help panel (``rich_help_panel``),
    flag names whole (never cut), help text wrapped beside them or, when narrow, below them."""

    def get_help_option(self, ctx: Any) -> Any:
        return _help_option_without_placeholder(self, ctx, super().get_help_option(ctx))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        print_help(self, ctx, SafeConsole(highlight=False))


def _flag_text(p: Any) -> Any:
    t = Text(no_wrap=True)
    if p.param_type_name == "argument":
        t.append((p.metavar or p.name.upper()) + ("..." if p.nargs != 1 else ""), style="bold cyan")
        return t
    for i, o in enumerate(p.opts):
        t.append((" / " if i else "") + o, style="bold cyan")
    for o in p.secondary_opts:
        t.append(" / " + o, style="bold magenta")
    metavar = p.metavar if p.metavar is not None else ("" if p.is_flag else getattr(p.type, "name", "text").upper())
    if metavar:
        t.append(" " + metavar, style="yellow")
    return t


def _default_text(p: Any) -> str:
    shown = getattr(p, "show_default", None)
    d = p.default
    if shown is False or callable(d):
        return ""
    if isinstance(shown, str):
        return shown
    if p.param_type_name == "option" and p.is_flag:
        return ("on" if d else "off") if p.secondary_opts else ""
    if d is None or d == [] or d == ():
        return ""
    if isinstance(d, (list, tuple)):
        return ",".join(map(str, d))
    return str(getattr(d, "value", d))


def _param_help(p: Any) -> Any:
    t = Text(getattr(p, "help", None) or "")
    default = _default_text(p)
    if default:
        t.append(f"  [default: {default}]", style="dim")
    if p.required:
        t.append("  [required]", style="dim red")
    return t


def print_help(cmd: Any, ctx: Any, c: Console) -> None:
    c.print(Padding(Text(cmd.get_usage(ctx), style="bold"), 1))
    if cmd.help:
        c.print(Padding(Text(inspect.cleandoc(cmd.help)), (0, 1, 1, 1)))
    panels: dict[str, list[Any]] = {}
    for p in cmd.get_params(ctx):
        if getattr(p, "hidden", False):
            continue
        default_panel = "Arguments" if p.param_type_name == "argument" else MAIN_PANEL
        panels.setdefault(getattr(p, "rich_help_panel", None) or default_panel, []).append(p)
    inner = c.width - 4  # panel border and padding
    for name in sorted(panels, key=lambda n: (n != "Arguments", n != MAIN_PANEL)):  # stable: others as they come
        rows = [(_flag_text(p), _param_help(p)) for p in panels[name]]
        flag_width = max(f.cell_len for f, _ in rows)
        grid = Table.grid(padding=(0, 2))
        if flag_width <= min(44, inner * 2 // 5):  # flags beside their help
            grid.add_column(no_wrap=True)
            grid.add_column()
            for f, h in rows:
                grid.add_row(f, h)
        else:  # narrow: each flag on its own line, its help indented below
            grid.add_column()
            for f, h in rows:
                grid.add_row(f)
                grid.add_row(Padding(h, (0, 0, 0, 4)))
        c.print(Panel(grid, title=name, title_align="left", border_style="dim", padding=(0, 1)))
