"""Run work on untrusted files in a child process with limits, so a crash is an error, not the end.

Model files are programs for native parsers. ``run_isolated("pkg.mod:function", kwargs)`` runs
the function in a fresh ``python -m edgeship._child`` with

* an address-space limit (``RLIMIT_AS``): an absurd allocation fails instead of eating the machine;
* a CPU-time limit (``RLIMIT_CPU``) and a wall-clock timeout (the child is killed);
* a file-size limit (``RLIMIT_FSIZE``): no single written file grows past it;
* no inherited file descriptors, stdin closed, stdout reserved for the one JSON result.

Arguments and results cross the boundary as JSON, never pickle: a compromised child cannot send
code back. An :class:`~edgeship.errors.EdgeshipError` raised in the child is raised again in the
parent with its type and message; a crash (signal), a limit or a timeout becomes a typed error
naming what happened. An unexpected exception (a bug) has its traceback written to a log file
(:func:`write_log`: ``$EDGESHIP_CACHE_DIR/logs``, default ``~/.cache/edgeship/logs``), named in the
error's hint; it reaches the terminal only with ``EDGESHIP_DEBUG=1`` (``edgeship --debug``), which
also prints the traceback of a typed error raised in the child.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import errors
from ._util import cache_dir
from .errors import EdgeshipError, FormatError, InputError

__all__ = ["Limits", "run_isolated", "run_child", "ChildOutcome", "phase", "last_phase", "PHASE_MARK", "in_child",
           "ResourceLimitError", "IsolatedInternalError", "debug_enabled",
           "logs_dir", "write_log", "spawn", "Spawned", "kill_group", "apply_limits", "limit_reason", "reserve_stdout"]

ENV_FLAG = "EDGESHIP_ISOLATED"
DEBUG_ENV = "EDGESHIP_DEBUG"
RESULT_MARK = "\x1eEDGESHIP-RESULT\x1e"
PHASE_MARK = "[edgeship-bench] phase="


def debug_enabled() -> bool:
    """``EDGESHIP_DEBUG=1`` (``edgeship --debug``): tracebacks go to the terminal too."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def logs_dir() -> Path:
    """Where tracebacks of internal errors are written: ``logs`` in :func:`edgeship._util.cache_dir`."""
    return cache_dir() / "logs"


def write_log(prefix: str, text: str, folder: str | Path | None = None) -> Path | None:
    """Write ``text`` to a new timestamped file ``PREFIX-YYYYmmdd-HHMMSS-PID.log`` in ``folder``
    (default :func:`logs_dir`); its path, or None when it cannot be written there."""
    try:
        d = Path(folder) if folder is not None else logs_dir()
        d.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = d / f"{prefix}-{stamp}-{os.getpid()}.log"
        i = 1
        while path.exists():
            path, i = d / f"{prefix}-{stamp}-{os.getpid()}-{i}.log", i + 1
        with open(path, "x", encoding="utf-8") as fh:
            fh.write(text)
        return path
    except OSError:
        return None


class ResourceLimitError(InputError):
    """Work on a model hit a memory, CPU-time, file-size or wall-clock limit."""


class IsolatedInternalError(EdgeshipError):
    """An unexpected exception inside the isolated child: a bug, reported without killing the CLI."""

    exit_code = 1


@dataclasses.dataclass(frozen=True)
class Limits:
    memory_gb: float = 12.0  # address space; torch alone maps ~2-3 GB of virtual memory
    cpu_seconds: int = 1800
    wall_seconds: float = 1800.0
    file_size_gb: float = 4.0
    #: what memory_gb caps: the address space (RLIMIT_AS), or only the data segment (RLIMIT_DATA)
    #: for a runtime that reserves far more address space than it uses (a browser's V8 heap cage)
    memory_kind: str = "address_space"

    @classmethod
    def from_env(cls) -> Limits:
        def f(name: str, default: float) -> float:
            v = os.environ.get(name)
            return float(v) if v else default

        d = cls()
        return cls(memory_gb=f("EDGESHIP_MAX_MEMORY_GB", d.memory_gb), cpu_seconds=int(f("EDGESHIP_MAX_CPU_S", d.cpu_seconds)),
                   wall_seconds=f("EDGESHIP_MAX_WALL_S", d.wall_seconds), file_size_gb=f("EDGESHIP_MAX_FILE_GB", d.file_size_gb))


def in_child() -> bool:
    """True inside an isolated child (work there must not isolate again)."""
    return os.environ.get(ENV_FLAG) == "1"


