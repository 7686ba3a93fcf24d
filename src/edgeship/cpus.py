"""The one CPU allocator: which CPUs this process may use, how they are shared out among worker
processes, held across processes of one machine, and how a process is pinned to its share.

* :func:`allowed` — the CPUs this process may run on;
* :func:`shares` — those CPUs split into ``n`` shares, one per running worker (overlapping when
  there are fewer CPUs than shares);
* :func:`claim` — ``n`` CPUs no other edgeship process of this machine holds (file locks), for
  tasks that do not know of each other (several Ray nodes of one machine);
* :func:`pin` — a process onto its CPUs, before a runtime sizes its thread pool: the affinity,
  ``OMP_NUM_THREADS`` and torch's thread count when torch is already imported.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["allowed", "shares", "claim", "Claim", "pin", "LOCK_DIR"]

#: the folder of the per-CPU lock files :func:`claim` takes (in the system's temp folder)
LOCK_DIR = "edgeship-cpus"


def allowed() -> list[int]:
    """The CPUs this process may run on (its affinity; all of them where that cannot be read)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def shares(n: int) -> list[list[int]]:
    """The CPUs this process may use, split into ``n`` shares (a share per running worker);
    fewer CPUs than shares: the shares overlap, one CPU each."""
    cpus = allowed()
    if len(cpus) < n:
        return [[cpus[i % len(cpus)]] for i in range(n)]
    per = len(cpus) // n
    return [cpus[i * per:(i + 1) * per] if i < n - 1 else cpus[i * per:] for i in range(n)]


class Claim:
    """CPUs held by :func:`claim`: ``cpus``; :meth:`release` (or leaving a ``with`` block) lets them go."""

    def __init__(self, cpus: list[int], fds: list[int]) -> None:
        self.cpus = cpus
        self._fds = fds

    def release(self) -> None:
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.pop())

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim(n: int) -> Claim:
    """``n`` CPUs of this machine no other edgeship process on it holds (file locks: several Ray
    nodes of one machine see each other's); fewer free: the least CPUs needed are shared, rather
    than waiting for a lock a scheduler does not know of."""
    import fcntl

    cpus = allowed()
    folder = Path(tempfile.gettempdir()) / LOCK_DIR
    folder.mkdir(exist_ok=True)
    held: list[int] = []
    fds: list[int] = []
    for c in cpus:
        if len(held) >= n:
            break
        fd = os.open(folder / f"{c}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        held.append(c)
        fds.append(fd)
    if len(held) < n:  # every CPU is taken: share
        held += [c for c in cpus if c not in held][:n - len(held)] or cpus[:n - len(held)]
    return Claim(held, fds)


def pin(cpus: Sequence[int] | None, threads: int | None = None) -> None:
    """Pin this process to ``cpus`` (nothing when None or empty, or where affinity cannot be set)
    and tell the thread pools: ``OMP_NUM_THREADS`` and torch's thread count (when torch is already
    imported) become ``threads``, default one per CPU. Call it before a runtime sizes its pool."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return
    os.sched_setaffinity(0, {int(c) for c in cpus})
    n = int(threads) if threads else len(cpus)
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
