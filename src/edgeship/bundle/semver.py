"""Semantic versions as semver.org 2.0.0 orders them: what releases are ordered by (next_version, pruning, the update repository and the agent).

``MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]``: the three numbers compare numerically (1.10.0 is
newer than 1.9.0); a pre-release is older than its release (1.0.0-rc.1 < 1.0.0); pre-release
identifiers compare one by one, numbers numerically and below words, words in ASCII order, and a
longer list wins when the shorter is its start (1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta <
1.0.0-beta < 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0). Build metadata is ignored:
1.0.0+b1 and 1.0.0+b2 are the same release as far as ordering goes.

The release counter in ``bundle.json`` grows per destination folder only (two folders both start
at 1), so it orders nothing across folders; it is kept in the records as information.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["precedence", "is_newer", "newest", "SEMVER"]

_NUM = r"0|[1-9]\d*"
_PRE_ID = r"0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*"
#: semver.org's grammar: no leading zeros in numbers, no empty identifiers
SEMVER = re.compile(rf"^({_NUM})\.({_NUM})\.({_NUM})"
                    rf"(?:-((?:{_PRE_ID})(?:\.(?:{_PRE_ID}))*))?"
                    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")


def precedence(version: Any) -> tuple:
    """A key that sorts versions by semver precedence (build metadata left out); ValueError when
    ``version`` is not a semantic version."""
    m = SEMVER.match(str(version)) if isinstance(version, str) else None
    if m is None:
        raise ValueError(f"{version!r} is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], semver.org)")
    major, minor, patch, pre = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
    if pre is None:
        return (major, minor, patch, 1, ())  # a release sorts after each of its pre-releases
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (major, minor, patch, 0, ids)


def is_newer(a: Any, b: Any) -> bool:
    """Whether version ``a`` has higher precedence than version ``b`` (ValueError if either is not
    a semantic version)."""
    return precedence(a) > precedence(b)


def newest(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The record (a dict with ``version``) of highest precedence; records whose version is not a
    semantic version are left out."""
    best, best_key = None, None
    for r in records:
        try:
            k = precedence(r.get("version"))
        except ValueError:
            continue
        if best_key is None or k > best_key:
            best, best_key = r, k
    return best
