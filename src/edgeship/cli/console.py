"""The console every command draws on: what a file a user did not write says is drawn printable."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.segment import Segment

from ..errors import printable

__all__ = ["SafeConsole", "err_console"]


class SafeConsole(Console):
    """The console every command draws on. Model names, labels, op types and messages come from
    files a user did not write: each segment drawn passes through :func:`~edgeship.errors.printable`
    (no terminal escapes, no control characters), and markup is off unless a call asks for it
    (``markup=True``, its data through ``escape``), so a label like ``[/]`` is text, never markup.
    Styling is given as ``Text`` or ``style=``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        super().__init__(*args, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Any:  # measured as it will be drawn
        return super().render_str(printable(text), **kwargs)

    def render(self, renderable: Any, options: Any = None) -> Any:
        for seg in super().render(renderable, options):
            if seg.control or seg.text.isprintable():
                yield seg
            else:
                yield Segment(printable(seg.text), seg.style)


err_console = SafeConsole(stderr=True)