def apply_limits(limits: Limits) -> None:
    """Runs first thing in a child (the isolated child, a benchmark worker), before it reads any
    model (no preexec_fn: that is unsafe in a multithreaded parent)."""
    gb = 1 << 30
    which = resource.RLIMIT_DATA if limits.memory_kind == "data" else resource.RLIMIT_AS
    resource.setrlimit(which, (int(limits.memory_gb * gb),) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (int(limits.cpu_seconds), int(limits.cpu_seconds) + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limits.file_size_gb * gb),) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclasses.dataclass(frozen=True)
class ChildOutcome:
    """How a child run by :func:`run_child` ended; it never raises for the child's failures.

    ``kind``: None when ``ok``, else ``timeout`` (killed at the wall-clock limit), ``limit`` (a
    limit's signal, ``limit`` its (message, hint); or a ResourceLimitError the child raised),
    ``crash`` (another signal, or an exit without a result) or ``error`` (the child raised:
    ``error`` is the error's dict, :meth:`EdgeshipError.to_dict`; an unexpected exception's also
    names it under ``exception``: ``{type, message}``). ``phase``: the last :func:`phase` the child
    reported (with stderr captured)."""

    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None
    kind: str | None = None
    phase: str | None = None
    wall_s: float = 0.0
    returncode: int = 0
    limit: tuple[str, str] | None = None
    stderr: str = dataclasses.field(default="", repr=False)


def run_child(func: str, kwargs: dict[str, Any] | None = None, *, limits: Limits | None = None,
              timeout: float | None = None, env: dict[str, str] | None = None, what: str = "the model",
              subject: str = "the model", log_dir: str | Path | None = None, log_prefix: str = "child",
              safe_path: bool = False, capture_stderr: bool = False, clean_exit: bool = False,
              started: list[subprocess.Popen] | None = None) -> ChildOutcome:
    """The one child-process protocol: call ``func`` ("edgeship.module:function") with JSON
    ``kwargs`` in ``python -m edgeship._child`` under ``limits``, its JSON result after
    :data:`RESULT_MARK` on stdout.

    ``timeout``: wall-clock seconds (default ``limits.wall_seconds``); ``env``: the child's
    environment (default ours); ``what``: named in a limit's message ("working on WHAT ...");
    ``subject``: what "needed more memory" when the child runs out; ``log_prefix``: the name of the
    log file an unexpected exception's traceback goes to (in ``log_dir``); ``safe_path``: ``python
    -P`` (the current folder does not shadow modules); ``capture_stderr``: keep the child's stderr
    (its :func:`phase` lines, its last words) instead of relaying it; ``clean_exit``: a child that
    ends on a signal or a non-zero code failed, whatever it wrote before."""
    limits = limits or Limits.from_env()
    timeout = limits.wall_seconds if timeout is None else timeout
    spec = json.dumps({"func": func, "kwargs": kwargs or {}, "limits": dataclasses.asdict(limits),
                       "log_dir": str(log_dir) if log_dir is not None else None, "log_prefix": log_prefix,
                       "subject": subject, "parent": os.getpid()}, default=str)
    argv = [sys.executable, *(["-P"] if safe_path else []), "-m", "edgeship._child"]
    run = spawn(argv, spec, dict(os.environ) if env is None else env, timeout, capture_stderr=capture_stderr,
                started=started)
    common = {"phase": last_phase(run.err), "wall_s": run.wall_s, "returncode": run.returncode, "stderr": run.err}
    if run.timed_out:
        return ChildOutcome(False, kind="timeout", **common)
    doc = _parse_result(run.out)
    rc = run.returncode
    exited = not clean_exit or rc >= 0
    if doc is not None and doc.get("ok") and (not clean_exit or rc == 0):
        return ChildOutcome(True, result=doc.get("result"), **common)
    if doc is not None and not doc.get("ok") and exited:
        err = doc.get("error") if isinstance(doc.get("error"), dict) else {}
        return ChildOutcome(False, error=err, kind="limit" if err.get("type") == "ResourceLimitError" else "error",
                            **common)
    if rc < 0:
        reason = limit_reason(rc, limits, what, run.wall_s)
        return ChildOutcome(False, kind="limit" if reason else "crash", limit=reason, **common)
    return ChildOutcome(False, kind="crash", **common)


