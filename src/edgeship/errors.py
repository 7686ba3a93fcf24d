"""The edgeship error tree.

Every failure a user can cause or fix is an ``EdgeshipError``; the CLI prints its message and
hint on one line each and exits with its code. Anything else is a bug and shows a traceback
asking to report it.

::

    EdgeshipError (1)
    ├── UsageError (2)          a wrong flag, an unknown target, options that exclude each other
    ├── InputError (3)          a missing file, an input shape that does not fit
    │   └── FormatError (3)     a file that is not what it claims to be, a corrupt model
    ├── UnsupportedError (4)    an op or feature a target cannot take (names the ops and nodes)
    │   └── MissingExtraError (4)  a target whose optional SDK is not installed
    ├── ValidationError (5)     an artifact that does not match its source (per-output figures)
    └── SecurityError (6)       refused for safety (names the opt-in flag where one exists)

An error crosses a process boundary (an isolated child, a benchmark worker, a worker's failed
cell) as a dict: :meth:`EdgeshipError.to_dict` writes it, :func:`from_dict` builds it again as the
class its ``type`` names. Every subclass registers itself by its name when it is defined (those
defined elsewhere too, such as ``edgeship.isolate.ResourceLimitError``); a name not registered
becomes the given default class.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "EdgeshipError",
    "UsageError",
    "InputError",
    "FormatError",
    "UnsupportedError",
    "MissingExtraError",
    "ValidationError",
    "SecurityError",
    "first_line",
    "error_class",
    "from_dict",
]


_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\\\)?|\x1b[@-_]")


def strip_escapes(text: str) -> str:
    """``text`` without terminal escape sequences (colours, OSC titles and links), each removed whole."""
    return _ESCAPES.sub("", str(text))


def printable(text: str) -> str:
    """``text`` without terminal escape sequences (colours, OSC titles and links) or other control
    characters: messages quote libraries and files, and a terminal must show them, not obey them."""
    text = strip_escapes(text)
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "\ufffd" for ch in text)


def first_line(e: BaseException, limit: int = 400) -> str:
    """The one line of a library's exception worth showing a user (torch.onnx hides its cause in an
    'Exception summary' block), at most ``limit`` characters."""
    text = str(e)
    for marker in ("<class '", "Exception summary"):
        if marker in text:
            tail = text.split("## Exception summary", 1)[-1].strip().splitlines()
            for line in tail:
                if line.strip():
                    return line.strip()[:limit]
    return (text.strip().splitlines() or [type(e).__name__])[0][:limit]


class EdgeshipError(Exception):
    """Base of every error a user can act on. ``hint`` says what to do about it."""

    exit_code: int = 1
    kind: str = "error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY.setdefault(cls.__name__, cls)  # the first class of a name keeps it

    def __init__(self, message: str, hint: str | None = None, **details: Any) -> None:
        message = printable(message)
        hint = printable(hint) if hint is not None else None
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def to_dict(self, plain: bool = False) -> dict[str, Any]:
        """``{type, message, exit_code, hint?, details?}``, read back by :func:`from_dict`.
        ``plain``: the details as JSON holds them (numpy scalars as numbers, other values as text;
        a detail JSON cannot hold at all is left out), for a record written to a file."""
        out: dict[str, Any] = {
            "type": type(self).__name__,
            "message": self.message,
            "exit_code": self.exit_code,
        }
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = _plain(self.details) if plain else self.details
        return out

    def __str__(self) -> str:  # one line, with the hint when there is one
        return f"{self.message} ({self.hint})" if self.hint else self.message


_REGISTRY: dict[str, type[EdgeshipError]] = {"EdgeshipError": EdgeshipError}


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    import json

    def plain(x: Any) -> Any:
        return x.item() if hasattr(x, "item") and getattr(x, "ndim", 1) == 0 else str(x)

    out = {}
    for k, v in details.items():
        try:
            out[k] = json.loads(json.dumps(v, default=plain))
        except (TypeError, ValueError, RecursionError):
            continue
    return out


def error_class(name: Any, default: type[EdgeshipError] = EdgeshipError) -> type[EdgeshipError]:
    """The registered error class called ``name`` (an :class:`EdgeshipError` subclass), else ``default``."""
    return _REGISTRY.get(str(name), default)


def from_dict(d: dict[str, Any], default: type[EdgeshipError] = EdgeshipError,
              message: str = "the error came without a message") -> EdgeshipError:
    """The error a dict written by :meth:`EdgeshipError.to_dict` stands for, as the class its
    ``type`` names (:func:`error_class`; ``default`` for a name not registered); ``message`` when
    it has none. Keys it does not know are ignored."""
    details = d.get("details")
    details = {str(k): v for k, v in details.items() if k not in ("message", "hint")} if isinstance(details, dict) else {}
    return error_class(d.get("type", ""), default)(str(d.get("message", message)), hint=d.get("hint"), **details)


class UsageError(EdgeshipError):
    exit_code = 2


class InputError(EdgeshipError):
    exit_code = 3


class FormatError(InputError):
    exit_code = 3


class UnsupportedError(EdgeshipError):
    exit_code = 4


class MissingExtraError(UnsupportedError):
    exit_code = 4


class ValidationError(EdgeshipError):
    exit_code = 5


class SecurityError(EdgeshipError):
    exit_code = 6
