"""Small helpers shared by every stage: atomic outputs, tool versions, path confinement, quiet libraries."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import InputError, SecurityError, UsageError

#: how a long task tells its caller what it is doing: one line at a time (the CLI prints them)
Progress = Callable[[str], None]


def noop_progress(_: str) -> None:
    """A :data:`Progress` that says nothing (the default of every API call)."""


#: the largest dimension a model file or an artifact record may declare for an input or output
#: (here, below every reader: the app-side runtime's light path reads it without pydantic)
MAX_DIM = (1 << 31) - 1

#: the most one example input may take (the verification holds several, at several batch sizes)
MAX_EXAMPLE_BYTES = 1 << 30


def example_bytes(shape: tuple[int | str, ...], itemsize: int) -> int:
    """The bytes one example of ``shape`` takes (a named, dynamic dimension counted as 1)."""
    n = itemsize
    for d in shape:
        n *= d if isinstance(d, int) else 1
    return n


def check_example_size(shape: tuple[int, ...], itemsize: int, what: str) -> None:
    """Refuse an input shape whose one example would not fit in memory, before anything allocates it
    (a shape stated with --input-shape, or declared by a model file)."""
    n = example_bytes(shape, 1)
    if n * itemsize > MAX_EXAMPLE_BYTES:
        raise InputError(f"{what} has the shape {'x'.join(map(str, shape))}: {n:,} elements, "
                         f"{n * itemsize / (1 << 30):.3g} GB for one example (at most {MAX_EXAMPLE_BYTES >> 30} GB)",
                         hint="give the real input size with --input-shape, e.g. 1,3,224,224")


#: a signed release bundle's folder holds these two (edgeship.bundle): nothing writes inside one
RELEASE_MARKS = ("bundle.json", "model.sig")


def release_containing(path: Path) -> Path | None:
    """The signed release folder ``path`` is in (or is), else None."""
    for q in (Path(path), *Path(path).parents):
        if all((q / m).is_file() for m in RELEASE_MARKS):
            return q
    return None


def refuse_release(path: Path, what: str = "output folder") -> None:
    """A UsageError when ``path`` is inside a signed release: a release is read-only to every
    command (a file written there would fail its signature), and the error names where to write."""
    release = release_containing(Path(path).absolute())
    if release is None:
        return
    home = next((q for q in release.parents if (q / "manifest.json").is_file()), None)
    hint = "a release is never changed: give an --out outside it"
    if home is not None:
        hint += f", e.g. work on the output folder it was packaged from, {home} (its artifacts are the same files)"
    raise UsageError(f"the {what} {path} is inside the signed release {release}", hint=hint)


def make_folder(path: Path, what: str = "output folder") -> Path:
    """``mkdir -p path``, or an InputError naming the part of the path that is in the way (a file
    where a folder must be) or the folder that cannot be written; never a traceback. A folder
    inside a signed release is refused (:func:`refuse_release`)."""
    path = Path(path)
    refuse_release(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((q for q in (path, *path.parents) if q.exists() and not q.is_dir()), path)
        raise InputError(f"cannot make the {what} {path}: {blocker} is a file, not a folder",
                         hint="give a path under a folder (or remove the file in the way)") from None
    except OSError as e:
        raise InputError(f"cannot make the {what} {path}: {e.strerror or e}",
                         hint="give a folder you can write to") from None
    return path


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_umask_allows(path: Path, directory: bool = False) -> None:
    """Give a file made by mkstemp (0600) or a folder made by mkdtemp (0700) the mode an ordinary
    ``open``/``mkdir`` would have given it under the umask, so another user or a container build
    can read what we write (0644 / 0755 under the usual 022)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp folder beside ``final``; on success it replaces ``final`` in one rename.

    On any exception the temp folder is removed and ``final`` (if it existed) is untouched.
    """
    import shutil
    import tempfile

    final = Path(final)
    make_folder(final.parent, f"folder of {final.name}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    as_umask_allows(tmp, directory=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A hidden scratch folder inside ``out`` (same file system: its contents can be renamed into
    place), removed afterwards whatever happens; ``out`` itself is removed again if this made it and
    it is left empty."""
    import shutil
    import tempfile

    out = Path(out)
    made = not out.exists()
    make_folder(out)
    stage = Path(tempfile.mkdtemp(prefix=".edgeship-stage-", dir=out))
    as_umask_allows(stage, directory=True)
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: a failed first run leaves no folder behind