def run_isolated(func: str, kwargs: dict[str, Any] | None = None, *, limits: Limits | None = None,
                 what: str = "the model", log_dir: str | Path | None = None,
                 started: list[subprocess.Popen] | None = None) -> Any:
    """Call ``func`` ("module:function") with JSON ``kwargs`` in a limited child; return its JSON result.

    :func:`run_child`, then its failure raised as a typed error. The traceback of an unexpected
    exception in the child goes to a log file in ``log_dir`` (default :func:`logs_dir`), named in
    the :class:`IsolatedInternalError`'s hint. ``started`` (a list) gets the child's process, for a
    caller that runs children from threads and must stop them on Ctrl-C (:func:`kill_group`)."""
    limits = limits or Limits.from_env()
    out = run_child(func, kwargs, limits=limits, env=dict(os.environ, **{ENV_FLAG: "1"}), what=what,
                    log_dir=log_dir, started=started)
    if out.ok:
        return out.result
    if out.kind == "timeout":
        raise ResourceLimitError(f"working on {what} took longer than {limits.wall_seconds:g} s and was stopped",
                                 hint="raise EDGESHIP_MAX_WALL_S if the model is just big")
    if out.error is not None:
        raise errors.from_dict(out.error, default=IsolatedInternalError, message="the isolated child failed")
    if out.limit is not None:
        raise ResourceLimitError(out.limit[0], hint=out.limit[1])
    rc = out.returncode
    if rc < 0:
        sig = signal.Signals(-rc)
        raise FormatError(f"{what} crashed the native parser/runtime ({sig.name}); edgeship stopped safely",
                          hint="the file is corrupt or crafted; do not load it in other tools either",
                          signal=sig.name)
    raise FormatError(f"working on {what} failed in the isolated child (exit code {rc}) without a result",
                      hint="see the messages above; if it looks like a bug in edgeship, please report it")


@dataclasses.dataclass(frozen=True)
class Spawned:
    """How a child ended: what it wrote, its return code (negative: the signal), whether it ran out of time."""

    out: str
    err: str
    returncode: int
    timed_out: bool
    wall_s: float


def launch(argv: list[str], env: dict[str, str] | None = None, **pipes: Any) -> subprocess.Popen:
    """Start a child the one way edgeship does: a session of its own (stopped as a group with what it
    started, :func:`kill_group`), no inherited descriptors, text pipes as given. :func:`spawn` runs
    one to completion; a server that runs until stopped (``compare-cloud``'s) is started here."""
    return subprocess.Popen(argv, env=env, close_fds=True, start_new_session=True, text=True, **pipes)


def _relay_stderr(fd: int) -> threading.Thread:
    """Copy a child's stderr to ours as it comes, line by line through :func:`errors.printable`:
    its progress lines and the converters' chatter quote model, op and node names from the file, and
    a terminal must show them, not obey them. A line redrawn with carriage returns (a progress bar)
    shows its last state, as a terminal would."""
    def copy() -> None:
        with os.fdopen(fd, "rb") as src:
            for raw in src:
                line = raw.rstrip(b"\r\n").rsplit(b"\r", 1)[-1].decode("utf-8", "replace")
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(errors.printable(line) + "\n")
                    sys.stderr.flush()

    t = threading.Thread(target=copy, name="child-stderr", daemon=True)
    t.start()
    return t


