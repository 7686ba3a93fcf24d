"""Sizes and counts for people, where :mod:`edgeship.reporting` still imports them from; they live in
:mod:`edgeship._table` with the one table printer (the analysis's own printer is the command line's
view, :func:`edgeship.cli.views.print_report`)."""

from __future__ import annotations

from .._table import count_text, size_text

__all__ = ["count_text", "size_text"]