def atomic_write_text(path: Path, text: str) -> None:
    import tempfile

    path = Path(path)
    make_folder(path.parent, f"folder of {path.name}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        as_umask_allows(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def cache_dir() -> Path:
    """edgeship's cache: ``$EDGESHIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgeship``, else
    ``~/.cache/edgeship`` (machine peaks, logs of internal errors)."""
    env = os.environ.get("EDGESHIP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgeship"


def tool_versions(*names: str) -> dict[str, str]:
    import importlib.metadata  # 40 ms: not on the path of `import edgeship`

    out = {}
    for n in ("edgeship", *names):
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def confined(root: Path, relative: str, what: str) -> Path:
    """Resolve ``relative`` inside ``root``; refuse absolute paths, '..' and escaping links."""
    if "\x00" in relative:
        raise SecurityError(f"{what} holds a NUL byte: {relative!r}",
                            hint="the file is corrupt or crafted; write it again with edgeship")
    if not relative or os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise SecurityError(f"{what} uses an absolute path: {relative!r}",
                            hint="external files must sit inside the model's own folder")
    if len(relative) > 1024 or any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in relative.split("/")):
        raise InputError(f"{what} is not a file name this system can hold ({len(relative)} characters)",
                         hint="the file is corrupt or crafted; write it again with edgeship")
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} is not UTF-8 text: {relative[:60]!r}",
                         hint="the file is corrupt or crafted; write it again with edgeship") from None
    root_r = root.resolve()
    target = (root / relative).resolve()
    if target != root_r and root_r not in target.parents:
        raise SecurityError(f"{what} points outside the model's folder: {relative!r}",
                            hint="external files must sit inside the model's own folder")
    return target


def safe_name(name: str, limit: int = 64) -> str:
    """A name that is safe as one path component and in generated code."""
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    keep = keep.strip(".-") or "model"
    return keep[:limit]


#: library loggers whose notices concern the library's developers, not ours: torchao announces CUDA
#: kernels it cannot load; torch (W... _pytree.py) warns that torchao registers an Enum the old way
CALMED_LOGGERS = ("torchao", "torch.utils._pytree")


def calm_library_loggers() -> None:
    """Set the loggers in CALMED_LOGGERS to ERROR (cheap: imports nothing). Called by edgeship's
    import, so every path (analysis previews, targets, quantizers, children) is covered."""
    for name in CALMED_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def no_vendor_telemetry() -> None:
    """Keep OpenVINO's usage telemetry (used by its converter and by NNCF) out of edgeship's
    processes: without a consent file it counts as consent and forks a process that posts usage
    events to the vendor on every conversion (the fork also trips JAX's "os.fork() ... deadlock"
    warning once litert-torch has loaded JAX). Both fall back to no telemetry when the package
    cannot be imported, which this arranges; EDGESHIP_ALLOW_VENDOR_TELEMETRY=1 leaves it alone."""
    if os.environ.get("EDGESHIP_ALLOW_VENDOR_TELEMETRY") == "1":
        return
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]


@contextlib.contextmanager
def quiet(*loggers: str, stdout: bool = True, stderr: bool = False, level: int = logging.ERROR) -> Iterator[io.StringIO]:
    """Keep a library's chatter off the user's screen: warnings ignored, the named loggers (the root
    logger when none is named) at ``level`` (ERROR: only errors pass), and Python-level stdout (and
    stderr) captured into the yielded buffer, for error messages."""
    buf = io.StringIO()
    targets = [logging.getLogger(n) for n in loggers] or [logging.getLogger()]
    levels = [lg.level for lg in targets]
    for lg in targets:
        lg.setLevel(level)
    try:
        import warnings

        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            if stdout:
                stack.enter_context(contextlib.redirect_stdout(buf))
            if stderr:
                stack.enter_context(contextlib.redirect_stderr(buf))
            yield buf
    finally:
        for lg, lv in zip(targets, levels):
            lg.setLevel(lv)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Native code that writes straight to file descriptor 2 (LiteRT's delegate INFO line, cpuinfo,
    thread pools) writes to /dev/null meanwhile."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # pragma: no cover - no real fd 2 (some embedders)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def join_samples(arrays: Iterable[Any]) -> Any:
    """Samples of one input as one batch (concatenated along axis 0); a single sample as it is, so
    an input without a batch axis (a scalar, a state laid out (layers, batch, hidden)) still runs
    one sample at a time."""
    import numpy as np

    arrays = list(arrays)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def share_text(x: float, digits: int = 1) -> str:
    """A share as a percentage that never rounds up to a whole it did not reach, nor down to
    nothing: 0.996 is '99.6%', 0.9996 '99.9%', only 1.0 is '100%'; 0.0004 is '0.1%' at most
    (shown as '<0.1%'), only 0 is '0.0%'. One rule for every share edgeship prints. A rate that
    can pass 1 (a character error rate counts insertions) is shown as it is: 1.0495 is '104.9%'."""
    import math

    if x == 1.0:
        return "100%"
    if x <= 0.0:
        return f"{0:.{digits}f}%"
    scale = 10 ** (digits + 2)
    v = math.floor(x * scale) / 10 ** digits
    if v <= 0:
        return f"<{1 / 10 ** digits:.{digits}f}%"
    return f"{v:.{digits}f}%"


def article(word: Any) -> str:
    """``word`` with its indefinite article, as it is read: "an onnx", "an openvino", "a tflite"."""
    w = str(word)
    return f"{'an' if w[:1].lower() in 'aeiou' else 'a'} {w}"