def spawn(argv: list[str], stdin_text: str, env: dict[str, str], timeout: float, capture_stderr: bool = True,
          started: list[subprocess.Popen] | None = None) -> Spawned:
    """The one way edgeship starts a child: its own session (killed as a group with anything it
    started), no inherited descriptors, ``stdin_text`` in, stdout captured, killed at ``timeout`` or
    on Ctrl-C. Its stderr is captured too, or with ``capture_stderr=False`` relayed to ours as it
    comes, made printable (:func:`_relay_stderr`)."""
    t0 = time.monotonic()
    relay = None
    if capture_stderr:
        proc = launch(argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    else:
        r, w = os.pipe()
        try:
            proc = launch(argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=w)
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        relay = _relay_stderr(r)
    if started is not None:
        started.append(proc)
    try:
        out, err = proc.communicate(stdin_text, timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        timed_out = True
    except BaseException:  # Ctrl-C: the child runs in its own session and would not see it
        kill_group(proc)
        proc.wait()
        raise
    finally:
        if relay is not None:
            relay.join(timeout=5)  # what the child wrote last (a grandchild left holding the pipe is not waited for)
    return Spawned(out or "", err or "", proc.returncode if proc.returncode is not None else -9, timed_out,
                   time.monotonic() - t0)


def limit_reason(returncode: int, limits: Limits, what: str, wall_s: float) -> tuple[str, str] | None:
    """(message, hint) when a child's signal means it hit one of its limits, else None."""
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return None
    if sig == signal.SIGXCPU:
        return (f"working on {what} used more than {limits.cpu_seconds} s of CPU time",
                "raise EDGESHIP_MAX_CPU_S if the model is just big")
    if sig == signal.SIGXFSZ:
        return (f"working on {what} tried to write a file larger than {limits.file_size_gb:g} GB",
                "raise EDGESHIP_MAX_FILE_GB if the model is just big")
    if sig == signal.SIGKILL:
        return (f"working on {what} was killed (out of memory?) after {wall_s:.1f} s",
                "the machine ran out of memory, or a limit killed it")
    return None


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def reserve_stdout() -> Any:
    """In a child: a private copy of stdout for the one result, with fd 1 and ``sys.stdout`` sent to
    stderr, so a runtime's or converter's own prints cannot corrupt the result."""
    real = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return real


def phase(name: str) -> None:
    """In a child: say on stderr where it is (the parent names the last phase a child that hung or
    crashed reached: :attr:`ChildOutcome.phase`)."""
    sys.stderr.write(f"{PHASE_MARK}{name}\n")
    sys.stderr.flush()


def last_phase(stderr: str) -> str | None:
    """The last :func:`phase` a child's stderr names, or None."""
    found = None
    for line in stderr.splitlines():
        if line.startswith(PHASE_MARK):
            found = line[len(PHASE_MARK):].strip()
    return found


def _parse_result(out: str | None) -> dict[str, Any] | None:
    if not out or RESULT_MARK not in out:
        return None
    try:
        doc = json.loads(out.rsplit(RESULT_MARK, 1)[1])
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _die_with_parent(parent: int | None) -> None:
    """An isolated child ends when the process that started it dies (killed, out of memory): it
    runs in a session of its own, so nothing else would stop it working on for no one (Linux)."""
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _unexpected(e: Exception, spec: dict[str, Any], debug: bool) -> dict[str, Any]:
    """The error dict of an exception that is not an EdgeshipError: running out of memory is a
    ResourceLimitError; anything else an IsolatedInternalError whose traceback goes to a log file."""
    import traceback

    if isinstance(e, MemoryError) or (isinstance(e, (ImportError, OSError)) and "failed to map segment" in str(e)):
        return ResourceLimitError(f"{spec.get('subject') or 'the model'} needed more memory than the isolation limit "
                                  "allows", hint="raise EDGESHIP_MAX_MEMORY_GB if the model is just big").to_dict()
    text = traceback.format_exc()
    log = write_log(spec.get("log_prefix") or "child", f"edgeship isolated child: {spec.get('func')}\n{text}",
                    spec.get("log_dir"))
    if debug or log is None:  # never lose the traceback: the terminal when no file could take it
        sys.stderr.write(text)
        sys.stderr.flush()
    where = f"the traceback is in {log}" if log is not None else "the traceback is above"
    return {"type": "IsolatedInternalError",
            "message": f"internal error in the isolated child: {type(e).__name__}: "
                       f"{str(e).splitlines()[0][:300] if str(e) else ''}",
            "hint": f"this is a bug in edgeship; please report it ({where}; "
                    "EDGESHIP_DEBUG=1 or edgeship --debug prints it)",
            "details": {"log": str(log) if log is not None else None},
            # what the exception was, for a caller that words its own reason (the benchmark's)
            "exception": {"type": type(e).__name__, "message": (str(e).strip().splitlines() or [""])[0][:500]}}


def child_main() -> int:
    import importlib
    import traceback

    spec = json.loads(sys.stdin.read())
    _die_with_parent(spec.get("parent"))
    apply_limits(Limits(**spec.get("limits", {})))
    # stdout belongs to the result: route everything else (converter prints, native logs) to stderr
    real = reserve_stdout()
    debug = debug_enabled()
    try:
        mod, _, fn = spec["func"].partition(":")
        if not mod.startswith("edgeship."):
            raise errors.UsageError(f"refusing to run {spec['func']!r} in the isolated child")
        result = getattr(importlib.import_module(mod), fn)(**spec["kwargs"])
        doc: dict[str, Any] = {"ok": True, "result": result}
    except EdgeshipError as e:
        if debug:
            traceback.print_exc()
        doc = {"ok": False, "error": e.to_dict()}
    except Exception as e3:  # a bug in edgeship (or an untyped library error): report it as one
        doc = {"ok": False, "error": _unexpected(e3, spec, debug)}
    real.write(RESULT_MARK + json.dumps(doc, default=str))
    real.flush()
    return 0
