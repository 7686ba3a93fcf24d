"""A structure-aware fuzzer for edgeship's readers (:mod:`edgeship.readers`) and the parts that
read through them: shared by ``tests/security/test_fuzz.py`` (a seeded run per reader) and
``benchmarks/fuzz_readers.py`` (long runs, reproducers of every failure).

The property, for every reader and every case: calling it in this process either returns a value
(``ok``; where the reader documents what it returns, that is checked too: ``wrong`` when it does
not hold) or raises an :class:`edgeship.errors.EdgeshipError` whose exit code is 2-6 (``typed``).
Any other exception (or an EdgeshipError of another exit code) is a ``crash``; a case running past
its wall-clock limit (``signal.setitimer``) is a ``hang``; a file created, changed or removed
outside the case's scratch folder, or an input changed, is an ``escape`` (the hostile pickles this
fuzzer plants write ``../PWNED-*`` beside the scratch folder: one that is unpickled is an escape;
the hostile tar archives write ``PWNED-*`` there through links the extraction filter did not follow).

Seeds are made here, in a temporary folder, from code (no committed blobs): JSON records, configs
and profiles (YAML and JSON), .npy/.npz arrays of several dtypes, images in a dozen formats (16-bit,
float, palettes, EXIF-tagged), zip archives, tar archives (plain, gzip, xz, bzip2; GNU, pax and
ustar; a release bundle as ``edgeship package`` writes it), labels files (text in several encodings,
JSON lists), a ``torch.export`` .pt2 of a tiny module, tiny ONNX models and WAV files (PCM 8-32 bit,
IEEE float, extensible, chunked, streamed). A case is a seed changed by one to three mutations,
structural first (on the parsed JSON or YAML document, the .npy header, PNG chunks, JPEG segments,
TIFF IFD entries, zip headers, tar headers and members, the compressed stream around a tar, labels
lines, pt2 members, ONNX protobuf fields, RIFF chunks and WAV fmt fields), then sometimes a
byte-level one (flip, insert, delete, truncate, splice). A case is reproducible from ``(seed, target, index)``
alone (:func:`make_case`).
"""

from __future__ import annotations

import ast
import bz2
import contextlib
import dataclasses
import functools
import gzip
import hashlib
import io
import itertools
import json
import lzma
import os
import random
import re
import resource
import shutil
import signal
import stat
import struct
import tarfile
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TYPED_CODES = frozenset({2, 3, 4, 5, 6})
OUTCOMES = ("ok", "typed", "wrong", "crash", "hang", "escape")
FAILURES = ("wrong", "crash", "hang", "escape")
DEFAULT_LIMIT = 5.0  # wall-clock seconds per case
DEFAULT_MEMORY_GB = 6.0  # address space a case may add above what the process maps already


class Hang(BaseException):
    """Raised by the wall-clock alarm; a BaseException so a reader's ``except Exception`` lets it by."""


class Skip(Exception):
    """A structural mutation that does not apply to these bytes (they no longer parse as its kind)."""


class ContractError(AssertionError):
    """A reader returned a value that is not what it documents."""


class EscapeError(ContractError):
    """A stage's own check saw a file written where the reader was not told to write (inside the case
    folder, which the snapshot of the scratch folder leaves out): an ``escape``, not a ``wrong``."""


# ---- cases and outcomes -----------------------------------------------------------------------

@dataclasses.dataclass
class Seed:
    name: str
    kind: str  # json, yaml, npy, npz, image, zip, tar, pt2, onnx, text, labels
    files: dict[str, bytes]  # file name in the case folder -> bytes
    primary: str  # the file that is mutated (and that most readers are given)


@dataclasses.dataclass
class Case:
    target: str
    index: int
    seed: str
    mutations: list[str]
    files: dict[str, bytes]
    primary: str


@dataclasses.dataclass
class Outcome:
    case: Case
    outcome: str
    seconds: float
    stage: str = ""
    error: str = ""
    where: str = ""  # the innermost frame of edgeship (or else the innermost) that raised
    trace: str = ""
    escapes: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    repro: str | None = None

    def line(self) -> str:
        muts = " + ".join(self.case.mutations)[:300]
        return (f"{self.case.target}#{self.case.index} {self.outcome} at {self.stage}: {self.error[:300]}"
                f"{f' [{self.where}]' if self.where else ''}{f' escapes={self.escapes}' if self.escapes else ''}\n"
                f"    seed {self.case.seed}; mutations: {muts}{f'; reproducer {self.repro}' if self.repro else ''}")


Stage = tuple[str, Callable[[], Any], Callable[[Any], None] | None]


@dataclasses.dataclass
class Target:
    name: str
    doc: str
    seeds: Callable[[Path], list[Seed]]
    stages: Callable[[Path, Path, Case], list[Stage]]  # (case folder, primary file, case) -> stages
    limit: float = DEFAULT_LIMIT
    quiet: tuple[str, ...] = ()  # loggers silenced while it runs (torch.export.load logs each damaged archive)


# ---- running one case ------------------------------------------------------------------------

def _snapshot(parent: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file, link and folder under ``parent`` but ``skip``: (size, mtime) of files and links,
    (-2, 0) of folders (their times change with what they hold; a folder created is what counts)."""
    out: dict[str, tuple[int, int]] = {}
    for root, dirs, files in os.walk(parent):
        if Path(root) == parent:
            dirs[:] = [d for d in dirs if parent / d != skip]
        for name in files + dirs:
            p = os.path.join(root, name)
            try:
                st = os.lstat(p)
                out[os.path.relpath(p, parent)] = (-2, 0) if stat.S_ISDIR(st.st_mode) else (st.st_size, st.st_mtime_ns)
            except OSError:
                out[os.path.relpath(p, parent)] = (-1, -1)
    return out


def _digests(folder: Path, names: Iterator[str]) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = hashlib.sha256((folder / n).read_bytes()).hexdigest()
        except OSError as e:
            out[n] = f"unreadable: {e.strerror}"
    return out


def _innermost(tb: Any) -> str:
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if "/edgeship/" in f.filename.replace(os.sep, "/") and "/tests/" not in f.filename]
    f = (ours or frames or [None])[-1]
    if f is None:
        return ""
    name = f.filename.replace(os.sep, "/")
    name = name.split("/site-packages/", 1)[-1].split("/src/", 1)[-1]
    return f"{name}:{f.lineno} in {f.name}"


def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


@contextlib.contextmanager
def _memory_cap(extra_gb: float | None) -> Iterator[None]:
    """RLIMIT_AS = what the process maps now + ``extra_gb`` while a case runs (a reader that
    allocates a declared size sees MemoryError, as it would in edgeship's limited child)."""
    if not extra_gb:
        yield
        return
    old = resource.getrlimit(resource.RLIMIT_AS)
    want = _vm_bytes() + int(extra_gb * (1 << 30))
    if old[1] != resource.RLIM_INFINITY:
        want = min(want, old[1])
    resource.setrlimit(resource.RLIMIT_AS, (want, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def run_case(target: Target, case: Case, scratch: Path, *, limit: float | None = None,
             memory_gb: float | None = DEFAULT_MEMORY_GB) -> Outcome:
    """Write ``case`` into ``scratch/case``, run the target's stages there under the wall-clock limit
    with that folder as the cwd, and classify what happened."""
    from edgeship.errors import EdgeshipError
    from edgeship.isolate import ENV_FLAG

    limit = limit or target.limit
    folder = scratch / "case"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, data in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    before = _snapshot(scratch, folder)
    inputs = _digests(folder, iter(case.files))
    stages = target.stages(folder, folder / case.primary, case)
    cwd, env = os.getcwd(), os.environ.get(ENV_FLAG)
    result = Outcome(case, "ok", 0.0)
    stage = ""

    def alarm(signum: int, frame: Any) -> None:
        raise Hang()

    old_handler = signal.signal(signal.SIGALRM, alarm)
    outer = (0.0, 0.0)  # a timer already set (pytest-timeout's): re-armed with what is left of it afterwards
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught, _memory_cap(memory_gb):
            warnings.simplefilter("always")
            os.chdir(folder)
            os.environ[ENV_FLAG] = "1"  # edgeship's isolated-child work runs here, in this process
            try:
                outer = signal.setitimer(signal.ITIMER_REAL, limit)
                for name, call, check in stages:
                    stage = name
                    value = call()
                    if check is not None:
                        check(value)
                stage = ""
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except Hang:
        result.outcome = "hang"
        result.error = f"no result within {limit:g} s"
        caught = []
    except EscapeError as e:
        result.outcome, result.error = "escape", f"{e}"[:600]
        result.escapes = [f"{e}"[:300]]
        caught = []
    except ContractError as e:
        result.outcome, result.error = "wrong", f"{e}"[:600]
        caught = []
    except EdgeshipError as e:
        code = getattr(e, "exit_code", None)
        if code in TYPED_CODES:
            result.outcome = "typed"
            result.error = f"{type(e).__name__}: {e}"[:300]
        else:
            result.outcome = "crash"
            result.error = f"{type(e).__name__} with exit code {code}: {e}"[:600]
            result.where, result.trace = _innermost(e.__traceback__), traceback.format_exc(limit=-12)
        caught = []
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - every other exception is the finding
        result.outcome = "crash"
        result.error = f"{type(e).__name__}: {e}"[:600]
        result.where, result.trace = _innermost(e.__traceback__), traceback.format_exc(limit=-12)
        caught = []
    finally:
        os.chdir(cwd)
        if env is None:
            os.environ.pop(ENV_FLAG, None)
        else:
            os.environ[ENV_FLAG] = env
        signal.signal(signal.SIGALRM, old_handler)
        if outer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer[0] - (time.perf_counter() - t0), 0.001), outer[1])
    result.seconds = time.perf_counter() - t0
    result.stage = stage
    result.warnings = sorted({w.category.__name__ for w in caught})
    if result.seconds > limit and result.outcome != "hang":
        result.outcome, result.error = "hang", f"took {result.seconds:.1f} s (limit {limit:g} s) and then {result.outcome}"
    after = _snapshot(scratch, folder)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    changed = [f"{'created' if k not in before else 'removed' if k not in after else 'changed'} {k}" for k in changed]
    now = _digests(folder, iter(case.files))
    changed += [f"input {n} changed" for n in inputs if now[n] != inputs[n]]
    if changed:
        result.escapes = result.escapes + changed
        result.outcome = "escape"
        for k in sorted(after.keys() - before.keys(), reverse=True):  # what a planted payload wrote: gone before the next case
            with contextlib.suppress(OSError):
                p = scratch / k
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
    return result


def save_reproducer(out: Outcome, folder: Path) -> Path:
    """The case's files and what happened (``case.json``) in ``folder/<target>-<index>-<outcome>``."""
    c = out.case
    d = folder / f"{c.target}-{c.index:05d}-{out.outcome}"
    d.mkdir(parents=True, exist_ok=True)
    for name, data in c.files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
    info = {"target": c.target, "index": c.index, "seed": c.seed, "primary": c.primary, "mutations": c.mutations,
            "outcome": out.outcome, "stage": out.stage, "error": out.error, "where": out.where,
            "escapes": out.escapes, "seconds": round(out.seconds, 3), "trace": out.trace}
    (d / "case.json").write_text(json.dumps(info, indent=2) + "\n")
    out.repro = str(d / c.primary)
    return d


def replay(target: Target, folder: Path) -> Any:
    """Run a saved reproducer's stages with nothing caught (the traceback shows)."""
    info = json.loads((folder / "case.json").read_text())
    case = Case(info["target"], info["index"], info["seed"], info["mutations"], {}, info["primary"])
    results = []
    for _name, call, check in target.stages(folder, folder / info["primary"], case):
        value = call()
        if check is not None:
            check(value)
        results.append(value)
    return results


# ---- a run of one target ---------------------------------------------------------------------

@dataclasses.dataclass
class Report:
    target: str
    cases: int = 0
    seconds: float = 0.0
    seed_seconds: float = 0.0
    counts: Counter = dataclasses.field(default_factory=Counter)
    failures: list[Outcome] = dataclasses.field(default_factory=list)
    warnings: Counter = dataclasses.field(default_factory=Counter)
    stages: Counter = dataclasses.field(default_factory=Counter)  # where typed errors ended a case
    errors: Counter = dataclasses.field(default_factory=Counter)  # typed errors, by their message's shape
    mutator_errors: Counter = dataclasses.field(default_factory=Counter)
    kinds: Counter = dataclasses.field(default_factory=Counter)  # failures by outcome, stage, exception and place
    firsts: dict[str, Outcome] = dataclasses.field(default_factory=dict)  # the first failure of each kind
    slowest: tuple[float, str] = (0.0, "")

    @property
    def failed(self) -> int:
        return sum(self.counts[k] for k in FAILURES)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "cases": self.cases, "seconds": round(self.seconds, 2),
                "seed_seconds": round(self.seed_seconds, 2), **{k: self.counts[k] for k in OUTCOMES},
                "warnings": dict(self.warnings), "mutator_errors": dict(self.mutator_errors),
                "slowest": {"seconds": round(self.slowest[0], 3), "case": self.slowest[1]},
                "kinds": [{"kind": k, "count": n, "first": self.firsts[k].line()} for k, n in self.kinds.most_common()],
                "failures": [{"index": f.case.index, "outcome": f.outcome, "stage": f.stage, "error": f.error,
                              "where": f.where, "escapes": f.escapes, "mutations": f.case.mutations,
                              "reproducer": f.repro} for f in self.failures]}


def failure_kind(out: Outcome) -> str:
    """What makes two failures the same bug: outcome, stage, exception type and where it was raised."""
    if out.outcome == "escape":
        return f"escape at {out.stage or 'the end'}: " + ", ".join(sorted({re.sub(r"\d+", "N", e) for e in out.escapes}))
    if out.outcome == "hang":
        return f"hang at {out.stage}"
    if out.outcome == "wrong":
        return f"wrong at {out.stage}: {_shape(out.error)[:60]}"
    return f"crash at {out.stage}: {out.error.split(':', 1)[0]} [{out.where}]"


def _shape(msg: str) -> str:
    """An error message with its paths, numbers and quoted values blanked (for counting kinds)."""
    msg = re.sub(r"(/[^\s:]+)+", "PATH", msg)
    msg = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", msg)
    return re.sub(r"\d+", "N", msg)[:90]


def make_case(target: str, seeds: list[Seed], seed: int, index: int, errors: Counter | None = None) -> Case:
    rng = random.Random(f"{seed}/{target}/{index}")
    s = seeds[index % len(seeds)] if index < len(seeds) else rng.choice(seeds)
    if index < len(seeds):  # every seed once, unchanged: a seed that fails is a finding too
        return Case(target, index, s.name, ["(none: the seed)"], dict(s.files), s.primary)
    data, muts = mutate(s, rng, [x for x in seeds if x.kind == s.kind], index, errors)
    files = dict(s.files)
    files[s.primary] = data
    return Case(target, index, s.name, muts, files, s.primary)


def run_target(target: Target, cases: int, seed: int, scratch: Path, *, repro: Path | None = None,
               limit: float | None = None, memory_gb: float | None = DEFAULT_MEMORY_GB,
               progress: Callable[[int, Report], None] | None = None, keep: int = 50) -> Report:
    """``cases`` cases of ``target`` (seeds made in ``scratch/seeds``); reproducers of failures
    (at most ``keep`` kept in the report, all written) go to ``repro``."""
    rep = Report(target.name)
    _run(target, rep, cases, seed, scratch, repro, limit, memory_gb, progress, keep)
    return rep


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    import logging

    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, old, strict=True):
            lg.setLevel(level)


def _run(target: Target, rep: Report, cases: int, seed: int, scratch: Path, repro: Path | None, limit: float | None,
         memory_gb: float | None, progress: Callable[[int, Report], None] | None, keep: int) -> None:
    t0 = time.perf_counter()
    seed_dir = scratch / "seeds"
    seed_dir.mkdir(parents=True, exist_ok=True)
    seeds = target.seeds(seed_dir)
    run_dir = scratch / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "canary.txt").write_text("a file beside the case folder: a reader must leave it alone\n")
    rep.seed_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    with _quiet(target.quiet):  # after the seeds: importing torch sets its loggers' levels
        for i in range(cases):
            case = make_case(target.name, seeds, seed, i, rep.mutator_errors)
            out = run_case(target, case, run_dir, limit=limit, memory_gb=memory_gb)
            rep.cases += 1
            rep.counts[out.outcome] += 1
            rep.warnings.update(out.warnings)
            if out.outcome == "typed":
                rep.stages[out.stage] += 1
                rep.errors[_shape(out.error)] += 1
            if out.seconds > rep.slowest[0]:
                rep.slowest = (out.seconds, f"#{i} {' + '.join(case.mutations)[:120]}")
            if out.outcome in FAILURES:
                if repro is not None:
                    save_reproducer(out, repro)
                kind = failure_kind(out)
                rep.kinds[kind] += 1
                rep.firsts.setdefault(kind, out)
                if len(rep.failures) < keep:
                    rep.failures.append(out)
            if progress is not None:
                progress(i + 1, rep)
    rep.seconds = time.perf_counter() - t1
    shutil.rmtree(run_dir / "case", ignore_errors=True)


# ---- the mutation engine ----------------------------------------------------------------------

Mutator = Callable[[bytes, random.Random, "Ctx"], tuple[bytes, str]]


@dataclasses.dataclass
class Ctx:
    seed: Seed
    others: list[Seed]  # seeds of the same kind (for splicing)
    index: int

    @property
    def marker(self) -> str:
        """The relative path a planted pickle writes to when it runs (beside the case folder)."""
        return f"../PWNED-{self.index}"


def mutate(seed: Seed, rng: random.Random, others: list[Seed], index: int,
           errors: Counter | None = None) -> tuple[bytes, list[str]]:
    ctx = Ctx(seed, others, index)
    data = seed.files[seed.primary]
    muts: list[str] = []
    structural = STRUCTURAL.get(seed.kind, [])
    if structural and rng.random() < 0.85:
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            fn = _weighted(rng, structural)
            try:
                data, desc = fn(data, rng, ctx)
                muts.append(desc)
            except Skip:
                continue
            except Exception as e:  # a fault of this fuzzer, not of the reader: counted, not failed
                if errors is not None:
                    errors[f"{fn.__name__}: {type(e).__name__}: {str(e)[:80]}"] += 1
    if not muts or rng.random() < (0.1 if seed.kind in ("json", "yaml", "text", "labels") else 0.3):
        fn = _weighted(rng, BYTES)
        data, desc = fn(data, rng, ctx)
        muts.append(desc)
    return data, muts


def _weighted(rng: random.Random, table: list[tuple[float, Mutator]]) -> Mutator:
    total = sum(w for w, _ in table)
    x = rng.random() * total
    for w, fn in table:
        x -= w
        if x <= 0:
            return fn
    return table[-1][1]


# ---- byte-level mutations (every kind) -------------------------------------------------------

INTERESTING8 = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x10, 0x20, 0x40, 0x0A, 0x0D, 0x22, 0x27, 0x5C, 0x3A]
INTERESTING32 = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                 0xFFFFFFFF, 0xFFFFFFFE, 0x40000000, 64, 1000, 65536 * 64]


def b_flip(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    if not data:
        return bytes([rng.randrange(256)]), "bytes.flip (empty -> 1 byte)"
    b = bytearray(data)
    n = rng.choice((1, 1, 2, 4, 8, 32))
    for _ in range(n):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b), f"bytes.flip {n} bits"


def b_interesting(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    b = bytearray(data or b"\x00")
    i = rng.randrange(len(b))
    if rng.random() < 0.5 or len(b) < 4:
        v = rng.choice(INTERESTING8)
        b[i] = v
        return bytes(b), f"bytes.set8 @{i}={v:#x}"
    i = min(i, len(b) - 4)
    v = rng.choice(INTERESTING32)
    struct.pack_into(rng.choice(("<I", ">I")), b, i, v)
    return bytes(b), f"bytes.set32 @{i}={v:#x}"


def b_insert(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    i = rng.randrange(len(data) + 1)
    kind = rng.choice(("random", "repeat", "zeros", "ff"))
    n = rng.choice((1, 2, 4, 16, 255, 4096))
    chunk = {"random": lambda: rng.randbytes(n), "zeros": lambda: bytes(n), "ff": lambda: b"\xff" * n,
             "repeat": lambda: data[i:i + n] * rng.choice((1, 2, 16))}[kind]()
    return data[:i] + chunk + data[i:], f"bytes.insert {len(chunk)} {kind} @{i}"


def b_delete(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    if not data:
        return data, "bytes.delete (empty)"
    i = rng.randrange(len(data))
    n = rng.choice((1, 2, 4, 16, 64, 1024))
    return data[:i] + data[i + n:], f"bytes.delete {n} @{i}"


def b_truncate(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    n = rng.choice((0, 1, 4, 8, rng.randrange(len(data) + 1), max(0, len(data) - 1), max(0, len(data) - rng.randint(1, 32))))
    return data[:n], f"bytes.truncate to {n} of {len(data)}"


def b_splice(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    other = rng.choice(ctx.others or [ctx.seed])
    od = other.files[other.primary]
    i, j = rng.randrange(len(data) + 1), rng.randrange(len(od) + 1)
    return data[:i] + od[j:], f"bytes.splice {ctx.seed.name}[:{i}] + {other.name}[{j}:]"


def b_tail(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    n = rng.choice((1, 16, 512, 70000))
    return data + rng.randbytes(n), f"bytes.tail +{n} random"


BYTES: list[tuple[float, Mutator]] = [(3, b_flip), (3, b_interesting), (2, b_insert), (2, b_delete), (2, b_truncate),
                                      (1, b_splice), (1, b_tail)]


# ---- JSON: the parsed document ----------------------------------------------------------------

class Raw:
    """A token written into JSON text as is (numbers JSON cannot hold, NaN, deep nesting)."""

    def __init__(self, text: str) -> None:
        self.text = text


RAW_TOKENS = ["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1" + "0" * 5000, "1e-400", "-0", "0.1e5",
              "123456789012345678901234567890", "9" * 400, "-9223372036854775809", "18446744073709551616",
              "1E+2147483648", "true", "null", '"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"\\u001b[2J"']
NASTY_STR = ["", " ", "\x00", "nul\x00byte", "\x1b]0;PWNED\x07", "\x1b[2J\x1b[31mred", "[bold]x[/bold", "\u202eevil",
             "\r\rover", "\ud800", "../../../../etc/passwd", "/etc/passwd", "..", "../x", "C:\\Windows\\x", "~/x",
             "model.onnx", "onnx", "tflite", "fp32", "int8", "float32", "bfloat16", "object", "<U8", "O", "NCHW", "NHWC",
             "batch", "-1", "0", "1e999", "nan", "inf", "true", "null", "{}", "[]", "a" * 300, "é" * 50, "💥" * 20,
             "verified", "failed", "image", "logits", "RGB", "labels.txt", "artifact.json", "manifest.json"]
NASTY_KEYS = ["", "__proto__", "\x00", "a" * 500, "../x", "root", "files", "model_file", "inputs", "outputs", "shape",
              "dtype", "name", "path", "id", "artifacts", "source", "config", "stages", "benchmark", "results",
              "latency_ms", "p50", "preprocess", "verification", "details", "labels", "use_pickle", "status"]


def nasty_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if r < 0.25:
        return rng.choice(NASTY_STR)
    if r < 0.45:
        return rng.choice([None, True, False, 0, -1, 1, 2, 3, 255, 2**31, 2**31 - 1, 2**32, 2**53 + 1, 2**63, 2**64,
                           -2**63 - 1, 10**30, 16385, 65536, 1.5, -0.0, 0.5, 1e308, -1e308, 5e-324, 1e-9, 0.99999])
    if r < 0.6:
        return Raw(rng.choice(RAW_TOKENS))
    if r < 0.7:
        n = rng.choice((1000, 100_000, 1_000_000))
        return rng.choice(("a", "a", "é", "\x1b", "/", "\\")) * (n if rng.random() < 0.5 else 1000)
    if r < 0.8 and depth < 3:
        return [nasty_value(rng, depth + 1) for _ in range(rng.choice((0, 1, 2, 3)))]
    if r < 0.9 and depth < 3:
        return {rng.choice(NASTY_KEYS): nasty_value(rng, depth + 1) for _ in range(rng.choice((0, 1, 2)))}
    if r < 0.97:
        return rng.choice(([0] * 100_000, ["x"] * 10_000, [[1, 2]] * 1000, {str(i): i for i in range(20_000)}))
    d = rng.choice((8, 63, 64, 65, 100, 1000, 100_000))
    return Raw("[" * d + "0" + "]" * d if rng.random() < 0.5 else '{"a":' * d + "0" + "}" * d)


def retype(v: Any, rng: random.Random) -> Any:
    options = [None, str(v)[:60] if not isinstance(v, (dict, list)) else _dumps(v)[:60], [v], {"value": v},
               len(v) if isinstance(v, (str, list, dict)) else 0, float(len(str(v))), bool(v) if not isinstance(v, Raw) else True,
               -1, ""]
    if isinstance(v, dict):
        options += [list(v.values()), list(v.keys())]
    if isinstance(v, list):
        options += [{str(i): x for i, x in enumerate(v)}, v[0] if v else None, [str(x) for x in v]]
    if isinstance(v, str):
        options += [int(v) if v.isdigit() else 7, v.encode().hex(), v * 2, v.upper()]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        options += [str(v), -v, v * 1e300, int(v) if v == v and abs(v) < 1e300 else 0, [v, v]]
    return rng.choice(options)


def _paths(doc: Any, limit: int = 4000) -> list[tuple]:
    out: list[tuple] = [()]
    stack = [((), doc)]
    while stack and len(out) < limit:
        path, v = stack.pop()
        items = list(v.items()) if isinstance(v, dict) else list(enumerate(v)) if isinstance(v, list) else []
        for k, c in items:
            out.append(path + (k,))
            stack.append((path + (k,), c))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def _put(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _fmt_path(path: tuple) -> str:
    return "$" + "".join(f"[{k}]" if isinstance(k, int) else f".{str(k)[:30]}" for k in path)


def _show(v: Any) -> str:
    if isinstance(v, Raw):
        t = v.text
    else:
        try:
            t = json.dumps(v)
        except (TypeError, ValueError):
            t = repr(v)
    return t if len(t) <= 60 else f"{t[:40]}...({len(t)} chars)"


def json_doc_op(doc: Any, rng: random.Random) -> tuple[Any, str]:
    """One structural change of a parsed JSON document: replace, retype, delete, insert a field,
    duplicate a key (written twice), wrap in deep nesting."""
    paths = _paths(doc)
    path = rng.choice(paths)
    target = _get(doc, path)
    op = rng.choices(("replace", "retype", "delete", "insert", "dupkey", "nest", "swap"), (6, 6, 2, 4, 2, 1, 1))[0]
    if op == "replace":
        v = nasty_value(rng)
        return _put(doc, path, v), f"json.replace {_fmt_path(path)} = {_show(v)}"
    if op == "retype":
        v = retype(target, rng)
        return _put(doc, path, v), f"json.retype {_fmt_path(path)} -> {_show(v)}"
    if op == "delete" and path:
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
        return doc, f"json.delete {_fmt_path(path)}"
    if op in ("insert", "dupkey") and isinstance(target, dict):
        keys = [k for p in paths for k in p if isinstance(k, str)] + NASTY_KEYS
        if op == "dupkey" and target:
            k = rng.choice(list(target))
            v = nasty_value(rng)
            target[_DupKey(k)] = v
            return doc, f"json.dupkey {_fmt_path(path)}.{str(k)[:30]} again = {_show(v)}"
        k = rng.choice(keys)
        v = nasty_value(rng)
        target[k] = v
        return doc, f"json.insert {_fmt_path(path)}.{str(k)[:30]} = {_show(v)}"
    if op == "insert" and isinstance(target, list):
        i = rng.randrange(len(target) + 1)
        v = nasty_value(rng)
        target.insert(i, v)
        return doc, f"json.insert {_fmt_path(path)}[{i}] = {_show(v)}"
    if op == "swap" and isinstance(target, list) and len(target) > 1:
        target.reverse()
        return doc, f"json.reverse {_fmt_path(path)}"
    d = rng.choice((3, 10, 30, 55, 60, 65, 200, 5000))
    v = Raw("[" * d + _dumps(target, rng) + "]" * d)
    return _put(doc, path, v), f"json.nest {_fmt_path(path)} in {d} lists"


_DUPS = itertools.count()


class _DupKey(str):
    """A dict key written under the name of a key already in the dict (so the text holds it twice)."""

    def __new__(cls, key: str) -> _DupKey:
        obj = super().__new__(cls, f"\x00dup{next(_DUPS)}")
        obj.real = key  # type: ignore[attr-defined]
        return obj


def _dumps(doc: Any, rng: random.Random | None = None, **kw: Any) -> str:
    """JSON text of ``doc`` with its Raw tokens and duplicate keys put in."""
    raws: dict[str, str] = {}

    def prep(v: Any) -> Any:
        if isinstance(v, Raw):
            k = f"\x00raw{len(raws)}\x00"
            raws[json.dumps(k)] = v.text
            return k
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                if isinstance(k, _DupKey):
                    raws[json.dumps(str(k))] = json.dumps(k.real)  # type: ignore[attr-defined]
                out[str(k) if not isinstance(k, str) else k] = prep(x)
            return out
        if isinstance(v, list):
            return [prep(x) for x in v]
        return v

    indent = rng.choice((None, 2, 0)) if rng else kw.pop("indent", None)
    text = json.dumps(prep(doc), indent=indent, allow_nan=True, ensure_ascii=True)
    for k, v in raws.items():
        text = text.replace(k, v)
    return text


def json_structure(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        raise Skip() from None
    doc, desc = json_doc_op(doc, rng)
    return _dumps(doc, rng).encode(), desc


BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xc0\xaf",
            b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]


def text_encoding(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """Encoding damage to a text file: BOMs, UTF-16/32, bytes that are not UTF-8, NULs, CRs."""
    op = rng.choice(("bom", "bom2", "utf16", "utf32", "badbyte", "badbyte_in_string", "nul", "crlf", "cr", "latin1"))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if op == "bom":
        return b"\xef\xbb\xbf" + data, "text.bom utf-8"
    if op == "bom2":
        return b"\xef\xbb\xbf\xef\xbb\xbf" + data, "text.bom twice"
    if op == "utf16":
        enc = rng.choice(("utf-16", "utf-16-le", "utf-16-be"))
        return text.encode(enc, "surrogatepass"), f"text.encoding {enc}"
    if op == "utf32":
        return text.encode("utf-32", "surrogatepass"), "text.encoding utf-32"
    if op in ("badbyte", "badbyte_in_string"):
        bad = rng.choice(BAD_UTF8)
        quotes = [m.start() + 1 for m in re.finditer(rb'"', data)] if op == "badbyte_in_string" else []
        i = rng.choice(quotes) if quotes else rng.randrange(len(data) + 1)
        return data[:i] + bad + data[i:], f"text.not-utf8 {bad!r} @{i}"
    if op == "nul":
        i = rng.randrange(len(data) + 1)
        return data[:i] + b"\x00" + data[i:], f"text.nul @{i}"
    if op == "crlf":
        return data.replace(b"\n", b"\r\n"), "text.crlf"
    if op == "cr":
        return data.replace(b"\n", b"\r"), "text.cr-only"
    return text.encode("latin-1", "replace"), "text.latin-1"


def json_text(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """Syntax damage: truncation inside a value, trailing garbage or commas, comments, quotes."""
    op = rng.choice(("truncate", "garbage", "comma", "comment", "quote", "two_docs", "control", "empty", "ws_only",
                     "unclosed_string", "escapes", "escapes"))
    if op == "escapes":  # a string of escaped quotes (and backslashes) that never closes
        n = rng.choice((100, 5_000, 50_000))
        unit = rng.choice(('\\"', "\\\\", '\\"a'))
        i = rng.randrange(len(data) + 1)
        return data[:i] + b'"' + unit.encode() * n + data[i:], f"json.unclosed string of {n} x {unit!r} @{i}"
    if op == "truncate":
        i = rng.randrange(len(data) + 1)
        return data[:i], f"json.truncate at {i}"
    if op == "garbage":
        return data + rng.choice((b"x", b"}", b"]", b",", b"\x00", b"{}", b" // end")), "json.trailing garbage"
    if op == "comma":
        i = data.rfind(b"}")
        return (data[:i] + b"," + data[i:] if i > 0 else data + b","), "json.trailing comma"
    if op == "comment":
        return b"/* a comment */" + data, "json.comment"
    if op == "quote":
        i = data.find(b'"')
        return (data[:i] + b"'" + data[i + 1:] if i >= 0 else data), "json.single quote"
    if op == "two_docs":
        return data + b"\n" + data, "json.two documents"
    if op == "control":
        i = data.find(b'"', 1)
        return (data[:i] + b"\x01\t\n" + data[i:] if i > 0 else data), "json.raw control characters in a string"
    if op == "empty":
        return b"", "json.empty"
    if op == "ws_only":
        return b" \n\t ", "json.whitespace only"
    return data + b'"' + b"a" * 1000, "json.unclosed string"


STRUCTURAL: dict[str, list[tuple[float, Mutator]]] = {}
STRUCTURAL["json"] = [(8, json_structure), (1, text_encoding), (1, json_text)]


# ---- YAML ----------------------------------------------------------------------------------

YAML_SNIPPETS = {
    # anchors and aliases (a billion laughs in four lines)
    "alias": ["a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
              "c: &c [*b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
              "base: &base {opset: 17}\nderived:\n  <<: *base\n  slim: false\n", "targets: &t [onnx]\nquantize: *t\n",
              "self: &s\n  - *s\n", "a: *undefined\n", "&a a: 1\n", "<<: {opset: 17}\n", "<<: [1, 2]\n"],
    "tag": ["targets: !!python/object/apply:os.system ['touch ../PWNED-yaml']\n", "out: !!python/name:os.system\n",
            "x: !!python/object:argparse.Namespace {a: 1}\n", "calib: !!binary aGVsbG8=\n",
            "calib: !!binary '%%%not base64'\n", "targets: !!set {onnx, tflite}\n", "targets: !!omap [{a: 1}, {b: 2}]\n",
            "targets: !!pairs [[a, 1]]\n", "opset: !!float 18\n", "opset: !!str 18\n", "opset: !!int 0x\n",
            "opset: !!int 0b\n", "opset: !!int '1_000'\n", "out: !!timestamp 2001-02-30\n",
            "out: 2001-12-14t21:59:43.10-05:00\n", "out: 2001-12-14 21:59:43.10 +99:99\n", "opset: !custom 18\n",
            "opset: !<tag:yaml.org,2002:int> 18\n", "out: !!null ''\n", "dry_run: !!bool maybe\n", "opset: !!map {a: 1}\n",
            "opset: !!seq [1]\n", "opset: !!str [1]\n", "a: !!binary |\n  " + "QUFB" * 10 + "\n",
            "models: !!set {tinymodels:tiny_classifier}\n", "calib: 2001-01-01\n", "out: !!binary aGVsbG8=\n",
            "opset: !!int ''\n", "max_drop: !!float ''\n", "opset: !!int '-'\n", "out: !!timestamp nope\n",
            "out: !!timestamp ''\n", "jobs: !!int 1:x\n", "calib: !!binary é\n", "dry_run: !!bool ''\n"],
    "key": ["1: one\n", "null: x\n", "~: x\n", "true: yes\n", "2001-01-01: x\n", "1.5: x\n", "? [a, b]\n: c\n",
            "? {a: 1}\n: c\n", "? !!set {a}\n: c\n", "[a]: b\n", "0x10: x\n", ".inf: x\n", "'': empty key\n",
            "? !!binary aGVsbG8=\n: bytes key\n", "opset: 17\n18: x\n"],
    "number": ["opset: 1" + "0" * 5000 + "\n", "opset: 0b" + "1" * 20000 + "\n", "opset: " + ":".join(["59"] * 3000) + "\n",
               "max_drop: .nan\n", "max_drop: -.inf\n", "max_drop: 1e999\n", "opset: 0o777777777777777777777777\n",
               "bench_threads: [1e999]\n", "jobs: 1:30\n", "opset: 0x7fffffffffffffffffff\n"],
    "syntax": ["---\na: 1\n---\nb: 2\n", "%YAML 2.0\n---\na: 1\n", "%TAG ! tag:evil.com,2000:\n---\na: !x 1\n", "...\n",
               "a: |\n  text\n   more\n", "a: >-\n  folded\n", "a: 'it''s'\nb: \"\\x41\\u263A\\U0001F4A5\"\n",
               'a: "\\ud800"\n', 'a: "\\N\\_\\L\\P"\n', "a: \"\\z\"\n", "'" + "k" * 2000 + "': 1\n", "a: b: c\n",
               "- a\nb: c\n", "a:\n- b\n  - c\n", "a: [1, 2\n", "a: {b: 1\n", "a: 'x\n", "a: @x\n", "a: `x\n"],
}


def yaml_text(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """YAML-specific damage: aliases, tags, odd keys, tabs, deep block or flow nesting, duplicate keys."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Skip() from None
    lines = text.splitlines(keepends=True) or ["\n"]
    op = rng.choices(("snippet", "tab", "dupkey", "deep_block", "deep_flow", "indent", "chars", "anchor_line",
                      "long_line", "wide", "escapes"), (10, 1, 1, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5))[0]
    if op == "wide":  # a flow sequence of many small items (PyYAML's pure-Python scanner: ~100 KB/s)
        n = rng.choice((1_000, 30_000, 300_000))
        return (text.rstrip("\n") + "\nwide: [" + "0, " * n + "0]\n").encode(), f"yaml.flow sequence of {n} items"
    if op == "escapes":
        n = rng.choice((100, 5_000, 50_000))
        return (text.rstrip("\n") + '\nesc: "' + '\\"' * n + "\n").encode(), f"yaml.unclosed string of {n} escaped quotes"
    if op == "snippet":
        group = rng.choice(sorted(YAML_SNIPPETS))
        s = rng.choice(YAML_SNIPPETS[group])
        top = [k for k, ln in enumerate(lines) if not ln[:1].isspace() and not ln.startswith("-")] + [len(lines)]
        i = rng.choice(top) if rng.random() < 0.8 else rng.randrange(len(lines) + 1)
        return "".join(lines[:i] + [s] + lines[i:]).encode(), f"yaml.{group} {s[:60]!r} at line {i}"
    if op == "tab":
        i = rng.randrange(len(lines))
        lines[i] = re.sub(r"^( +)", lambda m: "\t" * max(1, len(m.group(1)) // 2), lines[i]) if lines[i].startswith(" ") \
            else "\t" + lines[i]
        return "".join(lines).encode(), f"yaml.tab at line {i}"
    if op == "dupkey":
        keyed = [ln for ln in lines if re.match(r"^[A-Za-z_]+:", ln)]
        if not keyed:
            raise Skip()
        ln = rng.choice(keyed)
        return (text.rstrip("\n") + "\n" + ln.split(":")[0] + ": " + rng.choice(["[1, 2]", "null", "x", "{}", "-1"]) + "\n").encode(), \
            f"yaml.duplicate key {ln.split(':')[0]}"
    if op == "deep_block":
        d = rng.choice((63, 64, 65, 200, 3000))
        body = "".join(" " * i + f"k{i}:\n" for i in range(d)) + " " * d + "v\n"
        return (text + "deep:\n" + "".join(" " + x for x in body.splitlines(keepends=True))).encode(), f"yaml.block nesting {d}"
    if op == "deep_flow":
        d = rng.choice((63, 64, 65, 200, 100_000))
        opener, closer = rng.choice((("[", "]"), ("{a: ", "}")))
        return (text + "deep: " + opener * d + "1" + closer * d + "\n").encode(), f"yaml.flow nesting {d} {opener!r}"
    if op == "indent":
        i = rng.randrange(len(lines))
        lines[i] = " " * rng.choice((1, 3, 7)) + lines[i]
        return "".join(lines).encode(), f"yaml.indent line {i}"
    if op == "chars":
        c = rng.choice(("\x00", "\x07", "\x1b", "\x85", "\u2028", "\ufeff", "\ud7ff", "\x7f", "\U0001F4A5", "\uFFFE"))
        i = rng.randrange(len(text) + 1)
        return (text[:i] + c + text[i:]).encode("utf-8", "surrogatepass"), f"yaml.char {c!r} @{i}"
    if op == "anchor_line":
        i = rng.randrange(len(lines))
        m = re.match(r"^(\s*[A-Za-z_]+:)\s*(.*)$", lines[i].rstrip("\n"))
        if not m:
            raise Skip()
        lines[i] = f"{m.group(1)} &anc {m.group(2) or 'null'}\n"
        lines.append("copy: *anc\n")
        return "".join(lines).encode(), f"yaml.anchor + alias on line {i}"
    n = rng.choice((1025, 70000, 2_000_000))
    return (text + "long: " + "x" * n + "\n").encode(), f"yaml.long scalar {n}"


def yaml_structure(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """The JSON document operations on the parsed YAML, dumped back as YAML."""
    import yaml

    try:
        doc = yaml.load(data.decode("utf-8-sig"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except Exception:  # noqa: BLE001 - anything that does not load is left to the text mutations
        raise Skip() from None
    descs = []
    for _ in range(rng.choice((1, 1, 2))):
        doc, d = json_doc_op(doc, rng)
        descs.append(d)
    doc = _unraw(doc)
    try:
        text = yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=rng.random() < 0.5,
                         default_flow_style=rng.choice((None, False, True)),
                         width=rng.choice((80, 10**6)), sort_keys=False)
    except (yaml.YAMLError, RecursionError, TypeError, ValueError):
        raise Skip() from None
    return text.encode("utf-8", "surrogatepass"), "yaml.doc " + "; ".join(descs)


def _unraw(v: Any, depth: int = 0) -> Any:
    """A document with its Raw tokens turned into values YAML can write."""
    if isinstance(v, Raw):
        try:
            return json.loads(v.text)
        except (ValueError, RecursionError):
            return v.text[:1000]
    if depth > 200:
        return None
    if isinstance(v, dict):
        return {(k.real if isinstance(k, _DupKey) else k): _unraw(x, depth + 1) for k, x in v.items()}  # type: ignore[attr-defined]
    if isinstance(v, list):
        return [_unraw(x, depth + 1) for x in v]
    return v


STRUCTURAL["yaml"] = [(5, yaml_text), (4, yaml_structure), (1, text_encoding)]
STRUCTURAL["text"] = [(3, text_encoding), (1, json_text)]


# ---- labels files: lines of text, or a JSON list ------------------------------------------------

LABEL_CHARS = ["\x00", "\x01", "\x07", "\x08", "\t", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f", "\x7f", "\x85", "\x9b",
               "\xa0", "\xad", "\u2028", "\u2029", "\u200b", "\u200e", "\u202e", "\u2066", "\u3000", "\ufeff", "\ufffe", "\uffff",
               "\U000e0001", "\U0010ffff", "\u0301", "\x1b", "\x1b[", "\x1b]", "\x1b[31m", "\x1b[2J\x1b[H", "\x1b]0;PWNED\x07",
               "\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\", "\x1bP+q\x1b\\", "\x9b31m", "\x1b]0;unterminated",
               "\x1b[999999999999999999999m", "\x1b[0m", "\U0001F4A5", "é", "e\u0301", "\U0001F468\u200d\U0001F469", "\\n", "\\"]
LINE_BREAKS = ["\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\n\r", "\r\r\n"]
BLANKS = ["", " ", "\t", "\u3000", "\xa0", "  \t  ", "\u2003", "\x1f", "\u200b", "\ufeff"]


def labels_lines(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """A labels file's lines: control characters and terminal escapes in a label, or a label of
    nothing else; line breaks Python splits on (CR, VT, FF, FS, GS, RS, NEL, LS, PS); a very long
    line; very many lines (2 million: 16 MB of them takes the reader 4.5 s); blank and whitespace-only lines; a first
    line that opens a JSON list; a line of another kind; duplicates; no final newline."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Skip() from None
    lines = text.splitlines(keepends=True) or [""]
    op = rng.choice(("char", "char", "char", "only", "only", "breaks", "long", "many", "blank", "bracket", "dup", "nofinal",
                     "replace", "replace"))
    i = rng.randrange(len(lines) + 1)
    if op == "char":
        c = rng.choice(LABEL_CHARS)
        at = rng.randrange(len(text) + 1)
        return (text[:at] + c + text[at:]).encode("utf-8", "surrogatepass"), f"labels.char {c[:30]!r} @{at}"
    if op == "only":
        s = "".join(rng.choice(LABEL_CHARS[:31] + LABEL_CHARS[33:36] + BLANKS) for _ in range(rng.choice((1, 2, 3, 10))))
        lines.insert(i, s + "\n")
        desc = f"a line of {s[:40]!r} at {i}"
    elif op == "breaks":
        sep = rng.choice(LINE_BREAKS)
        every = rng.random() < 0.5
        out = text.replace("\n", sep) if every else text.replace("\n", sep, 1)
        return out.encode(), f"labels.breaks {sep!r} for {'every' if every else 'the first'} newline"
    elif op == "long":
        n = rng.choice((10_000, 1_000_000, (16 << 20) + 1))
        ch = rng.choice(("a", "é", " ", "\t", "\x1b", "\U0001F4A5", "\x1b[0m", "a "))
        s = ch * max(1, n // len(ch.encode()))
        lines.insert(i, s + "\n")
        desc = f"a line of {len(s.encode())} bytes of {ch!r} at {i}"
    elif op == "many":
        n = rng.choice((1_000, 100_000, 1_000_000, 2_000_000))
        unit = rng.choice(("x\n", "\n", " \n", "\x1b\n", "ab\r\n", "label\n"))
        return (text + unit * n).encode(), f"labels.many {n} lines of {unit!r} after the seed's"
    elif op == "blank":
        s = rng.choice(BLANKS)
        for _ in range(rng.choice((1, 3, 1000))):
            lines.insert(rng.randrange(len(lines) + 1), s + "\n")
        desc = f"blank lines of {s!r}"
    elif op == "bracket":
        first = rng.choice(("[", "[cat]", " [", "\ufeff[", '["a"', "{", "[]", "[1]", "\t[\n", "[" * 100))
        return (first + "\n" + text).encode(), f"labels.first line {first[:20]!r}"
    elif op == "dup":
        k = rng.randrange(len(lines))
        lines[k:k] = [lines[k] if lines[k].endswith("\n") else lines[k] + "\n"] * rng.choice((1, 2, 100))
        desc = f"line {k} repeated"
    elif op == "nofinal":
        return text.rstrip("\r\n").encode(), "labels.no final newline"
    else:
        s = rng.choice(NASTY_STR + BLANKS)
        k = rng.randrange(len(lines))
        lines[k] = s + "\n"
        desc = f"line {k} = {s[:40]!r}"
    return "".join(lines).encode("utf-8", "surrogatepass"), f"labels.{op} {desc}"


LABEL_VALUES = [1, 1.5, 0, -1, None, True, False, [], {}, ["x"], {"name": "cat"}, 2**64, Raw("NaN"), Raw("1e999"), Raw("-Infinity"),
                Raw('"\\u0000"'), Raw('"\\u001b[2J"'), Raw('"\\ud800"'), Raw('"\\udfff\\ud800"'), Raw('"a\\nb"'), Raw('"\\r"'),
                Raw('"\\u2028"'), Raw('"\\t\\t"'), Raw('"\\u0085"'), Raw('"\\ufeff"'), Raw('"\\u001b]0;x\\u0007"'), "", " ", "\t",
                "\u3000", "\x1b[0m", "\x00", "a\nb", "cat\r\ndog", "\u202ecat"]


def labels_json(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """A JSON list of labels: an element not a string (numbers, null, lists, objects, NaN), a string
    of control characters, escapes (NUL, ESC, a lone surrogate, line breaks), an empty or blank label,
    lists nested past the readers' depth limit, a huge list or label, an object instead of a list, an
    empty list; or any operation on the JSON document."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        raise Skip() from None
    if not isinstance(doc, list) or rng.random() < 0.25:
        doc, desc = json_doc_op(doc, rng)
        return _dumps(doc, rng).encode(), f"labels.json {desc}"
    op = rng.choice(("element", "element", "string", "string", "empty", "nest", "huge_list", "huge_string", "object", "none"))
    k = rng.randrange(len(doc) + 1)
    if op == "element":
        v = rng.choice(LABEL_VALUES)
        doc.insert(k, v)
        desc = f"[{k}] = {_show(v)}"
    elif op == "string":
        s = "".join(rng.choice(LABEL_CHARS) for _ in range(rng.choice((1, 2, 4))))
        v = rng.choice((s, "cat" + s, s + "dog", "cat" + s + "dog"))
        doc.insert(k, v)
        desc = f"[{k}] = {v[:40]!r}"
    elif op == "empty":
        v = rng.choice(("", " ", "\t", "\u3000", "\x1b[0m", "\u200b", "\x00"))
        doc.insert(k, v)
        desc = f"[{k}] = {v!r}"
    elif op == "nest":
        d = rng.choice((2, 63, 64, 65, 1000, 100_000))
        v = Raw("[" * d + '"x"' + "]" * d)
        if rng.random() < 0.5:
            doc.insert(k, v)
            desc = f"[{k}] a label in {d} lists"
        else:
            doc = Raw("[" * (d - 1) + _dumps(doc) + "]" * (d - 1))
            desc = f"the list in {d - 1} more"
    elif op == "huge_list":
        n = rng.choice((10_000, 1_000_000))
        doc = rng.choice((["x"] * n, [str(j) for j in range(n)], [""] * n, ["\x1b[0m"] * n))
        desc = f"{n} labels"
    elif op == "huge_string":
        n = rng.choice((100_000, 10_000_000))
        doc.insert(k, rng.choice(("a", "\x1b", " ")) * n)
        desc = f"[{k}] a label of {n} characters"
    elif op == "object":
        doc = rng.choice(({"labels": doc}, {str(j): x for j, x in enumerate(doc)}, {}))
        desc = "an object instead of the list"
    else:
        doc = []
        desc = "an empty list"
    if rng.random() < 0.5 and not _has_raw(doc):
        text = json.dumps(doc, ensure_ascii=False, indent=rng.choice((None, 2)))
        return text.encode("utf-8", "surrogatepass"), f"labels.json {op} {desc} (raw UTF-8)"
    return _dumps(doc, rng).encode(), f"labels.json {op} {desc}"


def _has_raw(v: Any) -> bool:
    return isinstance(v, Raw) or (isinstance(v, list) and any(isinstance(x, Raw) for x in v))


def labels_structure(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """The JSON list's elements when the file holds one (mostly), else its lines."""
    try:
        json.loads(data.decode("utf-8-sig"))
        is_json = True
    except (ValueError, RecursionError):
        is_json = False
    if is_json and rng.random() < 0.8:
        return labels_json(data, rng, ctx)
    return labels_lines(data, rng, ctx)


STRUCTURAL["labels"] = [(6, labels_structure), (2, text_encoding), (1, json_text)]


# ---- zip archives: a small writer that writes whatever it is told ------------------------------

@dataclasses.dataclass
class ZEntry:
    name: bytes
    data: bytes  # uncompressed
    method: int = 0
    flags: int = 0
    version: int = 20
    made_by: int = 20
    lextra: bytes = b""
    cextra: bytes = b""
    comment: bytes = b""
    local_name: bytes | None = None  # a local header name that differs from the central one
    crc: int | None = None
    csize: int | None = None
    usize: int | None = None
    raw: bytes | None = None  # the stored stream as is (no compression)
    external: int = 0


@dataclasses.dataclass
class ZLayout:
    local: list[int]  # offset of each entry's local header
    central: list[int]  # offset of each central directory entry
    eocd: int
    cd_start: int


def _compress(method: int, data: bytes) -> bytes:
    if method == 0:
        return data
    if method in (8, 12, 14):
        c = zipfile_compressor(method)
        return c.compress(data) + c.flush()
    return data  # a method no writer here speaks: the bytes as they are


def zipfile_compressor(method: int) -> Any:
    import zipfile

    return zipfile._get_compressor(method)  # noqa: SLF001 - the stdlib's own stream formats


def build_zip(entries: list[ZEntry], comment: bytes = b"", *, prefix: bytes = b"", eocd_entries: int | None = None,
              cd_size: int | None = None, cd_offset: int | None = None, comment_len: int | None = None,
              align: int = 0) -> tuple[bytes, ZLayout]:
    out = bytearray(prefix)
    lay = ZLayout([], [], 0, 0)
    records = []
    for e in entries:
        payload = e.raw if e.raw is not None else _compress(e.method, e.data)
        crc = e.crc if e.crc is not None else zlib.crc32(e.data) & 0xFFFFFFFF
        csize = e.csize if e.csize is not None else len(payload)
        usize = e.usize if e.usize is not None else len(e.data)
        lname = e.local_name if e.local_name is not None else e.name
        lextra = e.lextra
        if align:
            start = len(out) + 30 + len(lname) + len(lextra)
            pad = (-(start + 4)) % align
            lextra = lextra + struct.pack("<HH", 0x4246, pad) + bytes(pad)  # torch's "FB" padding record
        off = len(out)
        lay.local.append(off)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, e.version & 0xFFFF, e.flags & 0xFFFF, e.method & 0xFFFF, 0, 0x21,
                           crc & 0xFFFFFFFF, csize & 0xFFFFFFFF, usize & 0xFFFFFFFF, len(lname), len(lextra))
        out += lname + lextra + payload
        records.append((e, crc, csize, usize, off))
    cd_start = len(out)
    lay.cd_start = cd_start
    for e, crc, csize, usize, off in records:
        lay.central.append(len(out))
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, e.made_by & 0xFFFF, e.version & 0xFFFF, e.flags & 0xFFFF,
                           e.method & 0xFFFF, 0, 0x21, crc & 0xFFFFFFFF, csize & 0xFFFFFFFF, usize & 0xFFFFFFFF,
                           len(e.name), len(e.cextra), len(e.comment), 0, 0, e.external & 0xFFFFFFFF, off & 0xFFFFFFFF)
        out += e.name + e.cextra + e.comment
    size = len(out) - cd_start
    lay.eocd = len(out)
    n = len(entries) if eocd_entries is None else eocd_entries
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n & 0xFFFF, n & 0xFFFF,
                       (size if cd_size is None else cd_size) & 0xFFFFFFFF,
                       (cd_start if cd_offset is None else cd_offset) & 0xFFFFFFFF,
                       (len(comment) if comment_len is None else comment_len) & 0xFFFF)
    out += comment
    return bytes(out), lay


def parse_zip(data: bytes) -> tuple[list[ZEntry], bytes]:
    """The members of a zip that Python reads whole, as ZEntry (Skip when it does not)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            out = []
            if len(z.infolist()) > 2000:  # already made huge by a mutation: leave it as it is
                raise Skip()
            for info in z.infolist():
                name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "surrogateescape")
                h = info.header_offset
                lextra = b""
                if data[h:h + 4] == b"PK\x03\x04":
                    nlen, xlen = struct.unpack_from("<HH", data, h + 26)
                    lextra = data[h + 30 + nlen:h + 30 + nlen + xlen]
                    lextra = _drop_extra(lextra, 0x4246)
                method = info.compress_type if info.compress_type in (0, 8, 12, 14) else 0
                out.append(ZEntry(name, z.read(info), method=method, flags=info.flag_bits & 0x800,
                                  version=info.extract_version, made_by=info.create_version, lextra=lextra,
                                  cextra=info.extra, comment=info.comment, external=info.external_attr))
            return out, z.comment
    except Exception:  # noqa: BLE001 - not whole any more: a field mutation already damaged it
        raise Skip() from None


def _drop_extra(extra: bytes, tag: int) -> bytes:
    out, i = b"", 0
    while i + 4 <= len(extra):
        t, n = struct.unpack_from("<HH", extra, i)
        if t != tag:
            out += extra[i:i + 4 + n]
        i += 4 + n
    return out + extra[i:] if i < len(extra) else out


ZIP_NAMES = [b"../evil.npy", b"../../x", b"/abs.npy", b"/etc/passwd", b"a/../../b.npy", b"a\x00b.npy", b"C:\\evil.npy",
             b"..\\evil", b"", b"dir/", b"./a.npy", b"a//b.npy", b"\xff\xfe.npy", b"\x1b[2J.npy", b"CON", b"a" * 4000,
             "é.npy".encode(), "e\u0301.npy".encode(), b"..", b".", b"a/./b"]
ZIP_METHODS = [1, 2, 6, 7, 9, 10, 12, 14, 18, 19, 93, 95, 96, 97, 98, 99, 0xFFFF]


def zip_entries(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """A change to the members: names (climbing out, absolute, NUL, UTF-8 flag over bytes that are
    not), duplicates, flags, methods, versions, sizes, CRCs, extra fields, the central directory."""
    entries, comment = parse_zip(data)
    if not entries:
        raise Skip()
    i = rng.randrange(len(entries))
    e = entries[i]
    kw: dict[str, Any] = {}
    op = rng.choice(("name", "name", "utf8flag", "dup", "dup", "flags", "method", "method_real", "version", "crc",
                     "sizes", "extra", "local_name", "drop", "many", "prefix", "eocd", "comment", "bomb", "dirdata"))
    desc = ""
    if op == "name":
        e.name = rng.choice(ZIP_NAMES)
        desc = f"name {e.name[:40]!r}"
    elif op == "utf8flag":
        e.flags |= 0x800
        e.name = e.name[:4] + rng.choice(BAD_UTF8) + e.name[4:]
        desc = f"UTF-8 flag over {e.name[:40]!r}"
    elif op == "dup":
        twin = dataclasses.replace(e, data=rng.choice((b"", rng.randbytes(40), entries[rng.randrange(len(entries))].data)))
        before = rng.random() < 0.5
        entries.insert(i if before else i + 1, twin)
        desc = f"duplicate of {e.name[:40]!r} ({'before' if before else 'after'}, other content)"
    elif op == "flags":
        bit = rng.choice((0x1, 0x8, 0x40, 0x2000, 0x800, 0x1 | 0x40, 0xFFFF))
        e.flags |= bit
        desc = f"flag bits |= {bit:#x} on {e.name[:40]!r}"
    elif op == "method":
        e.method = rng.choice(ZIP_METHODS)
        e.raw = _compress(0, e.data)
        desc = f"method {e.method} (stored bytes) on {e.name[:40]!r}"
    elif op == "method_real":
        e.method = rng.choice((0, 8, 12, 14))
        desc = f"recompressed with method {e.method}: {e.name[:40]!r}"
    elif op == "version":
        e.version = rng.choice((0, 10, 20, 45, 46, 51, 62, 63, 64, 255, 0xFFFF))
        desc = f"version needed {e.version} on {e.name[:40]!r}"
    elif op == "crc":
        e.crc = rng.choice((0, 0xFFFFFFFF, zlib.crc32(e.data) ^ 1))
        desc = f"wrong CRC on {e.name[:40]!r}"
    elif op == "sizes":
        which = rng.choice(("csize", "usize", "both"))
        v = rng.choice((0, 1, len(e.data) - 1, len(e.data) + 1, 0xFFFFFFFF, 0x7FFFFFFF, 10**9))
        if which in ("csize", "both"):
            e.csize = v
        if which in ("usize", "both"):
            e.usize = v
        desc = f"{which}={v} on {e.name[:40]!r}"
    elif op == "extra":
        junk = rng.choice((struct.pack("<HH", 1, 8) + struct.pack("<Q", 2**63), struct.pack("<HH", 1, 2) + b"ab",
                           struct.pack("<HH", 1, 0), struct.pack("<HH", 0x7075, 5) + b"\x01abcd",
                           struct.pack("<HH", 0x9901, 7) + b"\x02\x00AE\x03\x08\x00", b"\x01\x00\xff\xff",
                           struct.pack("<HH", 0xCAFE, 0), b"\x00"))
        if rng.random() < 0.5:
            e.cextra = junk
        else:
            e.lextra = junk
        desc = f"extra field {junk[:12]!r} on {e.name[:40]!r}"
    elif op == "local_name":
        e.local_name = rng.choice(ZIP_NAMES[:6] + [e.name + b"x"])
        desc = f"local header name {e.local_name[:40]!r} for {e.name[:40]!r}"
    elif op == "drop":
        del entries[i]
        desc = f"member {e.name[:40]!r} removed"
    elif op == "many":
        n = rng.choice((1000, 1000, 100_001))
        entries += [ZEntry(f"m{j}.npy".encode(), b"") for j in range(n)]
        desc = f"{n} empty members added"
    elif op == "prefix":
        kw["prefix"] = rng.choice((b"#!/bin/sh\nexit 0\n", rng.randbytes(100), b"PK\x03\x04" + bytes(26)))
        desc = f"{len(kw['prefix'])} bytes before the archive"
    elif op == "eocd":
        field = rng.choice(("eocd_entries", "cd_size", "cd_offset", "comment_len"))
        kw[field] = rng.choice((0, 1, 0xFFFF, 0xFFFFFFFF, len(entries) + 1, 7))
        desc = f"end record {field}={kw[field]}"
    elif op == "comment":
        comment = rng.choice((b"x" * 65535, b"PK\x05\x06" + bytes(18), b"\x00"))
        desc = f"archive comment of {len(comment)} bytes"
    elif op == "bomb":
        n = rng.choice((2 << 20, 64 << 20))
        e.raw, e.crc = _zeros_deflated(n)
        e.data, e.usize, e.method = b"", n, 8
        desc = f"{e.name[:40]!r} holds {n >> 20} MB of zeros, deflated"
    else:
        e.name = e.name.rstrip(b"/") + b"/"
        desc = f"{e.name[:40]!r} named as a folder, with data"
    try:
        out, _ = build_zip(entries, comment, **kw)
    except struct.error:
        raise Skip() from None
    return out, f"zip.{op} {desc}"


@functools.lru_cache(maxsize=4)
def _zeros_deflated(n: int) -> tuple[bytes, int]:
    c = zipfile_compressor(8)
    return c.compress(bytes(n)) + c.flush(), zlib.crc32(bytes(n))


def zip_fields(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """One header field of the archive as it is, overwritten in place (local, central or end record)."""
    eocd = data.rfind(b"PK\x05\x06")
    if eocd < 0:
        raise Skip()
    b = bytearray(data)
    cds = [m.start() for m in re.finditer(rb"PK\x01\x02", data)]
    locs = [m.start() for m in re.finditer(rb"PK\x03\x04", data)]
    where = rng.choice(("central", "central", "local", "eocd", "truncate_cd"))
    if where == "truncate_cd" and cds:
        cut = rng.randrange(cds[0], eocd + 1)
        return data[:cut] + data[eocd:], f"zipf.central directory cut at {cut}"
    fields = {"central": {"made_by": (4, "H"), "version": (6, "H"), "flags": (8, "H"), "method": (10, "H"),
                          "crc": (16, "I"), "csize": (20, "I"), "usize": (24, "I"), "name_len": (28, "H"),
                          "extra_len": (30, "H"), "comment_len": (32, "H"), "disk": (34, "H"), "offset": (42, "I")},
              "local": {"version": (4, "H"), "flags": (6, "H"), "method": (8, "H"), "crc": (14, "I"), "csize": (18, "I"),
                        "usize": (22, "I"), "name_len": (26, "H"), "extra_len": (28, "H")},
              "eocd": {"disk": (4, "H"), "cd_disk": (6, "H"), "entries_disk": (8, "H"), "entries": (10, "H"),
                       "cd_size": (12, "I"), "cd_offset": (16, "I"), "comment_len": (20, "H")}}[where if where != "truncate_cd" else "eocd"]
    base = {"central": cds, "local": locs, "eocd": [eocd]}.get(where, [eocd])
    if not base:
        raise Skip()
    at = rng.choice(base)
    name, (off, fmt) = rng.choice(list(fields.items()))
    if at + off + struct.calcsize(fmt) > len(b):
        raise Skip()
    old = struct.unpack_from("<" + fmt, b, at + off)[0]
    top = 0xFFFF if fmt == "H" else 0xFFFFFFFF
    v = rng.choice((0, 1, top, top - 1, old + 1, max(0, old - 1), old * 2, old ^ 0x800, 0x7FFF, 99, 63, 64)) & top
    struct.pack_into("<" + fmt, b, at + off, v)
    return bytes(b), f"zipf.{where}@{at}.{name} {old}->{v}"


STRUCTURAL["zip"] = [(6, zip_entries), (4, zip_fields)]


# ---- tar archives: a small writer that writes whatever it is told ------------------------------

TAR_FIELDS = {"name": (0, 100), "mode": (100, 8), "uid": (108, 8), "gid": (116, 8), "size": (124, 12), "mtime": (136, 12),
              "chksum": (148, 8), "type": (156, 1), "linkname": (157, 100), "magic": (257, 8), "uname": (265, 32),
              "gname": (297, 32), "devmajor": (329, 8), "devminor": (337, 8), "prefix": (345, 155)}
TAR_DATA_TYPES = (b"0", b"\x00", b"7", b"L", b"K", b"x", b"X", b"g", b"S")  # the types tarfile reads data after
GNU_MAGIC, USTAR_MAGIC = b"ustar  \x00", b"ustar\x0000"


def _tar_pad(n: int) -> bytes:
    return bytes(-max(n, 0) % 512)


def tar_num(v: int, width: int) -> bytes:
    """``v`` as tar writes a number field ``width`` bytes wide: octal, else GNU base-256 (negatives too)."""
    try:
        return tarfile.itn(v, width, tarfile.GNU_FORMAT)
    except ValueError:  # past even base-256: the largest (or the most negative) it holds
        return b"\xff" + bytes(width - 1) if v < 0 else b"\x80" + b"\xff" * (width - 1)


def tar_checksum(block: bytes | bytearray) -> bytes:
    """The 512-byte header with its checksum field made right (as tarfile writes it)."""
    b = bytearray(block)
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\x00 " % (sum(b) & 0o777777)
    return bytes(b)


def tar_header(name: bytes, size: int = 0, typ: bytes = b"0", *, linkname: bytes = b"", mode: int = 0o644, uid: int = 0,
               gid: int = 0, mtime: int = 1_700_000_000, uname: bytes = b"", gname: bytes = b"", prefix: bytes = b"",
               magic: bytes = USTAR_MAGIC) -> bytes:
    b = bytearray(512)
    for field, value in (("name", name), ("mode", tar_num(mode, 8)), ("uid", tar_num(uid, 8)), ("gid", tar_num(gid, 8)),
                         ("size", tar_num(size, 12)), ("mtime", tar_num(mtime, 12)), ("type", typ), ("linkname", linkname),
                         ("magic", magic), ("uname", uname), ("gname", gname), ("devmajor", tar_num(0, 8)),
                         ("devminor", tar_num(0, 8)), ("prefix", prefix)):
        off, n = TAR_FIELDS[field]
        b[off:off + n] = value[:n].ljust(n, b"\x00")
    return tar_checksum(b)


def pax_records(items: list[tuple[bytes, bytes]]) -> bytes:
    """pax records ``"%d %s=%s\\n"``, each length counting itself."""
    out = b""
    for k, v in items:
        body = b" " + k + b"=" + v + b"\n"
        n = len(body)
        while len(str(n)) + len(body) != n:
            n = len(str(n)) + len(body)
        out += str(n).encode() + body
    return out


def pax_block(body: bytes, typ: bytes = b"x", size: int | None = None) -> bytes:
    return tar_header(b"././@PaxHeader", len(body) if size is None else size, typ) + body + _tar_pad(len(body))


def _tar_long(typ: bytes, value: bytes, size: int | None = None) -> bytes:
    body = value + b"\x00"
    return tar_header(b"././@LongLink", len(body) if size is None else size, typ, magic=GNU_MAGIC) + body + _tar_pad(len(body))


@dataclasses.dataclass
class TEntry:
    name: bytes
    data: bytes = b""
    typ: bytes = b"0"
    linkname: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    uname: bytes = b""
    gname: bytes = b""
    pax: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)  # its own pax records (after path/linkpath)
    size: int | None = None  # the header's size field when it is not len(data)
    before: bytes = b""  # blocks written as they are before the member's own (a global header, a malformed one)
    raw: bytes | None = None  # the member's blocks as they are, instead of the ones written from the fields


def build_tar(entries: list[TEntry], style: str = "pax", end: bytes = bytes(1024)) -> bytes:
    """A tar stream of ``entries``: a name or link name past 100 bytes as pax records (``pax``), a GNU
    ././@LongLink header (``gnu``) or split at a slash into the ustar prefix, else cut (``ustar``)."""
    out = bytearray()
    for e in entries:
        out += e.before
        if e.raw is not None:
            out += e.raw
            continue
        name, link, prefix, recs = e.name, e.linkname, b"", []
        if len(name) > 100:
            if style == "pax":
                recs.append((b"path", name))
            elif style == "gnu":
                out += _tar_long(b"L", name)
            else:
                k = name.rfind(b"/", 0, 156)
                if k > 0 and len(name) - k - 1 <= 100:
                    prefix, name = name[:k], name[k + 1:]
            name = name[:100]
        if len(link) > 100:
            if style == "pax":
                recs.append((b"linkpath", link))
            elif style == "gnu":
                out += _tar_long(b"K", link)
            link = link[:100]
        recs += e.pax
        if recs:
            out += pax_block(pax_records(recs))
        out += tar_header(name, len(e.data) if e.size is None else e.size, e.typ, linkname=link, mode=e.mode, uid=e.uid,
                          gid=e.gid, mtime=e.mtime, uname=e.uname, gname=e.gname, prefix=prefix,
                          magic=GNU_MAGIC if style == "gnu" else USTAR_MAGIC)
        out += e.data + _tar_pad(len(e.data))
    return bytes(out + end)


def _pax_parse(body: bytes) -> list[tuple[bytes, bytes]]:
    """Well-formed pax records (in linear time: tarfile's own parser is not; Skip on anything else)."""
    recs, pos = [], 0
    while pos < len(body) and body[pos] != 0:
        sp = body.find(b" ", pos, pos + 21)
        if sp <= pos or not body[pos:sp].isdigit():
            raise Skip()
        n = int(body[pos:sp])
        if n <= sp - pos + 2 or pos + n > len(body) or body[pos + n - 1] != 0x0A:
            raise Skip()
        k, eq, v = body[sp + 1:pos + n - 1].partition(b"=")
        if not eq:
            raise Skip()
        recs.append((k, v))
        pos += n
    return recs


def parse_tar(raw: bytes) -> tuple[list[TEntry], str]:
    """The members of a tar stream and how it writes long names, read as tarfile reads them (Skip
    when it is not whole: a bad checksum, a number that does not parse, data past the end,
    malformed pax records, more than 2000 members)."""
    entries: list[TEntry] = []
    style, off, pending, long_name, long_link, before = "ustar", 0, [], None, None, b""
    while off + 512 <= len(raw):
        block = raw[off:off + 512]
        if not any(block):
            break
        try:
            size, mode, uid, gid, mtime = (tarfile.nti(block[a:b]) for a, b in ((124, 136), (100, 108), (108, 116), (116, 124),
                                                                                 (136, 148)))
            if tarfile.nti(block[148:156]) not in tarfile.calc_chksums(block):
                raise Skip()
        except (tarfile.HeaderError, ValueError, IndexError):
            raise Skip() from None
        typ = block[156:157]
        has_data = typ in TAR_DATA_TYPES or typ not in tarfile.SUPPORTED_TYPES
        if size < 0 or (has_data and off + 512 + size > len(raw)) or len(entries) > 2000:
            raise Skip()
        body = raw[off + 512:off + 512 + size] if has_data else b""
        start, off = off, off + 512 + (size + (-size % 512) if has_data else 0)
        if typ in (b"x", b"X"):
            pending += _pax_parse(body)
            style = "pax"
        elif typ == b"g":
            _pax_parse(body)
            before += raw[start:off]
            style = "pax"
        elif typ in (b"L", b"K"):
            if typ == b"L":
                long_name = body.split(b"\x00", 1)[0]
            else:
                long_link = body.split(b"\x00", 1)[0]
            style = "gnu" if style == "ustar" else style
        else:
            name = block[0:100].split(b"\x00", 1)[0]
            prefix = block[345:500].split(b"\x00", 1)[0] if block[257:263] == b"ustar\x00" else b""
            if prefix and typ not in (b"L", b"K", b"S"):
                name = prefix + b"/" + name
            if block[257:265] == GNU_MAGIC and style == "ustar":
                style = "gnu"
            link = block[157:257].split(b"\x00", 1)[0]
            name, link = long_name or name, long_link or link
            keep = []
            for k, v in pending:
                if k == b"path":
                    name = v
                elif k == b"linkpath":
                    link = v
                elif k != b"size":
                    keep.append((k, v))
            entries.append(TEntry(name, body, typ, link, mode, uid, gid, mtime, block[265:297].split(b"\x00", 1)[0],
                                  block[297:329].split(b"\x00", 1)[0], keep, before=before))
            pending, long_name, long_link, before = [], None, None, b""
    return entries, style


def _tar_walk(raw: bytes, limit: int = 5000) -> tuple[list[int], int]:
    """The offsets of a tar stream's header blocks (pax and GNU headers too), stepping over data as
    tarfile does, and where its members end (its end-of-archive blocks, or what else, start there)."""
    heads, off = [], 0
    while off + 512 <= len(raw) and len(heads) < limit:
        block = raw[off:off + 512]
        if not any(block):
            break
        try:
            size = tarfile.nti(block[124:136])
        except (tarfile.HeaderError, ValueError, IndexError):
            break
        heads.append(off)
        typ = block[156:157]
        data = size if typ in TAR_DATA_TYPES or typ not in tarfile.SUPPORTED_TYPES else 0
        if data < 0:
            break
        off += 512 + data + (-data % 512)
    return heads, min(off, len(raw))


TAR_COMPRESSIONS = ("", "gz", "xz", "bz2")


def _tar_unwrap(data: bytes) -> tuple[str, bytes]:
    """(compression, the tar stream inside it): gz, xz, bz2 or "" (Skip when the stream does not
    decompress whole, holds more than one stream, or expands past 64 MB)."""
    d: Any
    if data[:2] == b"\x1f\x8b":
        d, comp = zlib.decompressobj(31), "gz"
    elif data[:6] == b"\xfd7zXZ\x00":
        d, comp = lzma.LZMADecompressor(), "xz"
    elif data[:3] == b"BZh":
        d, comp = bz2.BZ2Decompressor(), "bz2"
    else:
        return "", data
    try:
        raw = d.decompress(data, 64 << 20)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
        raise Skip() from None
    if not d.eof or d.unused_data:
        raise Skip()
    return comp, raw


def _tar_wrap(comp: str, raw: bytes) -> bytes:
    """``raw`` compressed as ``comp`` (no time stamps: the same bytes every time)."""
    big = len(raw) > 1 << 20
    if comp == "gz":
        return gzip.compress(raw, compresslevel=1 if big else 6, mtime=0)
    if comp == "xz":
        return lzma.compress(raw, preset=0 if big else 6)
    if comp == "bz2":
        return bz2.compress(raw, 1 if big else 9)
    return raw


@functools.lru_cache(maxsize=8)
def _tar_bomb(comp: str, n: int) -> bytes:
    """A compressed stream of one member of ``n`` zero bytes and the end blocks (to follow another stream)."""
    return _tar_wrap(comp, tar_header(b"top/zeros.bin", n) + bytes(n) + _tar_pad(n) + bytes(1024))


TAR_NAMES = [b"../evil", b"../../x", b"/abs", b"/etc/passwd", b"top/../../x", b"top/a\x00b", b"", b".", b"..", b"./", b"./top/x",
             b"a//b", b"C:\\evil", b"..\\evil", b"top\\..\\..\\x", b"top/\xff\xfe", b"top/\x1b[2J", b"top/", b"top", b"//x",
             b"~/x", b"top/./x", "top/é".encode(), "top/e\u0301".encode(), b"top/" + b"n" * 255, b"top/" + b"n" * 256,
             b"top/" + b"d/" * 2100 + b"x", b"x" * 5000, b"top/sub", b"top/a.txt", b"top/sub/b.bin/x", b"top/a.txt/"]
TAR_LINKS = [b"../evil", b"../../../../etc/passwd", b"/etc/passwd", b"/", b"..", b".", b"", b"a.txt", b"top/a.txt", b"missing",
             b"top/missing", b"top", b"top/sub", b"top/link", b"top/../..", b"sub/../../..", b"a\x00b", b"l" * 300,
             b"../case/archive.tar", b"//etc", b"top/sub/hard", b"top/sub/../a.txt", b"./a.txt", b"sub", b"link", b"top/link/x"]
TAR_TYPES = [b"0", b"\x00", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"S", b"L", b"K", b"x", b"g", b"X", b"V", b"M", b"N", b"D",
             b"Z", b"A", b"\xff"]
TAR_SPECIAL = [b"3", b"4", b"6", b"7", b"V", b"M", b"N", b"D", b"Z", b"A", b"\xff"]
PAX_KEYS = [b"path", b"path", b"linkpath", b"linkpath", b"size", b"size", b"uid", b"gid", b"mtime", b"atime", b"uname", b"gname",
            b"hdrcharset", b"comment", b"GNU.sparse.size", b"GNU.sparse.numblocks", b"GNU.sparse.offset", b"GNU.sparse.numbytes",
            b"GNU.sparse.map", b"GNU.sparse.name", b"GNU.sparse.realsize", b"SCHILY.devmajor", b"SCHILY.xattr.user.x",
            b"LIBARCHIVE.xattr.security.capability", b"", b"path\x00x", b"\xff"]
PAX_VALUES = [b"-1", b"-512", b"-1024", b"-9223372036854775809", b"99999999999999999999", b"18446744073709551616", b"1e3",
              b"0x10", b" 1", b"nan", b"inf", b"-0", b"1.5", b"", b"abc", b"0", b"../evil", b"/abs", b"a\x00b", b"\xff\xfe",
              b"BINARY", b"ISO-IR 10646 2000 UTF-8", b"a" * 5000, b"top/../../x", b"0,1,2", b"1,-1", b"0,10,-5,3",
              b"\x1b[2J", b"2147483648", b"top/sub", b"top/a.txt", b"1,2,3,4" * 1000]
PAX_MALFORMED = [b"99999 path=x\n", b"5 a=b\n", b"0 =\n", b"-1 path=x\n", b"11 path=abc", b"18446744073709551616 path=x\n",
                 b"30 path=" + bytes(21) + b"\n", b"1000000 path=" + b"x" * 50 + b"\n", b"9 path=\n", b"6 =\n", b"7 a b=\n",
                 b"x" * 1000, b"\n" * 100, b"13 path=a\xffb\n", b"21 hdrcharset=\xff\xfe\n", b"20 hdrcharset=BINARY\n13 path=a\xffb\n",
                 b"12 path=a\nb\n", b"2 =\n" * 50, b"10 path\n\n", b"5 =\n\n"]


def _tar_pax_redos(rng: random.Random) -> tuple[bytes, str]:
    """pax header bodies that CPython's pax regexes scan in quadratic time (CVE-2024-6232)."""
    n = rng.choice((3_000, 30_000, 300_000))
    kind = rng.choice(("records", "digits"))
    if kind == "records":  # every record 2 bytes long, its keyword running on to the one '=' at the end
        return b"2 " * n + b"=\n", f"{n} two-byte records before the only '='"
    return b"1" * n + b" hdrcharset\n", f"{n} digits before ' hdrcharset' without '='"


def _pathmax_escape(marker: str, up: int, comp: int = 239) -> list[TEntry]:
    """The shape of CVE-2025-4517: 16 folders of ``comp`` characters, each reached by a one-letter
    symbolic link, so that ``os.path.realpath`` (which the extraction filter checks links with) gives
    up past PATH_MAX and reads the rest lexically, while the kernel follows every link: a link that
    the filter sees staying inside leads ``up`` levels above the extraction folder, and a member
    written through it lands there (``comp`` = 239 fits extraction folders of 1-255 characters)."""
    steps = "abcdefghijklmnop"
    d = "d" * comp
    out, path = [], ""
    for s in steps:
        out.append(TEntry((path + d).encode(), typ=b"5", mode=0o755))
        out.append(TEntry((path + s).encode(), typ=b"2", linkname=d.encode(), mode=0o777))
        path += d + "/"
    linkpath = "/".join(steps) + "/" + "l" * 254
    out.append(TEntry(linkpath.encode(), typ=b"2", linkname="/".join([".."] * len(steps)).encode(), mode=0o777))
    out.append(TEntry(b"escape", typ=b"2", linkname=(linkpath + "/.." * up).encode(), mode=0o777))
    return out


def tar_entries(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """A change to the members: names (climbing out, absolute, NUL, past NAME_MAX and PATH_MAX), two
    members of one name and different types, symbolic and hard links (outside, missing, to a folder,
    a file written through one), device files, FIFOs and unknown types, pax records (path, linkpath,
    size, sparse maps: huge, negative, not numbers), malformed pax and GNU long-name headers, a global
    header, an old GNU sparse member, many members, 64 MB of zeros, sizes past the limit, members
    dropped or reordered."""
    comp, raw = _tar_unwrap(data)
    entries, style = parse_tar(raw)
    op = rng.choice(("name", "name", "long", "dup", "dup", "symlink", "symlink", "hardlink", "hardlink", "special", "type",
                     "pax", "pax", "pax", "global", "pax_raw", "pax_raw", "pax_redos", "gnu_raw", "sparse", "many", "bomb",
                     "lie", "drop", "reverse", "empty", "style"))
    end = bytes(1024)
    if not entries and op not in ("empty", "many", "bomb", "symlink", "hardlink"):
        raise Skip()
    k = rng.randrange(len(entries)) if entries else 0
    e = entries[k] if entries else TEntry(b"top/new", b"new\n")
    names = [x.name for x in entries] or [b"top/new"]
    if op == "name":
        e.name = rng.choice(TAR_NAMES)
        desc = f"{e.name[:40]!r}"
    elif op == "long":
        e.name = rng.choice((b"top/" + b"n" * rng.choice((255, 256, 1000)), b"top/" + b"d/" * rng.choice((100, 2100, 5000)) + b"x",
                             b"/".join([b"y" * 200] * rng.choice((10, 25))), b"x" * rng.choice((4095, 4096, 70_000))))
        style = rng.choice((style, "pax", "gnu"))
        desc = f"{len(e.name)} bytes, {e.name.count(b'/')} slashes ({style})"
    elif op == "dup":
        typ = rng.choice((b"0", b"5", b"2", b"1", b"6"))
        twin = dataclasses.replace(e, typ=typ, data=b"other content\n" if typ == b"0" else b"", pax=[],
                                   linkname=rng.choice((b"a.txt", b"top/a.txt", b".", b"sub", b"top/sub")) if typ in (b"1", b"2") else b"")
        first = rng.random() < 0.5
        entries.insert(k if first else k + 1, twin)
        desc = f"{e.name[:40]!r} again as type {typ!r} ({'before' if first else 'after'})"
    elif op in ("symlink", "hardlink"):
        typ = b"2" if op == "symlink" else b"1"
        link = TEntry(rng.choice((b"top/l2", e.name, b"top/sub/l", b"l", b"top/sub")), typ=typ,
                      linkname=rng.choice(TAR_LINKS + names), mode=0o777)
        at = rng.randrange(len(entries) + 1)
        entries.insert(at, link)
        desc = f"{link.name[:40]!r} -> {link.linkname[:40]!r} at {at}"
        if rng.random() < 0.5:  # and a member written through it: a file of its name, or one beneath it
            through = TEntry(rng.choice((link.name, link.name + b"/x")), b"written through the link\n")
            entries.insert(at + 1, through)
            desc += f", then a file {through.name[:40]!r}"
    elif op == "special":
        e.typ = rng.choice(TAR_SPECIAL)
        desc = f"{e.name[:40]!r} made type {e.typ!r}"
    elif op == "type":
        e.typ = rng.choice(TAR_TYPES)
        if e.typ in (b"1", b"2") and rng.random() < 0.7:
            e.linkname = rng.choice(TAR_LINKS + names)
        desc = f"{e.name[:40]!r} made type {e.typ!r} (link {e.linkname[:30]!r})"
    elif op == "pax":
        recs = [(rng.choice(PAX_KEYS), rng.choice(PAX_VALUES)) for _ in range(rng.choice((1, 1, 2, 3)))]
        e.pax += recs
        style = "pax"
        desc = f"on {e.name[:30]!r}: " + ", ".join(f"{a[:24]!r}={b[:24]!r}" for a, b in recs)
    elif op == "global":
        recs = [(rng.choice(PAX_KEYS), rng.choice(PAX_VALUES)) for _ in range(rng.choice((1, 2)))]
        e.before = pax_block(pax_records(recs), b"g") + e.before
        desc = f"before {e.name[:30]!r}: " + ", ".join(f"{a[:24]!r}={b[:24]!r}" for a, b in recs)
    elif op == "pax_raw":
        body = rng.choice(PAX_MALFORMED)
        size = rng.choice((len(body), len(body), 0, len(body) + 512, max(0, len(body) - 1), 2**33, -1))
        e.before += pax_block(body, rng.choice((b"x", b"x", b"g")), size)
        desc = f"before {e.name[:30]!r}: {body[:30]!r} (size field {size})"
    elif op == "pax_redos":
        body, d = _tar_pax_redos(rng)
        e.before += pax_block(body)
        desc = f"before {e.name[:30]!r}: {d}"
    elif op == "gnu_raw":
        typ = rng.choice((b"L", b"L", b"K"))
        value = rng.choice((b"", b"../evil", b"/abs", b"a" * 70_000, b"top/" + b"n" * 300, b"no-nul"))
        size = rng.choice((None, None, 0, 2**33, 2**40, -1, 8**11 - 1))
        block = _tar_long(typ, value, size)
        if value == b"no-nul":
            block = tar_header(b"././@LongLink", 6, typ, magic=GNU_MAGIC) + b"no-nul" + _tar_pad(6)
        if rng.random() < 0.3:
            end = block + end
            desc = f"{typ!r} header at the end ({value[:20]!r}, size field {size})"
        else:
            e.before += block * rng.choice((1, 1, 2))
            desc = f"{typ!r} header before {e.name[:30]!r} ({value[:20]!r}, size field {size})"
    elif op == "sparse":
        offsets = [rng.choice((0, 512, 1 << 33, 1 << 62, -1, -512, 100)) for _ in range(4)]
        counts = [rng.choice((0, 10, 512, 1 << 33, -1)) for _ in range(4)]
        real = rng.choice((0, 100, 4096, 1 << 31, 1 << 40, -1))
        extended = rng.random() < 0.4
        body = bytes(min(sum(c for c in counts if c > 0), 4096))
        h = bytearray(tar_header(e.name if e.typ in (b"0", b"\x00") else b"top/sparse", len(body), b"S", magic=GNU_MAGIC))
        for j in range(4):
            h[386 + 24 * j:398 + 24 * j] = tar_num(offsets[j], 12)
            h[398 + 24 * j:410 + 24 * j] = tar_num(counts[j], 12)
        h[482] = 1 if extended else 0
        h[483:495] = tar_num(real, 12)
        ext = b""
        if extended and rng.random() < 0.7:  # an extension block (the flag set in it too, at times); else none follows
            eb = bytearray(512)
            for j in range(rng.choice((1, 21))):
                eb[24 * j:24 * j + 12] = tar_num(rng.choice((0, 1 << 40, -1, 4096)), 12)
                eb[24 * j + 12:24 * j + 24] = tar_num(rng.choice((1, 512, 1 << 33)), 12)
            eb[504] = rng.choice((0, 0, 1))
            ext = bytes(eb)
        member = TEntry(b"top/sparse", raw=tar_checksum(h) + ext + body + _tar_pad(len(body)))
        at = rng.randrange(len(entries) + 1)
        if rng.random() < 0.2:
            end, at = member.raw or b"", -1  # at the very end, its extension block cut off by the end of the data
        else:
            entries.insert(at, member)
        desc = f"at {at}: map {list(zip(offsets, counts))}, real size {real}, extended {extended} ({'a' if ext else 'no'} block)"
    elif op == "many":
        n = rng.choice((1000, 9_999, 10_001, 100_000))
        if n > 20_000:
            many = tar_header(b"top/m", 0) * n
        else:
            many = b"".join(tar_header(f"top/m{j}".encode(), 0) for j in range(n))
        _, stop = _tar_walk(raw)
        out_raw = raw[:stop] + many + bytes(1024)
        c = comp if len(out_raw) < 8 << 20 or comp in ("", "gz") else "gz"
        return _tar_wrap(c, out_raw), f"tar.many {n} empty members{' of one name' if n > 20_000 else ''} ({c or 'uncompressed'})"
    elif op == "bomb":
        n = rng.choice((16 << 20, 64 << 20))
        c = comp or "gz"
        _, stop = _tar_walk(raw)
        return _tar_wrap(c, raw[:stop]) + _tar_bomb(c, n), f"tar.bomb a member of {n >> 20} MB of zeros after the rest ({c})"
    elif op == "lie":
        size = rng.choice(((2 << 30) + 1, 3 << 30, 1 << 62, 1 << 33))
        e.size = size
        if len(entries) > 1 and rng.random() < 0.5:
            size = (1 << 30) + (1 << 29)
            for x in entries[:2]:
                x.size = size
        desc = f"size field {size} on {e.name[:30]!r} (its data as it was)"
    elif op == "drop":
        del entries[k]
        desc = f"{e.name[:40]!r} removed"
    elif op == "reverse":
        entries.reverse()
        desc = f"{len(entries)} members in reverse order"
    elif op == "empty":
        entries, end = [], rng.choice((b"", bytes(512), bytes(1024), bytes(10240)))
        desc = f"no members, {len(end)} bytes of end blocks"
    else:
        style = rng.choice([s for s in ("pax", "gnu", "ustar") if s != style])
        desc = f"long names written the {style} way"
    return _tar_wrap(comp, build_tar(entries, style, end)), f"tar.{op} {desc}"


def tar_hostile(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """Members that would write ``PWNED-<index>`` outside the extraction folder if the filter let
    them: the PATH_MAX link chain of CVE-2025-4517 (one level up: the case folder; two: beside it),
    a hard link through it to the canary beside the case folder, then written; a link to ``..`` and
    a file beneath it; a link pointing out, then a file of its name."""
    comp, raw = _tar_unwrap(data)
    entries, style = parse_tar(raw)
    marker = ctx.marker.rsplit("/", 1)[-1]
    op = rng.choice(("pathmax", "pathmax", "pathmax_hardlink", "dotdot", "link_then_file"))
    if op == "pathmax":
        up = rng.choice((1, 2))
        chain = _pathmax_escape(marker, up)
        chain.append(TEntry(f"escape/{marker}".encode(), b"written outside the extraction folder\n"))
        desc = f"a link {up} level{'s' if up > 1 else ''} above the extraction folder, then escape/{marker}"
    elif op == "pathmax_hardlink":
        chain = _pathmax_escape(marker, 2)
        chain += [TEntry(b"flaglink", typ=b"1", linkname=b"escape/canary.txt"), TEntry(b"flaglink", b"overwritten\n")]
        desc = "a hard link to escape/canary.txt (beside the case folder), then a file of its name"
    elif op == "dotdot":
        chain = [TEntry(b"top/up", typ=b"2", linkname=b".."), TEntry(b"top/up/up2", typ=b"2", linkname=b".."),
                 TEntry(f"top/up/up2/{marker}".encode(), b"outside\n")]
        desc = "links to .. and .. beneath it, then a file through both"
    else:
        chain = [TEntry(b"top/out", typ=b"2", linkname=f"../../{marker}".encode()), TEntry(b"top/out", b"through\n")]
        desc = "a link out, then a file of its name"
    at = rng.choice((0, len(entries)))
    entries[at:at] = chain
    return _tar_wrap(comp, build_tar(entries, "pax" if style == "ustar" else style)), f"tar.hostile {op}: {desc} (at {at})"


TAR_GARBAGE = [b"\x00" * 12, b" " * 12, b"zzzzzzz\x00", b"9999999\x00", b"-000001\x00", b"\xff" * 12, b"\x80" + b"\xff" * 11,
               b"0x10\x00", b"77777777777777", b"1 2 3\x00", b"\x00777777", b"\x80\x00", b"+1\x00", b"0o17\x00", b"\xc3\xa9\x00"]
TAR_INTS = {"mode": [0, 0o777, 0o4755, 0o2755, 0o1777, 0o7777, 0o170777, 0o20644, 0o60644, -1, 1 << 30],
            "uid": [0, 65534, 1 << 21, 1 << 31, -1, 1 << 62], "gid": [0, 65534, 1 << 21, 1 << 31, -1, 1 << 62],
            "mtime": [0, -1, 1 << 33, 1 << 62, -(1 << 62), 253402300800], "devmajor": [0, 1, 255, 1 << 20, -1],
            "devminor": [0, 1, 255, 1 << 20, -1]}
TAR_TEXT = {"name": [n for n in TAR_NAMES if len(n) <= 100] + [b"a" * 100], "linkname": [n for n in TAR_LINKS if len(n) <= 100],
            "prefix": [b"..", b"/", b"../..", b"top", b"\xff", b"a" * 155, b"/etc", b"top/sub", b"a\x00b"],
            "uname": [b"root", b"\xff\xfe", b"a" * 32, b"\x1b[2J", b"", b"nobody"], "gname": [b"root", b"\xff", b"a" * 32, b""],
            "magic": [USTAR_MAGIC, GNU_MAGIC, bytes(8), b"junk\x00\x00\x00\x00", b"ustar\x00xx", b"ustar\x00\x00\x00"]}


def tar_fields(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """One header field as it is in the stream, overwritten in place (the checksum made right again
    unless the checksum is the field): names, modes, owners, sizes, times, type flags, link names,
    magic, device numbers, of members and of their pax and GNU headers; or the stream cut inside a
    header or a member, its end blocks dropped, a zero block or garbage between or after members."""
    comp, raw = _tar_unwrap(data)
    heads, stop = _tar_walk(raw)
    if not heads:
        raise Skip()
    op = rng.choice(("field",) * 10 + ("cut", "cut", "noend", "zeros", "junk"))
    if op == "cut":
        at = rng.choice(heads)
        k = rng.choice((at + rng.randrange(1, 512), at + 512 + rng.randrange(1024), stop, stop + rng.randrange(1, 1024), len(raw) - 1))
        return _tar_wrap(comp, raw[:k]), f"tarf.cut at {k} of {len(raw)}"
    if op == "noend":
        return _tar_wrap(comp, raw[:stop]), f"tarf.no end blocks (cut at {stop})"
    if op == "zeros":
        at = rng.choice(heads[1:] or heads)
        return _tar_wrap(comp, raw[:at] + bytes(512) + raw[at:]), f"tarf.zero block before the header at {at}"
    if op == "junk":
        junk = rng.choice((rng.randbytes(512), b"\xff" * 512, tar_header(b"top/after", 0)[:511] + b"x", bytes(511) + b"\x01",
                           tar_header(b"top/after", 0)))
        return _tar_wrap(comp, raw[:stop] + junk + bytes(1024)), f"tarf.{len(junk)} bytes of junk after the members"
    at = rng.choice(heads)
    b = bytearray(raw)
    field = rng.choice(("name", "name", "mode", "uid", "gid", "size", "size", "size", "mtime", "chksum", "type", "type", "type",
                        "linkname", "linkname", "magic", "uname", "gname", "devmajor", "devminor", "prefix"))
    off, n = TAR_FIELDS[field]
    old = bytes(b[at + off:at + off + n])
    if field in TAR_TEXT:
        v = rng.choice(TAR_TEXT[field])
    elif field == "type":
        v = rng.choice(TAR_TYPES)
        if v in (b"1", b"2") and rng.random() < 0.5:
            lk = rng.choice(TAR_TEXT["linkname"])
            b[at + 157:at + 257] = lk.ljust(100, b"\x00")
    elif field == "chksum":
        blank = bytearray(b[at:at + 512])
        blank[148:156] = b" " * 8
        right = sum(blank)
        signed = sum(x - 256 if x > 127 else x for x in blank)
        v = rng.choice((b"%06o\x00 " % ((right + 1) & 0o777777), b"%06o\x00 " % (signed & 0o777777), bytes(8), b" " * 8,
                        b"zzzzzz\x00 ", b"\xff" * 8, b"%07o\x00" % right, b"%o" % right))
    elif field == "size":
        try:
            was = tarfile.nti(old)
        except (tarfile.HeaderError, ValueError):
            was = 0
        if rng.random() < 0.8:
            v = tar_num(rng.choice((0, 1, was - 1, was + 1, was + 512, was - 512, was * 2, 8**11 - 1, 1 << 33, 1 << 62, -1, -512,
                                    -1024, -(1 << 62))), n)
        else:
            v = rng.choice(TAR_GARBAGE)
    else:
        v = tar_num(rng.choice(TAR_INTS[field]), n) if rng.random() < 0.6 else rng.choice(TAR_GARBAGE)
    b[at + off:at + off + n] = v[:n].ljust(n, b"\x00")
    fix = field != "chksum" and rng.random() < 0.95
    if fix:
        b[at:at + 512] = tar_checksum(b[at:at + 512])
    typ = bytes(b[at + 156:at + 157])
    return _tar_wrap(comp, bytes(b)), (f"tarf.{field}@{at} (type {typ!r}) {old[:20]!r} -> {v[:20]!r}"
                                       f"{'' if fix or field == 'chksum' else ' (checksum left stale)'}")


def tar_stream(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """The compressed stream around the archive: compressed another way, or not, or twice, or as
    .lzma; a gzip header field (method, flags without their fields, FEXTRA/FNAME running long), its
    CRC or length trailer; an xz stream with another check, its footer or index damaged; a second
    stream after it, garbage after it; its body damaged; cut short."""
    comp, raw = _tar_unwrap(data)
    op = rng.choice(("recompress", "recompress", "twice", "lzma_alone", "gz_header", "gz_header", "gz_trailer", "xz_check",
                     "concat", "trailing", "body", "body", "cut"))
    if op == "recompress":
        to = rng.choice([c for c in TAR_COMPRESSIONS if c != comp])
        return _tar_wrap(to, raw), f"tarz.recompressed {comp or 'none'} -> {to or 'none'}"
    if op == "twice":
        outer = rng.choice(("gz", "xz", "bz2"))
        return _tar_wrap(outer, _tar_wrap(comp or "gz", raw)), f"tarz.{comp or 'gz'} inside {outer}"
    if op == "lzma_alone":
        return lzma.compress(raw, format=lzma.FORMAT_ALONE), "tarz.lzma (alone format)"
    if op in ("gz_header", "gz_trailer"):
        b = bytearray(data if comp == "gz" else _tar_wrap("gz", raw))
        if op == "gz_header":
            field = rng.choice(("flags", "method", "mtime", "xfl", "os", "fextra", "fname"))
            if field == "flags":
                b[3] = rng.choice((0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0xE0, 0xFF, 0x1E))
                desc = f"flags {b[3]:#x} (their fields absent)"
            elif field == "method":
                b[2] = rng.choice((0, 7, 9, 255))
                desc = f"method {b[2]}"
            elif field == "mtime":
                struct.pack_into("<I", b, 4, rng.choice((0xFFFFFFFF, 1)))
                desc = "mtime"
            elif field == "xfl":
                b[8] = rng.choice((0xFF, 4))
                desc = f"xfl {b[8]}"
            elif field == "os":
                b[9] = 255
                desc = "os 255"
            elif field == "fextra":
                xlen = rng.choice((0, 4, 0xFFFF))
                b[3] |= 0x04
                b[10:10] = struct.pack("<H", xlen) + b"ab"
                desc = f"FEXTRA of length {xlen} holding 2 bytes"
            else:
                flag = rng.choice((0x08, 0x10))
                field_bytes = rng.choice((b"name", b"name\x00", b"x" * 70_000))
                b[3] |= flag
                b[10:10] = field_bytes
                desc = f"{'FNAME' if flag == 8 else 'FCOMMENT'} {field_bytes[:8]!r}{'' if field_bytes.endswith(bytes(1)) else ' without its NUL'}"
            return bytes(b), f"tarz.gzip header {desc}"
        which = rng.choice(("crc", "isize", "both", "drop4", "drop8"))
        if which in ("crc", "both"):
            struct.pack_into("<I", b, len(b) - 8, struct.unpack_from("<I", b, len(b) - 8)[0] ^ 1)
        if which in ("isize", "both"):
            struct.pack_into("<I", b, len(b) - 4, rng.choice((0, 0xFFFFFFFF, len(raw) + 1)) & 0xFFFFFFFF)
        if which.startswith("drop"):
            b = b[:-int(which[4:])]
        return bytes(b), f"tarz.gzip trailer {which}"
    if op == "xz_check":
        check = rng.choice((lzma.CHECK_NONE, lzma.CHECK_CRC32, lzma.CHECK_SHA256))
        b = bytearray(lzma.compress(raw, check=check))
        where = rng.choice(("footer", "index", "none"))
        if where == "footer":
            b[-12 + rng.randrange(10)] ^= 0xFF
        elif where == "index":
            b[-13 - rng.randrange(min(24, len(b) - 13))] ^= rng.choice((1, 0x80))
        return bytes(b), f"tarz.xz check {check}, damage in the {where}"
    if op == "concat":
        c = comp or "gz"
        second = rng.choice((data, _tar_wrap(c, b"x" * 100), _tar_wrap(c, b""), _tar_wrap(c, raw), _tar_wrap(c, tar_header(b"top/2nd", 0))))
        return (data if comp else _tar_wrap(c, raw)) + second, f"tarz.a second {c} stream of {len(second)} bytes after the first"
    if op == "trailing":
        junk = rng.choice((bytes(rng.choice((1, 7, 512, 10_000))), rng.randbytes(rng.choice((1, 8, 600))), b"\x1f\x8b",
                           b"\x1f\x8b\x08\x00" + bytes(6), b"BZh9", b"\xfd7zXZ\x00", b"PK\x05\x06" + bytes(18)))
        return data + junk, f"tarz.{len(junk)} bytes after the stream ({junk[:8]!r})"
    if not comp:
        raise Skip()
    start = {"gz": 10, "xz": 12, "bz2": 4}[comp]
    if len(data) <= start + 2:
        raise Skip()
    b = bytearray(data)
    if op == "body":
        i = rng.randrange(start, len(b))
        n = rng.choice((1, 1, 4, 64))
        kind = rng.choice(("flip", "zeros", "random"))
        for j in range(i, min(i + n, len(b))):
            b[j] = b[j] ^ (1 << rng.randrange(8)) if kind == "flip" else 0 if kind == "zeros" else rng.randrange(256)
        return bytes(b), f"tarz.{comp} body {kind} {n} at {i} of {len(b)}"
    k = rng.choice((len(b) - 1, len(b) - 4, len(b) - 8, len(b) // 2, rng.randrange(start, len(b)), start))
    return bytes(b[:k]), f"tarz.{comp} stream cut at {k} of {len(b)}"


STRUCTURAL["tar"] = [(6, tar_entries), (4, tar_fields), (3, tar_stream), (1, tar_hostile)]


# ---- arrays: .npy headers and data, .npz members ---------------------------------------------

def parse_npy_bytes(data: bytes) -> tuple[tuple[int, int], dict | str, bytes]:
    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        raise Skip()
    ver = (data[6], data[7])
    if ver[0] == 1:
        (hlen,), start = struct.unpack_from("<H", data, 8), 10
    else:
        if len(data) < 12:
            raise Skip()
        (hlen,), start = struct.unpack_from("<I", data, 8), 12
    header = data[start:start + hlen].decode("latin-1")
    try:
        d = ast.literal_eval(header.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        d = header
    return ver, d, data[start + hlen:]


def build_npy(ver: tuple[int, int], header: dict | str, body: bytes, hlen_delta: int = 0) -> bytes:
    text = header if isinstance(header, str) else "{" + "".join(f"{k!r}: {v!r}, " for k, v in header.items()) + "}"
    size_field = 2 if ver[0] == 1 else 4
    pre = 6 + 2 + size_field
    pad = (-(pre + len(text) + 1)) % 64
    raw = (text + " " * pad + "\n").encode("utf-8" if ver[0] >= 3 else "latin-1", "replace")
    n = len(raw) + hlen_delta
    if size_field == 2:
        if not 0 <= n <= 0xFFFF:
            raise Skip()
        size = struct.pack("<H", n)
    else:
        size = struct.pack("<I", max(0, n) & 0xFFFFFFFF)
    return b"\x93NUMPY" + bytes(ver) + size + raw + body


NPY_DESCR = ["|O", "|S5", "<U3", "|V8", "<c8", "<c16", "<M8[s]", "<m8[D]", ">f4", "<f2", "<f8", "|b1", "<i8", ">i2",
             "|u1", "<u8", "<f16", "bogus", "", "<f4 ", "f4", "float32", "<U0", "<U2147483647", "|S0", "|V0", "<i0",
             [("a", "<f4"), ("b", "<i4")], [("o", "|O")], [("a", "<f4", (2,))], ("<f4", (2, 2)), ["<f4"], 4, None, {"a": 1},
             "<f4,<f4", "(2)<f4", "O", "|O8", "<M8", "<m8", "<f4[2]", "V2147483647"]
NPY_SHAPES = [(), (0,), (0, 3), (-1,), (-1, 2), (2**31,), (2**62,), (2**62, 2**62), (10**30,), (2**32, 2**32), (1,) * 33,
              (1,) * 64, (1,) * 65, [2, 3], ("2",), (2.0,), None, (True,), (3, 2), (6,), (1, 6), (2, 3, 1), 6, "(2,3)"]


def npy_header(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """The .npy header dict: descr, shape, fortran_order (values and types), keys, version, length."""
    ver, header, body = parse_npy_bytes(data)
    if isinstance(header, str):
        raise Skip()
    h = dict(header)
    op = rng.choice(("descr", "descr", "shape", "shape", "fortran", "dropkey", "addkey", "version", "hlen", "text"))
    if op == "descr":
        h["descr"] = rng.choice(NPY_DESCR)
        desc = f"descr={h['descr']!r}"
    elif op == "shape":
        h["shape"] = rng.choice(NPY_SHAPES)
        desc = f"shape={h['shape']!r}"[:80]
    elif op == "fortran":
        h["fortran_order"] = rng.choice((True, 1, "False", None, 2, 0.0))
        desc = f"fortran_order={h['fortran_order']!r}"
    elif op == "dropkey":
        k = rng.choice(list(h) or ["descr"])
        h.pop(k, None)
        desc = f"without {k!r}"
    elif op == "addkey":
        h[rng.choice(("extra", "descr ", 1, "__class__"))] = rng.choice((1, "x", None))
        desc = "an extra key"
    elif op == "version":
        ver = rng.choice(((1, 0), (2, 0), (3, 0), (0, 0), (4, 0), (255, 255), (1, 1)))
        desc = f"version {ver}"
    elif op == "hlen":
        delta = rng.choice((-64, -1, 1, 64, 10_000, 70_000))
        try:
            return build_npy(ver, h, body, delta), f"npy.header length {delta:+d}"
        except Skip:
            delta = 0
        desc = "header length unchanged"
    else:
        text = rng.choice(("[1, 2, 3]", "None", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)",
                           "__import__('os').system('touch ../PWNED')", "{'descr': '<f4', 'fortran_order': False, "
                           "'shape': (" + "(" * 150 + ")" * 150 + ",)}", "{" * 500 + "}" * 500, "'" + "x" * 20000 + "'",
                           "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'descr': '|O'}", "\x00", "é",
                           "{'descr': '<f4', 'fortran_order': False, 'shape': (1e400,)}"))
        return build_npy(ver, text, body), f"npy.header text {text[:50]!r}"
    return build_npy(ver, h, body), f"npy.header {desc}"


def npy_data(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """The array body: truncated, extended, or with NaN/Inf written over elements."""
    ver, header, body = parse_npy_bytes(data)
    if isinstance(header, str):
        raise Skip()
    op = rng.choice(("truncate", "extend", "nonfinite", "nonfinite", "empty"))
    if op == "truncate":
        n = rng.randrange(len(body) + 1) if body else 0
        return build_npy(ver, header, body[:n]), f"npy.data truncated to {n} of {len(body)}"
    if op == "extend":
        return build_npy(ver, header, body + rng.randbytes(rng.choice((1, 8, 4096)))), "npy.data extended"
    if op == "empty":
        return build_npy(ver, header, b""), "npy.data empty"
    descr = header.get("descr")
    try:
        import numpy as np

        dt = np.dtype(descr)
    except Exception:  # noqa: BLE001
        raise Skip() from None
    if dt.kind != "f" or not body:
        raise Skip()
    a = np.frombuffer(body[: len(body) // dt.itemsize * dt.itemsize], dtype=dt).copy()
    if not a.size:
        raise Skip()
    v = rng.choice((np.nan, np.inf, -np.inf))
    k = rng.randrange(a.size)
    a[k] = v
    return build_npy(ver, header, a.tobytes() + body[a.nbytes:]), f"npy.data element {k} = {v}"


def npy_special(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """A whole array numpy writes itself that is not plain numbers: objects (a pickle that writes
    ``../PWNED-*`` when unpickled), strings, records, dates, complex, 0-d, empty, huge-dims."""
    import numpy as np

    bio = io.BytesIO()
    kind = rng.choice(("object", "pickle_payload", "bytes", "unicode", "record", "datetime", "timedelta", "complex",
                       "zerod", "empty", "bigendian", "float16_nan", "int_extremes", "bool", "longdouble", "subarray",
                       "fortran", "noncontig", "uint64"))
    if kind == "object":
        a = np.array([1, "x", None], dtype=object)
    elif kind == "pickle_payload":
        a = np.array([_Payload(ctx.marker)], dtype=object)
    elif kind == "bytes":
        a = np.array([b"ab", b"cd"])
    elif kind == "unicode":
        a = np.array(["ab", "\x1b[2J"])
    elif kind == "record":
        a = np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")])
    elif kind == "datetime":
        a = np.array(["2020-01-01"], dtype="M8[D]")
    elif kind == "timedelta":
        a = np.array([1, 2], dtype="m8[s]")
    elif kind == "complex":
        a = np.array([1 + 2j])
    elif kind == "zerod":
        a = np.array(3.0)
    elif kind == "empty":
        a = np.zeros((0, 3), np.float32)
    elif kind == "bigendian":
        a = np.arange(6, dtype=">f4").reshape(2, 3)
    elif kind == "float16_nan":
        a = np.array([1, np.nan, np.inf], np.float16)
    elif kind == "int_extremes":
        a = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max])
    elif kind == "bool":
        a = np.array([[True, False]])
    elif kind == "longdouble":
        a = np.array([1.0, 2.0], np.longdouble)
    elif kind == "subarray":
        a = np.zeros(2, dtype=("<f4", (2, 3)))
    elif kind == "fortran":
        a = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    elif kind == "noncontig":
        a = np.arange(20, dtype=np.float64)[::3]
    else:
        a = np.array([2**64 - 1], np.uint64)
    np.save(bio, a, allow_pickle=True)
    return bio.getvalue(), f"npy.whole {kind} array ({a.dtype})"


class _Payload:
    """Unpickled, it creates a file (``marker``, relative to the cwd: beside the case folder)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def payload_pickle(marker: str, protocol: int = 2) -> bytes:
    import pickle

    if protocol == 0:  # text protocol: its first byte is neither \x80 nor PK
        return f"cbuiltins\nopen\n(V{marker}\nVw\ntR.".encode()
    return pickle.dumps(_Payload(marker), protocol=protocol)


STRUCTURAL["npy"] = [(5, npy_header), (3, npy_data), (2, npy_special)]


def npz_members(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """A member of the .npz changed as a .npy is, or replaced, added, renamed (and then zip fields)."""
    entries, comment = parse_zip(data)
    npys = [e for e in entries if e.data.startswith(b"\x93NUMPY")]
    op = rng.choice(("member", "member", "member", "add_text", "add_pickle", "add_nested", "rename", "empty"))
    if op == "member" and npys:
        e = rng.choice(npys)
        fn = _weighted(rng, STRUCTURAL["npy"])
        e.data, d = fn(e.data, rng, ctx)
        desc = f"member {e.name.decode('utf-8', 'replace')[:30]}: {d}"
    elif op == "add_text":
        entries.append(ZEntry(b"readme.txt", b"not an array\n"))
        desc = "a text member"
    elif op == "add_pickle":
        entries.append(ZEntry(b"evil.npy", payload_pickle(ctx.marker, rng.choice((0, 2, 4)))))
        desc = "a pickle named evil.npy"
    elif op == "add_nested":
        entries.append(ZEntry(b"inner.npy", data))
        desc = "the archive itself as a member"
    elif op == "rename" and entries:
        e = rng.choice(entries)
        e.name = rng.choice((b".npy", b"a.npy/", b"x", b"../a.npy", b"a" * 300 + b".npy", e.name + e.name))
        desc = f"member renamed {e.name[:40]!r}"
    else:
        entries = [e for e in entries if e.name.endswith(b"/")]
        desc = "no members"
    try:
        out, _ = build_zip(entries, comment)
    except struct.error:
        raise Skip() from None
    return out, f"npz.{op} {desc}"


STRUCTURAL["npz"] = [(6, npz_members), (3, zip_entries), (2, zip_fields)]


# ---- images ----------------------------------------------------------------------------------

def _png_chunks(data: bytes) -> list[list]:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise Skip()
    out, i = [], 8
    while i + 8 <= len(data):
        n, typ = struct.unpack_from(">I4s", data, i)
        body = data[i + 8:i + 8 + n]
        crc = data[i + 8 + n:i + 12 + n]
        out.append([typ, body, crc])
        i += 12 + n
        if typ == b"IEND":
            break
    if not out:
        raise Skip()
    return out


def _png_build(chunks: list[list], fix_crc: bool = True, tail: bytes = b"") -> bytes:
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for c in chunks:
        typ, body = c[0], c[1]
        length = c[3] if len(c) > 3 else len(body)
        crc = struct.pack(">I", zlib.crc32(typ + body) & 0xFFFFFFFF) if fix_crc or len(c[2]) != 4 else c[2]
        out += struct.pack(">I", length & 0xFFFFFFFF) + typ + body + crc
    return bytes(out + tail)


def _chunk(typ: bytes, body: bytes) -> list:
    return [typ, body, b""]


def exif_blob(rng: random.Random) -> tuple[bytes, str]:
    """A TIFF-structured EXIF block with an Orientation (0x0112) of an odd type, count or value,
    or a damaged IFD (counts past the end, loops, pointers to garbage)."""
    endian = rng.choice(("<", ">"))
    typ = rng.choice((3, 3, 3, 4, 2, 5, 8, 7, 1, 9, 10, 11, 12, 0, 13, 99))
    count = rng.choice((1, 1, 1, 0, 2, 4, 0x7FFFFFFF))
    value = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 255, 65535, 0xFFFFFFFF))
    kind = rng.choice(("orientation", "orientation", "orientation", "loop", "huge_count", "exif_ifd_loop", "gps_garbage",
                       "past_end", "xmp_in_exif"))
    head = (b"II*\x00" if endian == "<" else b"MM\x00*") + struct.pack(endian + "I", 8)
    entries = []
    if kind in ("orientation", "xmp_in_exif"):
        entries.append((0x0112, typ, count, value))
    elif kind == "loop":
        entries.append((0x0112, 3, 1, 6))
    elif kind == "huge_count":
        entries.append((0x010F, 2, 0x7FFFFFFF, 8))
    elif kind == "exif_ifd_loop":
        entries.append((0x8769, 4, 1, 8))
    elif kind == "gps_garbage":
        entries.append((0x8825, 4, 1, 0xFFFFFF))
    else:
        entries.append((0x0112, 3, 1000, 4096))
    if kind == "xmp_in_exif":
        entries.append((0x02BC, 1, 40, 8))
    ifd = struct.pack(endian + "H", len(entries))
    for tag, t, c, v in entries:
        if t == 3 and c == 1:
            val = struct.pack(endian + "HH", v & 0xFFFF, 0)
        else:
            val = struct.pack(endian + "I", v & 0xFFFFFFFF)
        ifd += struct.pack(endian + "HHI", tag, t & 0xFFFF, c & 0xFFFFFFFF) + val
    ifd += struct.pack(endian + "I", 8 if kind == "loop" else 0)
    return head + ifd, f"exif {kind} type={typ} count={count} value={value} {'LE' if endian == '<' else 'BE'}"


XMP = ('<?xpacket begin="\ufeff"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
       'syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="{o}"/></rdf:RDF>'
       '</x:xmpmeta><?xpacket end="w"?>')


def png_chunks(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """PNG chunks: CRC, length, type, order, IHDR fields (dims up to a decompression bomb, depth,
    colour type, interlace), added eXIf/iCCP/zTXt/iTXt/tRNS/PLTE/acTL chunks, an IDAT bomb."""
    chunks = _png_chunks(data)
    op = rng.choice(("crc", "length", "type", "drop", "dup", "swap", "ihdr", "ihdr", "ihdr", "add", "add", "add",
                     "idat_bomb", "after_iend", "split_idat"))
    fix = True
    tail = b""
    i = rng.randrange(len(chunks))
    if op == "crc":
        chunks[i][2] = b"\x00\x00\x00\x00"
        fix = False
        desc = f"bad CRC on {chunks[i][0]!r}"
    elif op == "length":
        chunks[i].append(rng.choice((0, 1, len(chunks[i][1]) + 1, max(0, len(chunks[i][1]) - 1), 0x7FFFFFFF, 0xFFFFFFFF)))
        desc = f"length of {chunks[i][0]!r} = {chunks[i][3]}"
    elif op == "type":
        old = chunks[i][0]
        chunks[i][0] = rng.choice((b"abCD", b"IEND", b"IHDR", b"idat", b"\x00\x00\x00\x00", b"fdAT", b"PLTE", b"IDAT"))
        desc = f"chunk {old!r} renamed {chunks[i][0]!r}"
    elif op == "drop":
        desc = f"chunk {chunks[i][0]!r} removed"
        del chunks[i]
    elif op == "dup":
        chunks.insert(i, list(chunks[i]))
        desc = f"chunk {chunks[i][0]!r} twice"
    elif op == "swap" and len(chunks) > 1:
        j = rng.randrange(len(chunks))
        chunks[i], chunks[j] = chunks[j], chunks[i]
        desc = f"chunks {i} and {j} swapped"
    elif op == "ihdr" and chunks[0][0] == b"IHDR" and len(chunks[0][1]) == 13:
        w, h, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", chunks[0][1])
        field = rng.choice(("w", "h", "wh", "depth", "ctype", "comp", "filt", "inter"))
        if field in ("w", "h", "wh"):
            v = rng.choice((0, 1, 65535, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 20000, 13400, 100_000))
            w = v if field in ("w", "wh") else w
            h = v if field in ("h", "wh") else h
        elif field == "depth":
            depth = rng.choice((0, 1, 2, 3, 4, 8, 16, 32, 255))
        elif field == "ctype":
            ctype = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 255))
        elif field == "comp":
            comp = rng.choice((1, 255))
        elif field == "filt":
            filt = rng.choice((1, 255))
        else:
            inter = rng.choice((1, 2, 255))
        chunks[0][1] = struct.pack(">IIBBBBB", w & 0xFFFFFFFF, h & 0xFFFFFFFF, depth, ctype, comp, filt, inter)
        desc = f"IHDR {field}: {w}x{h} depth {depth} colour {ctype} comp {comp} filter {filt} interlace {inter}"
    elif op == "add":
        kind = rng.choice(("eXIf", "iCCP", "zTXt", "iTXt", "tRNS", "PLTE", "acTL", "sBIT", "gAMA", "pHYs", "xmp", "tEXt"))
        if kind == "eXIf":
            body, d = exif_blob(rng)
        elif kind == "iCCP":
            body = b"icc\x00\x00" + rng.choice((zlib.compress(bytes(50 << 20)), b"not zlib", zlib.compress(b"\x00" * 128)))
            d = "ICC profile"
        elif kind == "zTXt":
            body = b"Comment\x00\x00" + rng.choice((zlib.compress(b"a" * (64 << 20)), b"garbage"))
            d = "compressed text"
        elif kind == "xmp":
            kind = "iTXt"
            body = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP.format(o=rng.choice((6, 9, "x", 0, 3))).encode()
            d = "XMP with tiff:Orientation"
        elif kind == "iTXt":
            body = b"Title\x00" + rng.choice((b"\x01\x00", b"\x00\x00")) + b"xx\x00\x00" + rng.choice((b"\xff\xfe", b"ok"))
            d = "international text"
        elif kind == "tRNS":
            body = rng.randbytes(rng.choice((0, 1, 2, 6, 300)))
            d = f"{len(body)} bytes of transparency"
        elif kind == "PLTE":
            body = rng.randbytes(rng.choice((0, 3, 4, 768, 771)))
            d = f"palette of {len(body)} bytes"
        elif kind == "acTL":
            body = struct.pack(">II", rng.choice((0, 1, 2, 0x7FFFFFFF)), rng.choice((0, 1, 0xFFFFFFFF)))
            d = "animation control"
        else:
            body = rng.randbytes(rng.choice((0, 1, 4, 9, 100)))
            d = f"{len(body)} random bytes"
        at = rng.randrange(1, len(chunks) + 1) if len(chunks) > 1 else 1
        chunks.insert(at, _chunk(kind.encode(), body))
        desc = f"{kind} chunk added at {at}: {d}"
    elif op == "idat_bomb" and chunks[0][0] == b"IHDR":
        side = rng.choice((9000, 13400, 14000, 17000, 20000, 100_000))
        ctype = rng.choice((0, 2))
        chunks[0][1] = struct.pack(">IIBBBBB", side, side, 8, ctype, 0, 0, 0)
        rows = 16  # Pillow takes a stream that ends early as the whole image, the rest black
        stream = zlib.compress(bytes((1 + side * (3 if ctype == 2 else 1)) * rows), 9)
        chunks = [chunks[0]] + [c for c in chunks[1:] if c[0] not in (b"IDAT", b"PLTE", b"tRNS")]
        chunks.insert(1, _chunk(b"IDAT", stream))
        desc = f"{side}x{side} {'RGB' if ctype == 2 else 'grey'} image of zeros, {rows} rows stored ({len(stream)} bytes)"
    elif op == "after_iend":
        tail = rng.choice((b"\x00" * 100, data, rng.randbytes(50)))
        desc = f"{len(tail)} bytes after IEND"
    else:
        idats = [k for k, c in enumerate(chunks) if c[0] == b"IDAT"]
        if not idats:
            raise Skip()
        k = idats[0]
        body = chunks[k][1]
        cut = rng.randrange(len(body) + 1)
        chunks[k:k + 1] = [_chunk(b"IDAT", body[:cut]), _chunk(rng.choice((b"tEXt", b"IDAT")), b"x"), _chunk(b"IDAT", body[cut:])]
        desc = f"IDAT split at {cut}"
    return _png_build(chunks, fix, tail), f"png.{op} {desc}"


def _jpeg_segments(data: bytes) -> list[list]:
    if not data.startswith(b"\xff\xd8"):
        raise Skip()
    segs, i = [], 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise Skip()
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data up to EOI
            (n,) = struct.unpack_from(">H", data, i + 2)
            segs.append([marker, data[i + 4:i + 2 + n], data[i + 2 + n:]])
            return segs
        (n,) = struct.unpack_from(">H", data, i + 2)
        segs.append([marker, data[i + 4:i + 2 + n], b""])
        i += 2 + n
    raise Skip()


def _jpeg_build(segs: list[list]) -> bytes:
    out = bytearray(b"\xff\xd8")
    for marker, body, tail in segs:
        n = len(body) + 2
        out += bytes((0xFF, marker)) + struct.pack(">H", n & 0xFFFF) + body + tail
    return bytes(out)


def jpeg_segments(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """JPEG segments: SOF dims, precision, components, sampling, the SOF kind (progressive, lossless,
    arithmetic), quantisation and Huffman tables, APP1 EXIF/XMP, the scan, EOI."""
    segs = _jpeg_segments(data)
    sofs = [s for s in segs if s[0] in (0xC0, 0xC1, 0xC2)]
    op = rng.choice(("sof", "sof", "sof", "sofkind", "dqt", "dht", "exif", "exif", "xmp", "sos", "scan", "drop", "dup",
                     "dri", "app_len", "icc"))
    if op in ("sof", "sofkind") and sofs:
        s = sofs[0]
        b = bytearray(s[1])
        if op == "sofkind":
            s[0] = rng.choice((0xC1, 0xC2, 0xC3, 0xC5, 0xC9, 0xCA, 0xCB, 0xCF, 0xC8, 0xCC))
            desc = f"SOF marker {s[0]:#x}"
        else:
            field = rng.choice(("precision", "h", "w", "hw", "ncomp", "sampling", "qtable", "compid"))
            if field == "precision":
                b[0] = rng.choice((0, 1, 12, 16, 255))
            elif field in ("h", "w", "hw"):
                v = rng.choice((0, 1, 65535, 30000))
                if field in ("h", "hw"):
                    struct.pack_into(">H", b, 1, v)
                if field in ("w", "hw"):
                    struct.pack_into(">H", b, 3, v)
            elif field == "ncomp":
                b[5] = rng.choice((0, 2, 4, 5, 255))
            elif field == "sampling" and len(b) > 7:
                b[7] = rng.choice((0x00, 0xFF, 0x44, 0x14, 0x41, 0x31))
            elif field == "qtable" and len(b) > 8:
                b[8] = rng.choice((3, 4, 255))
            elif len(b) > 6:
                b[6] = rng.choice((0, 255, b[9] if len(b) > 9 else 1))
            s[1] = bytes(b)
            desc = f"SOF {field}"
    elif op == "dqt":
        qs = [s for s in segs if s[0] == 0xDB] or [[0xDB, b"", b""]]
        b = bytearray(qs[0][1] or b"\x00")
        b[0] = rng.choice((0x10, 0x04, 0xFF, 0x13))
        qs[0][1] = bytes(b[:rng.choice((len(b), 1, 33))])
        desc = "quantisation table header/size"
    elif op == "dht":
        hs = [s for s in segs if s[0] == 0xC4]
        if not hs:
            raise Skip()
        b = bytearray(hs[0][1])
        k = rng.randrange(1, min(17, len(b)))
        b[k] = rng.choice((0xFF, 0x00, 0x80))
        hs[0][1] = bytes(b)
        desc = f"Huffman count {k}"
    elif op == "exif":
        blob, d = exif_blob(rng)
        segs.insert(0, [0xE1, b"Exif\x00\x00" + blob, b""])
        segs[:] = [s for k, s in enumerate(segs) if not (k > 0 and s[0] == 0xE1 and s[1].startswith(b"Exif"))]
        desc = d
    elif op == "xmp":
        segs.insert(0, [0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP.format(o=rng.choice((6, 9, "x", 3))).encode(), b""])
        desc = "XMP with tiff:Orientation"
    elif op == "icc":
        segs.insert(0, [0xE2, b"ICC_PROFILE\x00" + bytes((rng.choice((0, 1, 2)), rng.choice((0, 1, 255)))) + rng.randbytes(64), b""])
        desc = "ICC profile chunk"
    elif op == "sos":
        s = segs[-1]
        b = bytearray(s[1] or b"\x00")
        b[0] = rng.choice((0, 4, 255))
        s[1] = bytes(b)
        desc = f"scan components {b[0]}"
    elif op == "scan":
        s = segs[-1]
        cut = rng.randrange(len(s[2]) + 1)
        s[2] = rng.choice((s[2][:cut], s[2][:cut] + b"\xff\xd0" * 10 + s[2][cut:], s[2].replace(b"\xff\xd9", b"")))
        desc = "entropy-coded data cut, restart markers or EOI removed"
    elif op == "drop" and len(segs) > 1:
        k = rng.randrange(len(segs) - 1)
        desc = f"segment {segs[k][0]:#x} removed"
        del segs[k]
    elif op == "dup" and len(segs) > 1:
        k = rng.randrange(len(segs) - 1)
        segs.insert(k, list(segs[k]))
        desc = f"segment {segs[k][0]:#x} twice"
    elif op == "dri":
        segs.insert(len(segs) - 1, [0xDD, struct.pack(">H", rng.choice((0, 1, 65535))), b""])
        desc = "restart interval"
    else:
        k = rng.randrange(len(segs))
        segs[k][1] = segs[k][1] + rng.randbytes(rng.choice((1, 100)))
        desc = f"segment {segs[k][0]:#x} longer"
    return _jpeg_build(segs), f"jpeg.{op} {desc}"


def gif_fields(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """GIF screen and image descriptors, colour table flags, LZW code size, blocks, trailer."""
    if not data.startswith(b"GIF8") or len(data) < 20:
        raise Skip()
    b = bytearray(data)
    op = rng.choice(("screen", "flags", "lzw", "image_desc", "trailer", "block", "loop"))
    if op == "screen":
        struct.pack_into("<HH", b, 6, rng.choice((0, 1, 65535)), rng.choice((0, 1, 65535)))
    elif op == "flags":
        b[10] = rng.choice((0x00, 0xFF, 0x80, 0x87, 0x07))
    else:
        k = data.find(b"\x2c", 13)
        if k < 0 or k + 11 > len(b):
            raise Skip()
        if op == "lzw":
            b[k + 10] = rng.choice((0, 1, 12, 13, 255))
        elif op == "image_desc":
            struct.pack_into("<HHHH", b, k + 1, rng.choice((0, 65535)), rng.choice((0, 65535)), rng.choice((0, 1, 65535)),
                             rng.choice((0, 1, 65535)))
        elif op == "trailer":
            b = b.rstrip(b";")
        elif op == "block" and k + 12 <= len(b):
            b[k + 11] = rng.choice((0, 255))
        else:
            b[k:k] = b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + bytes((rng.randrange(256), rng.randrange(256))) + b"\x00"
    return bytes(b), f"gif.{op}"


def bmp_fields(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """BMP header fields: data offset, header size, width and height (negative: top-down), planes,
    bit count, compression, image size, palette count."""
    if not data.startswith(b"BM") or len(data) < 54:
        raise Skip()
    b = bytearray(data)
    field, off, fmt, values = rng.choice((
        ("offset", 10, "<I", (0, 14, 54, 0xFFFFFFFF, len(data) + 10)),
        ("header_size", 14, "<I", (12, 16, 40, 52, 56, 64, 108, 124, 0, 0xFFFFFFFF)),
        ("width", 18, "<i", (0, 1, -1, 2**31 - 1, -2**31, 30000)),
        ("height", 22, "<i", (0, 1, -1, 2**31 - 1, -2**31, -30000)),
        ("planes", 26, "<H", (0, 2, 0xFFFF)),
        ("bits", 28, "<H", (0, 1, 2, 3, 4, 8, 15, 16, 24, 32, 48, 64, 0xFFFF)),
        ("compression", 30, "<I", (0, 1, 2, 3, 4, 5, 6, 11, 0xFFFFFFFF)),
        ("image_size", 34, "<I", (0, 1, 0xFFFFFFFF)),
        ("colours", 46, "<I", (0, 1, 256, 257, 0xFFFFFF, 0xFFFFFFFF)),
    ))
    v = rng.choice(values)
    struct.pack_into(fmt, b, off, v)
    return bytes(b), f"bmp.{field}={v}"


TIFF_TAGS = {256: "width", 257: "height", 258: "bits", 259: "compression", 262: "photometric", 273: "strip_offsets",
             274: "orientation", 277: "samples", 278: "rows_per_strip", 279: "strip_bytes", 284: "planar",
             317: "predictor", 320: "colormap", 338: "extra_samples", 339: "sample_format", 34665: "exif_ifd"}
TIFF_VALUES = {256: (0, 1, 65535, 0xFFFFFFFF, 30000), 257: (0, 1, 65535, 0xFFFFFFFF, 30000), 258: (0, 1, 2, 4, 7, 12, 16, 32, 64, 255),
               259: (1, 2, 3, 4, 5, 6, 7, 8, 32773, 32946, 34712, 34887, 50000, 0xFFFF), 262: (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 32844, 99),
               273: (0, 8, 0xFFFFFFFF), 274: (0, 1, 5, 8, 9, 255, 65535), 277: (0, 1, 2, 3, 4, 5, 255, 65535),
               278: (0, 1, 0xFFFFFFFF), 279: (0, 1, 0xFFFFFFFF), 284: (0, 1, 2, 3), 317: (1, 2, 3, 4), 320: (0, 8),
               338: (0, 1, 2, 99), 339: (1, 2, 3, 4, 5, 6, 99), 34665: (0, 8, 0xFFFFFFFF)}


def tiff_ifd(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """TIFF IFD entries: tag values (dims, bits, compression, photometric, strips, orientation,
    samples, sample format), entry types and counts, the next-IFD pointer (a loop), new tags."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        raise Skip()
    e = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(e + "I", data, 4)
    if ifd + 2 > len(data):
        raise Skip()
    (n,) = struct.unpack_from(e + "H", data, ifd)
    if ifd + 2 + 12 * n + 4 > len(data):
        raise Skip()
    b = bytearray(data)
    entries = {struct.unpack_from(e + "H", data, ifd + 2 + 12 * k)[0]: ifd + 2 + 12 * k for k in range(n)}
    op = rng.choice(("value", "value", "value", "type", "count", "next", "add"))
    if op == "value":
        tag = rng.choice([t for t in entries if t in TIFF_VALUES] or list(entries))
        at = entries[tag]
        typ = struct.unpack_from(e + "H", data, at + 2)[0]
        v = rng.choice(TIFF_VALUES.get(tag, (0, 1, 0xFFFF)))
        if typ == 3:
            struct.pack_into(e + "HH", b, at + 8, v & 0xFFFF, 0)
        else:
            struct.pack_into(e + "I", b, at + 8, v & 0xFFFFFFFF)
        return bytes(b), f"tiff.{TIFF_TAGS.get(tag, tag)}={v}"
    if op == "type":
        tag = rng.choice(list(entries))
        v = rng.choice((0, 1, 2, 5, 7, 11, 12, 13, 16, 99))
        struct.pack_into(e + "H", b, entries[tag] + 2, v)
        return bytes(b), f"tiff.type of {TIFF_TAGS.get(tag, tag)}={v}"
    if op == "count":
        tag = rng.choice(list(entries))
        v = rng.choice((0, 2, 3, 1000, 0x7FFFFFFF, 0xFFFFFFFF))
        struct.pack_into(e + "I", b, entries[tag] + 4, v)
        return bytes(b), f"tiff.count of {TIFF_TAGS.get(tag, tag)}={v}"
    if op == "next":
        v = rng.choice((ifd, 8, 0xFFFFFFFF, len(data) - 2))
        struct.pack_into(e + "I", b, ifd + 2 + 12 * n, v)
        return bytes(b), f"tiff.next IFD={v}"
    tag = rng.choice((274, 34665, 34853, 330, 50706, 273, 320))
    v = rng.choice((0, 6, 8, ifd, 0xFFFFFFFF))
    entry = struct.pack(e + "HHI", tag, rng.choice((3, 4, 13)), 1) + struct.pack(e + "I", v)
    struct.pack_into(e + "H", b, ifd, n + 1)
    b[ifd + 2 + 12 * n:ifd + 2 + 12 * n] = entry  # shifts what follows: offsets past it now point 12 bytes early
    return bytes(b), f"tiff.add tag {tag}={v}"


def webp_chunks(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """WebP RIFF: the RIFF size, VP8X flags and canvas, ALPH/EXIF/XMP/ANIM chunks, chunk sizes."""
    if not (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
        raise Skip()
    b = bytearray(data)
    op = rng.choice(("riff_size", "chunk_size", "vp8x", "vp8x", "exif", "xmp", "anim", "alph"))
    if op == "riff_size":
        struct.pack_into("<I", b, 4, rng.choice((0, 4, 0xFFFFFFFF, len(data))))
        return bytes(b), "webp.RIFF size"
    if op == "chunk_size":
        struct.pack_into("<I", b, 16, rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF)))
        return bytes(b), "webp.first chunk size"
    body = data[12:]
    chunk = b""
    if op == "vp8x":
        flags = rng.choice((0x00, 0x08, 0x10, 0x02, 0x20, 0x04, 0xFF))
        w, h = rng.choice((1, 16383, 0xFFFFFF)), rng.choice((1, 16383, 0xFFFFFF))
        vp8x = struct.pack("<I", flags) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        chunk = b"VP8X" + struct.pack("<I", 10) + vp8x
        desc = f"VP8X flags {flags:#x} canvas {w}x{h}"
    elif op == "exif":
        blob, desc = exif_blob(rng)
        chunk = b"EXIF" + struct.pack("<I", len(blob)) + blob + b"\x00" * (len(blob) & 1)
    elif op == "xmp":
        x = XMP.format(o=rng.choice((6, 9, "x"))).encode()
        chunk = b"XMP " + struct.pack("<I", len(x)) + x + b"\x00" * (len(x) & 1)
        desc = "XMP"
    elif op == "anim":
        chunk = b"ANIM" + struct.pack("<I", 6) + rng.randbytes(6)
        desc = "ANIM chunk"
    else:
        a = rng.randbytes(rng.choice((1, 10, 100)))
        chunk = b"ALPH" + struct.pack("<I", len(a)) + a + b"\x00" * (len(a) & 1)
        desc = "ALPH chunk"
    out = b"WEBP" + chunk + body
    return b"RIFF" + struct.pack("<I", len(out)) + out, f"webp.{op} {desc}"


def image_resave(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """The seed's pixels written again by Pillow: another format, an odd mode, or with an EXIF
    block or orientation tag of an odd value."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im = im.copy()
    except Exception:  # noqa: BLE001
        raise Skip() from None
    op = rng.choice(("exif", "exif", "mode", "format"))
    fmt = rng.choice(("PNG", "JPEG", "WEBP", "TIFF"))
    kw: dict[str, Any] = {}
    if op == "exif":
        if rng.random() < 0.5:
            blob, desc = exif_blob(rng)
            kw["exif"] = b"Exif\x00\x00" + blob if fmt != "PNG" else blob
        else:
            ex = Image.Exif()
            v = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 65535))
            ex[0x0112] = v
            kw["exif"] = ex.tobytes()
            desc = f"orientation {v}"
    elif op == "mode":
        mode = rng.choice(("1", "L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "I;16",
                           "I;16B", "La", "RGBa"))
        try:
            im = im.convert(mode)
        except Exception:  # noqa: BLE001
            raise Skip() from None
        desc = f"mode {mode}"
    else:
        fmt = rng.choice(("BMP", "GIF", "ICO", "PCX", "TGA", "SGI", "QOI", "PPM", "DDS", "IM", "SPIDER", "MSP", "XBM",
                          "JPEG2000", "TIFF", "WEBP", "EPS", "PDF", "BLP", "ICNS", "PALM"))
        desc = "format"
    bio = io.BytesIO()
    try:
        im.save(bio, format=fmt, **kw)
    except Exception:  # noqa: BLE001 - that format cannot hold this mode
        raise Skip() from None
    return bio.getvalue(), f"image.resave {fmt} {desc}"


IMAGE_MAGICS = [b"8BPS\x00\x01\x00\x00\x00\x00\x00\x00\x00\x03", b"\x59\xa6\x6a\x95", b"\x00\x00\x01\x00\x01\x00",
                b"\x00\x00\x02\x00\x01\x00", b"icns", b"P7\nWIDTH 4\n", b"/* XPM */\n", b"SIMPLE  =                    T",
                b"\xb1\x68\xde\x3a", b"GRIB", b"BUFR", b"\x89HDF\r\n\x1a\n", b"DDS \x7c\x00\x00\x00", b"BLP1", b"BLP2",
                b"\x01\xda\x01\x01", b"qoif", b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"DanM", b"LinS",
                b"\x0a\x05\x01\x08", b"%!PS-Adobe-3.0 EPSF-3.0\n", b"\xc5\xd0\xd3\xc6", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
                b"\xd7\xcd\xc6\x9a", b"\x01\x00\x00\x00", b"FTEX", b"GIMP", b"\x00\x00\x00\x01\x00\x00\x00\x04",
                b"P6\n4 4\n65535\n", b"P5\n4 4\n0\n", b"Pf\n4 4\n-1.0\n", b"\x00\x00\x0a\x00", b"\xff\xd8\xff\xe0",
                b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00", b"RIFF\x00\x00\x00\x00WEBPVP8L", b"FORM", b"\x00PNG",
                b"#define im_width 4\n#define im_height 4\n", b"\x1a\x00", b"IM\x00", b"Image type: ", b"\x0a\x02\x01\x08",
                b"\xe3\x10\x00\x01\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
                b"\x80\x2e\x00", b"\x00\x0c\x00", b"\x00\x00\x00\x1cftypavif", b"\x00\x00\x00\x18ftypheic"]


def image_magic(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """The seed's head replaced by another format's magic (a PSD, SUN, ICO, ICNS, FITS, DCX, DDS, BLP,
    SGI, QOI, JPEG 2000, MSP, PCX, EPS, OLE, PPM/PFM, TIFF/BigTIFF, AVIF... header): the rest is read
    by a parser that did not expect it."""
    magic = rng.choice(IMAGE_MAGICS)
    keep = rng.choice((0, len(magic), 2 * len(magic)))
    return magic + data[keep:], f"image.magic {magic[:16]!r} over {keep} bytes"


def image_structure(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    for magic, fn in ((b"\x89PNG", png_chunks), (b"\xff\xd8", jpeg_segments), (b"GIF8", gif_fields), (b"BM", bmp_fields),
                      (b"II*\x00", tiff_ifd), (b"MM\x00*", tiff_ifd), (b"RIFF", webp_chunks)):
        if data.startswith(magic):
            return fn(data, rng, ctx)
    raise Skip()


STRUCTURAL["image"] = [(7, image_structure), (2, image_resave), (2, image_magic)]


# ---- torch.export .pt2 programs: the archive's members ----------------------------------------

def _pt2_parts(data: bytes) -> tuple[list[ZEntry], str, dict[str, ZEntry]]:
    entries, _ = parse_zip(data)
    if not entries:
        raise Skip()
    top = entries[0].name.split(b"/", 1)[0].decode("utf-8", "replace")
    by_rel = {e.name.decode("utf-8", "replace").split("/", 1)[-1]: e for e in entries}
    return entries, top, by_rel


def _pt2_build(entries: list[ZEntry]) -> bytes:
    return build_zip(entries, align=64)[0]


def pt2_members(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """A member of the program changed: its JSON (model, payload configs) as a document, its text
    members (format, version, byte order), a raw weight truncated or grown, a member removed."""
    entries, top, by_rel = _pt2_parts(data)
    op = rng.choice(("json", "json", "json", "text", "weight", "drop", "rename"))
    if op == "json":
        jsons = [r for r in by_rel if r.endswith(".json")]
        if not jsons:
            raise Skip()
        rel = rng.choice(jsons)
        try:
            doc = json.loads(by_rel[rel].data)
        except ValueError:
            raise Skip() from None
        doc, d = json_doc_op(doc, rng)
        by_rel[rel].data = _dumps(doc).encode()
        return _pt2_build(entries), f"pt2.json {rel}: {d}"
    if op == "text":
        rel = rng.choice([r for r in ("archive_format", "archive_version", "byteorder", ".data/version") if r in by_rel] or [""])
        if not rel:
            raise Skip()
        by_rel[rel].data = rng.choice((b"", b"pt3", b"abc", b"-1", b"99999", b"big", b"0", b"1" * 5000, b"\xff"))
        return _pt2_build(entries), f"pt2.text {rel} = {by_rel[rel].data[:20]!r}"
    if op == "weight":
        ws = [r for r in by_rel if r.startswith(("data/weights/weight_", "data/constants/"))
              and not r.endswith(".json")]
        if not ws:
            raise Skip()
        rel = rng.choice(ws)
        e = by_rel[rel]
        e.data = rng.choice((e.data[:len(e.data) // 2], e.data[:-1], e.data + b"\x00" * 4, b"", e.data * 1000,
                             struct.pack("<f", float("nan")) * (len(e.data) // 4)))
        return _pt2_build(entries), f"pt2.weight {rel} now {len(e.data)} bytes"
    if op == "drop":
        e = rng.choice(entries)
        entries.remove(e)
        return _pt2_build(entries), f"pt2.drop {e.name.decode('utf-8', 'replace')}"
    e = rng.choice(entries)
    old = e.name
    e.name = rng.choice((b"other/" + old.split(b"/", 1)[-1], old.split(b"/", 1)[-1], old + b".bak", old.upper()))
    return _pt2_build(entries), f"pt2.rename {old.decode('utf-8', 'replace')} -> {e.name.decode('utf-8', 'replace')}"


def pt2_hostile(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """Members torch.export.load would unpickle (with weights_only=False), each holding a pickle that
    writes ``../PWNED-*`` when it runs: the sample inputs, a weight marked use_pickle, a legacy weights
    file, an opaque or custom object marked raw, a shadow copy under a second top folder, a duplicate
    member name, a second model. The vetting must refuse each (a SecurityError), or torch must not run it."""
    entries, top, by_rel = _pt2_parts(data)
    proto = rng.choice((0, 2, 2, 4))
    evil = payload_pickle(ctx.marker, proto)
    op = rng.choice(("sample_inputs", "use_pickle", "legacy", "opaque_raw", "custom_raw", "shadow_prefix", "shadow_prefix",
                     "duplicate", "duplicate", "second_model", "extra", "opaque_raw"))
    t = top.encode()
    if op == "sample_inputs" and "data/sample_inputs/model.pt" in by_rel:
        by_rel["data/sample_inputs/model.pt"].data = evil
    elif op == "use_pickle" and "data/weights/model_weights_config.json" in by_rel:
        cfg_e = by_rel["data/weights/model_weights_config.json"]
        cfg = json.loads(cfg_e.data)
        fqn = rng.choice(list(cfg["config"]))
        cfg["config"][fqn]["use_pickle"] = True
        by_rel["data/weights/" + cfg["config"][fqn]["path_name"]].data = evil
        cfg_e.data = json.dumps(cfg).encode()
    elif op == "legacy":
        entries.append(ZEntry(t + b"/data/weights/model.pt", evil))
    elif op in ("opaque_raw", "custom_raw") and "data/constants/model_constants_config.json" in by_rel:
        name = "opaque_obj_0" if op == "opaque_raw" else "custom_obj_0"
        wcfg = json.loads(by_rel["data/weights/model_weights_config.json"].data)["config"]
        meta = dict(next(iter(wcfg.values()))) if wcfg else {}
        tensor_meta = meta.get("tensor_meta") or {"dtype": 7, "sizes": [{"as_int": 1}], "requires_grad": False,
                                                  "device": {"type": "cpu"}, "strides": [{"as_int": 1}],
                                                  "storage_offset": {"as_int": 0}, "layout": 5}
        cfg_e = by_rel["data/constants/model_constants_config.json"]
        cfg = json.loads(cfg_e.data)
        cfg.setdefault("config", {})["evil"] = {"path_name": name, "is_param": False, "use_pickle": False,
                                                "tensor_meta": tensor_meta}
        cfg_e.data = json.dumps(cfg).encode()
        entries.append(ZEntry(t + b"/data/constants/" + name.encode(), evil + b"\x00" * ((-len(evil)) % 8)))
    elif op == "shadow_prefix" and "data/sample_inputs/model.pt" in by_rel:
        good = by_rel["data/sample_inputs/model.pt"]
        entries.append(ZEntry(b"zz/data/sample_inputs/model.pt", good.data))
        good.data = evil
    elif op == "duplicate" and "data/sample_inputs/model.pt" in by_rel:
        good = by_rel["data/sample_inputs/model.pt"]
        bad = ZEntry(good.name, evil)
        k = entries.index(good)
        first = rng.random() < 0.5
        entries.insert(k if first else k + 1, bad)
        op += " (the pickle first)" if first else " (the pickle last)"
    elif op == "second_model" and "models/model.json" in by_rel:
        entries.append(ZEntry(t + b"/models/evil.json", by_rel["models/model.json"].data))
        entries.append(ZEntry(t + b"/data/sample_inputs/evil.pt", evil))
    else:
        entries.append(ZEntry(t + b"/extra/evil.pkl", evil))
        op = "extra"
    return _pt2_build(entries), f"pt2.hostile {op} (pickle protocol {proto})"


STRUCTURAL["pt2"] = [(5, pt2_members), (3, pt2_hostile), (2, zip_entries), (1, zip_fields)]


# ---- ONNX models: protobuf fields through the onnx API -----------------------------------------

def _strings_of(model: Any) -> list[str]:
    """Every non-empty string field value of the model (names, op types, domains, doc strings...)."""
    from google.protobuf.descriptor import FieldDescriptor as F

    out, stack = [], [model]
    while stack and len(out) < 5000:
        m = stack.pop()
        for fd, value in m.ListFields():
            vals = value if fd.is_repeated else [value]
            if fd.type == F.TYPE_STRING:
                out += [v for v in vals if v and isinstance(v, str)]
            elif fd.type == F.TYPE_MESSAGE:
                stack += list(vals)
    return out


def onnx_bytes(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """A text field made bytes that are not UTF-8 (same length: the protobuf stays well formed)."""
    import onnx

    try:
        model = onnx.load_from_string(data)
    except Exception:  # noqa: BLE001
        raise Skip() from None
    names = sorted(set(_strings_of(model)))
    if not names:
        raise Skip()
    name = rng.choice(names)
    raw = name.encode()
    if len(raw) > 127:
        raise Skip()
    bad = (rng.choice(BAD_UTF8) * len(raw))[:len(raw)]
    if len(raw) >= 2 and rng.random() < 0.5:
        bad = raw[:-1] + b"\xff"
    every = rng.random() < 0.5
    field = bytes([len(raw)]) + raw  # the string as protobuf writes it: its length, then its bytes
    out = data.replace(field, field[:1] + bad) if every else data.replace(field, field[:1] + bad, 1)
    return out, f"onnx.not-utf8 {name[:40]!r} -> {bad[:12]!r} ({'every' if every else 'first'} occurrence)"


def _nested_if(depth: int) -> Any:
    from onnx import TensorProto, helper

    inner = helper.make_graph([helper.make_node("Identity", ["x"], ["y0"])], "g0", [],
                              [helper.make_tensor_value_info("y0", TensorProto.FLOAT, [1, 4])])
    for k in range(1, depth):
        node = helper.make_node("If", ["c"], [f"y{k}"], then_branch=inner, else_branch=helper.make_graph(
            [helper.make_node("Identity", ["x"], [f"e{k}"])], f"e{k}", [],
            [helper.make_tensor_value_info(f"e{k}", TensorProto.FLOAT, [1, 4])]))
        inner = helper.make_graph([node], f"g{k}", [], [helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, [1, 4])])
    return inner


def onnx_fields(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """One protobuf field of the model: element types, dims (negative, huge, symbolic), initializers
    (types, dims that do not match the data, external data pointing out of the folder), the graph
    removed or emptied, IR and opset versions, subgraphs nested deep, a function calling itself,
    metadata (edgeship's preprocess and labels JSON), sequence and map types nested deep."""
    import onnx
    from onnx import TensorProto, helper

    try:
        m = onnx.load_from_string(data)
    except Exception:  # noqa: BLE001
        raise Skip() from None
    g = m.graph
    op = rng.choice(("elem_type", "elem_type", "dim", "dim", "dim", "init_type", "init_dims", "init_data", "external",
                     "external", "no_graph", "empty_graph", "ir", "opset", "nested_if", "function_loop", "metadata",
                     "metadata", "nested_type", "node_op", "node_attr", "node_io", "value_info", "sparse", "cycle",
                     "many_outputs"))
    vis = list(g.input) + list(g.output) + list(g.value_info)
    if op == "elem_type" and vis:
        v = rng.choice(vis)
        v.type.tensor_type.elem_type = rng.choice((0, 8, 13, 14, 15, 16, 17, 21, 22, 23, 24, 99, -1, 2**31 - 1))
        desc = f"{v.name} elem_type {v.type.tensor_type.elem_type}"
    elif op == "dim" and vis:
        v = rng.choice(vis)
        dims = v.type.tensor_type.shape.dim
        if not dims or rng.random() < 0.2:
            n = rng.choice((0, 9, 100, 10_000))
            v.type.tensor_type.shape.ClearField("dim")
            for _ in range(n):
                v.type.tensor_type.shape.dim.add().dim_value = 1
            desc = f"{v.name} has {n} dims"
        else:
            d = rng.choice(dims)
            if rng.random() < 0.7:
                d.dim_value = rng.choice((0, -1, -2**63, 2**31, 2**40, 2**62, 2**63 - 1, 16385, 65536))
                desc = f"{v.name} dim {d.dim_value}"
            else:
                d.dim_param = rng.choice(("", "batch", "\x1b[2J", "a" * 10_000, "-1", "N+1", "💥"))
                desc = f"{v.name} dim_param {d.dim_param[:20]!r}"
    elif op in ("init_type", "init_dims", "init_data") and g.initializer:
        t = rng.choice(list(g.initializer))
        if op == "init_type":
            t.data_type = rng.choice((0, 2, 8, 11, 13, 16, 17, 23, 99, -1))
            desc = f"initializer {t.name} data_type {t.data_type}"
        elif op == "init_dims":
            del t.dims[:]
            t.dims.extend(rng.choice(([], [0], [-1], [2**62], [2**31, 2**31], [1] * 100, [3, 3])))
            desc = f"initializer {t.name} dims {list(t.dims)[:5]}"
        else:
            k = rng.choice(("truncate", "float_data", "nan", "both", "string"))
            if k == "truncate":
                t.raw_data = t.raw_data[:len(t.raw_data) // 2]
            elif k == "float_data":
                t.ClearField("raw_data")
                t.float_data.extend([1.0] * rng.choice((0, 1, 7)))
            elif k == "nan":
                t.raw_data = struct.pack("<f", float("nan")) * (len(t.raw_data) // 4)
            elif k == "both":
                t.float_data.extend([1.0, 2.0])
            else:
                t.data_type = TensorProto.STRING
                t.string_data.extend([b"\xff\xfe", b"ok"])
            desc = f"initializer {t.name} data: {k}"
    elif op == "external" and g.initializer:
        t = rng.choice(list(g.initializer))
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        info = {"location": rng.choice(("w.bin", "../w.bin", "/etc/passwd", "../../../../etc/passwd", "missing.bin",
                                        "w.bin/..", ".", "", "/dev/zero", "/proc/self/mem", "sub/../w.bin",
                                        "w.bin\x00.txt", "C:\\w.bin", "~/w.bin", "/dev/stdin")),
                "offset": rng.choice(("0", "-1", "1e3", "0x10", " 1", "99999999999999999999", "", "4")),
                "length": rng.choice(("48", "0", "-5", "100000000", "abc", "", "18446744073709551616"))}
        for k in rng.sample(sorted(info), rng.randint(1, 3)):
            e = t.external_data.add()
            e.key, e.value = k, info[k]
        if rng.random() < 0.2:
            e = t.external_data.add()
            e.key, e.value = rng.choice(("location", "checksum", "bogus")), "x"
        desc = f"initializer {t.name} external data {[(e.key, e.value[:30]) for e in t.external_data]}"
    elif op == "no_graph":
        m.ClearField("graph")
        desc = "no graph"
    elif op == "empty_graph":
        k = rng.choice(("node", "output", "input", "initializer"))
        g.ClearField(k)
        desc = f"graph without {k}"
    elif op == "ir":
        m.ir_version = rng.choice((0, 1, 2, 3, 11, 12, 99, -1, 2**62))
        desc = f"ir_version {m.ir_version}"
    elif op == "opset":
        if rng.random() < 0.5 or not m.opset_import:
            m.ClearField("opset_import")
            if rng.random() < 0.5:
                m.opset_import.add().version = rng.choice((0, 1, 99, 10**6, -1))
        else:
            oi = rng.choice(list(m.opset_import))
            oi.version = rng.choice((0, 1, 6, 99, 10**6, -1))
            oi.domain = rng.choice((oi.domain, "ai.onnx.ml", "com.microsoft", "evil", "\x1b"))
        desc = f"opsets {[(o.domain, o.version) for o in m.opset_import]}"
    elif op == "nested_if":
        d = rng.choice((3, 20, 30, 33, 40))  # upb parses at most 100 messages deep: ~33 graphs
        g.node.append(helper.make_node("If", [g.input[0].name if g.input else "c"], ["ifout"],
                                       then_branch=_nested_if(d), else_branch=_nested_if(2)))
        desc = f"If subgraphs nested {d} deep"
    elif op == "function_loop":
        f = m.functions.add()
        f.name, f.domain = "Loopy", "local"
        f.input.append("a")
        f.output.append("b")
        f.node.append(helper.make_node("Loopy", ["a"], ["b"], domain="local"))
        f.opset_import.add().version = 17
        m.opset_import.add().domain = "local"
        m.opset_import[-1].version = 1
        g.node.append(helper.make_node("Loopy", [g.input[0].name if g.input else "x"], ["loopy_out"], domain="local"))
        desc = "a function that calls itself"
    elif op == "metadata":
        props = {p.key: p.value for p in m.metadata_props}
        key = rng.choice(("edgeship.preprocess", "edgeship.labels", "edgeship.source_digest", "edgeship.version",
                          rng.choice(list(props) or ["x"])))
        base = props.get(key, '{"input": "x", "height": 8, "width": 8}' if "pre" in key else '["a", "b"]')
        try:
            doc = json.loads(base)
            for _ in range(rng.choice((1, 2))):
                doc, d = json_doc_op(doc, rng)
            value = _dumps(doc)
        except (ValueError, RecursionError):
            value, d = rng.choice(NASTY_STR), "a nasty string"
        del m.metadata_props[:]
        for k, v in {**props, key: value}.items():
            p = m.metadata_props.add()
            p.key, p.value = k, v
        desc = f"metadata {key}: {d}"
    elif op == "nested_type" and vis:
        v = rng.choice(vis)
        d = rng.choice((5, 100, 1000))
        tp = onnx.TypeProto()
        tp.tensor_type.elem_type = TensorProto.FLOAT
        for _ in range(d):
            outer = onnx.TypeProto()
            if rng.random() < 0.5:
                outer.sequence_type.elem_type.CopyFrom(tp)
            else:
                outer.optional_type.elem_type.CopyFrom(tp)
            tp = outer
        v.type.CopyFrom(tp)
        desc = f"{v.name} type nested {d} deep"
    elif op == "node_op" and g.node:
        n = rng.choice(list(g.node))
        n.op_type = rng.choice(("Bogus", "", "If", "Loop", "Scan", "Conv", "MatMul", "Resize", "\x1b[2J", "a" * 5000))
        n.domain = rng.choice((n.domain, "evil.domain", "com.microsoft", "ai.onnx.ml"))
        desc = f"node {n.name} op {n.op_type[:20]!r} domain {n.domain!r}"
    elif op == "node_attr" and g.node:
        n = rng.choice(list(g.node))
        a = n.attribute.add()
        a.name = rng.choice(("kernel_shape", "pads", "axis", "then_branch", "value", "to", "strides", "dilations", "group"))
        a.type = rng.choice((1, 2, 3, 4, 5, 6, 7, 8, 0, 99))
        a.i = rng.choice((0, -1, 2**62))
        a.ints.extend(rng.choice(([], [-1, -1], [2**62], [0] * 1000)))
        desc = f"node {n.name} attribute {a.name} type {a.type}"
    elif op == "node_io" and g.node:
        n = rng.choice(list(g.node))
        if rng.random() < 0.5:
            n.input.append(rng.choice(("missing", "", n.output[0] if n.output else "x")))
        else:
            n.output.append(rng.choice((g.input[0].name if g.input else "x", n.output[0] if n.output else "x", "")))
        desc = f"node {n.name} io {list(n.input)}->{list(n.output)}"
    elif op == "value_info":
        vi = g.value_info.add()
        vi.name = rng.choice(("x", "y", "", "ghost"))
        vi.type.map_type.key_type = rng.choice((1, 8, 99))
        vi.type.map_type.value_type.tensor_type.elem_type = 1
        desc = f"value_info {vi.name!r} is a map"
    elif op == "sparse":
        s = g.sparse_initializer.add()
        s.values.name = rng.choice(("w", "sp", ""))
        s.values.data_type = TensorProto.FLOAT
        s.values.dims.append(rng.choice((2, -1, 2**40)))
        s.values.float_data.extend([1.0, 2.0])
        s.indices.data_type = TensorProto.INT64
        s.indices.dims.append(2)
        s.indices.int64_data.extend(rng.choice(([0, 1], [-1, 2**62], [5, 5])))
        s.dims.extend(rng.choice(([4], [2**62], [-4], [])))
        desc = f"sparse initializer dims {list(s.dims)}"
    elif op == "cycle" and g.node:
        n = g.node[0]
        last = g.node[-1]
        n.input.append(last.output[0] if last.output else "x")
        desc = "the first node reads the last's output"
    elif op == "many_outputs":
        for k in range(rng.choice((100, 5000))):
            g.output.add().name = f"o{k}"
        desc = "thousands of graph outputs without types"
    else:
        raise Skip()
    try:
        return m.SerializeToString(), f"onnx.{op} {desc}"
    except Exception:  # noqa: BLE001 - over 2 GB, or a field the serializer refuses
        raise Skip() from None


def onnx_fields_safe(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    try:
        return onnx_fields(data, rng, ctx)
    except (Skip, ValueError, TypeError, RecursionError):
        raise Skip() from None
    except Exception as e:  # noqa: BLE001 - upb's depth limit on a copied subgraph
        if type(e).__name__ == "DecodeError":
            raise Skip() from None
        raise


STRUCTURAL["onnx"] = [(6, onnx_fields_safe), (2, onnx_bytes)]


# ---- WAV: RIFF chunks, the fmt chunk's fields, the samples -------------------------------------

WAV_IDS = [b"fmt ", b"data", b"LIST", b"JUNK", b"fact", b"bext", b"cue ", b"ds64", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff"]
WAV_SIZES = [0, 1, 2, 3, 15, 16, 17, 18, 39, 40, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 1 << 30]
#: the fmt chunk's fields (WAVEFORMATEX, then WAVEFORMATEXTENSIBLE's): offset, struct format, values
WAV_FMT_FIELDS = {
    "code": (0, "<H", (0, 1, 2, 3, 6, 7, 0x11, 0x55, 0x2000, 0xFFFE, 0xFFFF)),
    "channels": (2, "<H", (0, 1, 2, 3, 6, 255, 0xFFFF)),
    "rate": (4, "<I", (0, 1, 999, 1000, 8000, 11025, 16000, 44100, 44101, 65521, 65537, 96001, 767999, 768000, 768001,
                       0x7FFFFFFF, 0xFFFFFFFF)),
    "avg": (8, "<I", (0, 1, 0xFFFFFFFF)),
    "align": (12, "<H", (0, 1, 2, 3, 4, 6, 8, 0xFFFF)),
    "bits": (14, "<H", (0, 1, 4, 7, 8, 9, 12, 16, 17, 20, 24, 31, 32, 33, 48, 64, 0xFFFF)),
    "cb": (16, "<H", (0, 22, 0xFFFF)),
    "valid": (18, "<H", (0, 1, 12, 24, 33, 0xFFFF)),
    "mask": (20, "<I", (0, 3, 0xFFFFFFFF)),
    "sub": (24, "<I", (0, 1, 3, 6, 7, 0x55, 0xFFFE, 0xFFFFFFFF)),
}
WAV_GUID_TAIL = b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
#: sample values that are not audio: NaN (quiet, signalling, negative), infinities, huge, subnormal, -0
WAV_FLOATS = [struct.pack("<f", v) for v in (float("nan"), float("inf"), -float("inf"), 1e30, -3.4e38, 1e-45, -0.0, 16.0,
                                              16.5)] + [b"\x01\x00\x80\x7f", b"\xff\xff\xff\xff"]
WAV_DOUBLES = [struct.pack("<d", v) for v in (float("nan"), float("inf"), -float("inf"), 1e300, 5e-324, -0.0, 17.0)]


def _wav_parse(data: bytes) -> tuple[bytes, list[list], bytes]:
    """(the 12-byte header, [[id, size field, body], ...], the bytes after the last chunk header that
    fits) of a RIFF-like file, each body cut where the file ends; Skip for bytes that are not one."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64", b"RIFX", b"BW64"):
        raise Skip()
    chunks: list[list] = []
    pos = 12
    while pos + 8 <= len(data) and len(chunks) < 256:
        size = struct.unpack_from("<I", data, pos + 4)[0]
        chunks.append([data[pos:pos + 4], size, data[pos + 8:pos + 8 + size]])
        pos += 8 + size + (size & 1)
    return data[:12], chunks, data[pos:] if pos < len(data) else b""


def _wav_build(head: bytes, chunks: list[list], tail: bytes = b"", pad: bool = True) -> bytes:
    body = b"".join(c + struct.pack("<I", size) + b + (b"\x00" if pad and len(b) % 2 else b"") for c, size, b in chunks)
    return head[:4] + struct.pack("<I", (4 + len(body) + len(tail)) & 0xFFFFFFFF) + head[8:12] + body + tail


def _wav_find(chunks: list[list], cid: bytes) -> int:
    k = next((i for i, c in enumerate(chunks) if c[0] == cid), -1)
    if k < 0:
        raise Skip()
    return k


def wav_chunks(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """The chunk list: drop, duplicate, swap, insert (known and unknown ids, odd sizes), a size field
    set (0, odd, past the end, 1 GB, 0xFFFFFFFF), pad bytes left out, the RIFF size and magic
    (RF64, BW64, RIFX, another form type), thousands of empty chunks before the samples."""
    head, chunks, tail = _wav_parse(data)
    op = rng.choice(("drop", "dup", "swap", "insert", "insert", "size", "size", "size", "nopad", "riff", "magic", "many"))
    pad = True
    if op == "drop" and chunks:
        k = rng.randrange(len(chunks))
        desc = f"drop {chunks.pop(k)[0]!r}"
    elif op == "dup" and chunks:
        c = list(rng.choice(chunks))
        chunks.insert(rng.randrange(len(chunks) + 1), c)
        desc = f"dup {c[0]!r}"
    elif op == "swap" and len(chunks) >= 2:
        i, j = rng.sample(range(len(chunks)), 2)
        chunks[i], chunks[j] = chunks[j], chunks[i]
        desc = f"swap {chunks[j][0]!r} {chunks[i][0]!r}"
    elif op == "size" and chunks:
        k = rng.randrange(len(chunks))
        n = len(chunks[k][2])
        v = rng.choice(WAV_SIZES + [max(n - 1, 0), n + 1, n * 2 + 7])
        chunks[k][1] = v
        desc = f"{chunks[k][0]!r} size={v}"
    elif op == "nopad":
        pad = False
        desc = "pad bytes left out"
    elif op == "riff":
        v = rng.choice((0, 4, 12, 0x7FFFFFFF, 0xFFFFFFFF))
        return data[:4] + struct.pack("<I", v) + data[8:], f"wav.riff size={v}"
    elif op == "magic":
        head = rng.choice((b"RF64\x00\x00\x00\x00WAVE", b"BW64\x00\x00\x00\x00WAVE", b"RIFX\x00\x00\x00\x00WAVE",
                           b"RIFF\x00\x00\x00\x00AVI ", b"FORM\x00\x00\x00\x00AIFF", b"RIFF\x00\x00\x00\x00wave"))
        desc = f"header {head[:4]!r}/{head[8:]!r}"
    elif op == "many":
        n = rng.choice((100, 9_999, 10_001, 20_000))
        chunks[0:0] = [[b"JUNK", 0, b""]] * n
        desc = f"{n} empty chunks first"
    else:
        cid = rng.choice(WAV_IDS + [rng.randbytes(4)])
        body = rng.randbytes(rng.choice((0, 1, 3, 16, 40, 255)))
        k = rng.randrange(len(chunks) + 1)
        chunks.insert(k, [cid, len(body), body])
        desc = f"insert {cid!r} of {len(body)} bytes at {k}"
    return _wav_build(head, chunks, tail, pad), f"wav.{op} {desc}"


def wav_fmt(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """The fmt chunk: one field set to a value on an edge (format codes edgeship refuses, 0 and 65535
    channels, rates from 0 Hz to 4 GHz, bits per sample 0-65535, the extensible sub-format); a
    consistent new layout (code, channels, bits and block align agreeing, so the samples are
    decoded another way, or refused past the block-align check: 0 channels, 0 or 40 bits); the
    GUID damaged; the chunk cut or grown."""
    head, chunks, tail = _wav_parse(data)
    k = _wav_find(chunks, b"fmt ")
    body = bytearray(chunks[k][2])
    op = rng.choice(("field", "field", "field", "layout", "layout", "guid", "length"))
    if op == "field":
        fits = [(n, f) for n, f in WAV_FMT_FIELDS.items() if f[0] + struct.calcsize(f[1]) <= len(body)]
        if not fits:
            raise Skip()
        name, (off, fmt, values) = rng.choice(fits)
        v = rng.choice(values)
        struct.pack_into(fmt, body, off, v)
        desc = f"{name}={v}"
    elif op == "layout":
        code = rng.choice((1, 1, 3, 0xFFFE))
        sub = rng.choice((1, 3)) if code == 0xFFFE else code
        bits = rng.choice((8, 12, 16, 20, 24, 32, 0, 7, 33, 40) if sub == 1 else (32, 64, 16, 0))
        if code == 0xFFFE:
            bits = -(-bits // 8) * 8
        channels = rng.choice((1, 2, 3, 6, 64, 0))
        rate = rng.choice((8000, 16000, 22050, 44100, 48000, 96000))
        align = channels * -(-bits // 8)
        body = bytearray(struct.pack("<HHIIHH", code, channels, rate, rate * align, align, bits))
        if code == 0xFFFE:
            body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<I", sub) + WAV_GUID_TAIL
        desc = f"layout code={code:#x} sub={sub} channels={channels} bits={bits} rate={rate}"
    elif op == "guid":
        if len(body) < 40:
            raise Skip()
        i = rng.randrange(28, 40)
        body[i] ^= 1 << rng.randrange(8)
        desc = f"guid byte {i} flipped"
    else:
        n = rng.choice((0, 2, 14, 15, 16, 17, 18, 24, 39, 40, 41, 80))
        body = body[:n] + (rng.randbytes(n - len(body)) if n > len(body) else b"")
        desc = f"body {n} bytes"
    chunks[k][1:] = [len(body), bytes(body)]
    return _wav_build(head, chunks, tail), f"wav.fmt {desc}"


def wav_samples(data: bytes, rng: random.Random, ctx: Ctx) -> tuple[bytes, str]:
    """The data chunk: NaN, infinities, huge and subnormal floats at a sample's place (32- and
    64-bit), emptied, an odd length, grown, its size the streaming placeholder 0xFFFFFFFF."""
    head, chunks, tail = _wav_parse(data)
    k = _wav_find(chunks, b"data")
    body = bytearray(chunks[k][2])
    op = rng.choice(("float", "float", "double", "empty", "odd", "grow", "stream"))
    size = None
    if op in ("float", "double"):
        width = 4 if op == "float" else 8
        if len(body) < width:
            raise Skip()
        v = rng.choice(WAV_FLOATS if width == 4 else WAV_DOUBLES)
        i = rng.randrange(len(body) // width) * width
        body[i:i + width] = v
        desc = f"{v.hex()} at byte {i}"
    elif op == "empty":
        body = bytearray()
        desc = "no samples"
    elif op == "odd":
        body = body[:-1] if body else bytearray(b"\x01")
        desc = f"{len(body)} bytes"
    elif op == "grow":
        body = body * rng.choice((2, 16, 200))
        desc = f"{len(body)} bytes"
    else:
        size = 0xFFFFFFFF
        desc = "size 0xFFFFFFFF"
    chunks[k][1:] = [len(body) if size is None else size, bytes(body)]
    if size is not None and k != len(chunks) - 1:
        chunks.append(chunks.pop(k))  # a stream's data chunk is the last
    return _wav_build(head, chunks, tail), f"wav.samples {op} {desc}"


STRUCTURAL["wav"] = [(4, wav_chunks), (5, wav_fmt), (2, wav_samples)]


# ---- seeds -----------------------------------------------------------------------------------

def artifact_record() -> dict[str, Any]:
    """An artifact.json as ``edgeship deploy`` writes it (the tiny classifier's ONNX fp32 artifact)."""
    spec_in = {"name": "image", "shape": ["batch", 3, 32, 32], "dtype": "float32", "layout": "NCHW"}
    spec_out = {"name": "logits", "shape": ["batch", 10], "dtype": "float32", "layout": None}
    return {
        "name": "tiny-classifier-onnx-fp32", "target": "onnx", "format": "onnx", "precision": "fp32",
        "files": [{"path": "model.onnx", "sha256": "0" * 64, "size": 6866}], "model_file": "model.onnx",
        "inputs": [spec_in], "outputs": [spec_out],
        "preprocess": {"kind": "image", "input": "image", "height": 32, "width": 32, "layout": "NCHW", "color": "RGB",
                       "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0], "crop_fraction": 0.875,
                       "resample": "bilinear", "dtype": "float32", "output": "logits"},
        "verification": {"reference": "torch source tiny-classifier", "samples": 5, "inputs": "sample photos",
                         "batch_sizes": [1, 5], "atol": 0.0001, "rtol": 0.0001,
                         "outputs": [{"name": "logits", "max_abs": 1.19e-07, "max_rel": 1.16e-07, "mean_abs": 2.86e-08,
                                      "cosine": 0.9999999999999972, "sqnr_db": 142.18, "passed": True}],
                         "top1_agreement": 1.0, "top5_agreement": 1.0, "kl_divergence": 9.99e-16,
                         "criterion": "|err| <= 0.0001 + 0.0001*|ref| for every element", "passed": True},
        "provenance": {"stage": "onnx.export", "parent_digest": "85ee" * 16, "source": "tinymodels:tiny_classifier",
                       "config": {"opset": 18, "slim": True, "dynamic_batch": True},
                       "tool_versions": {"edgeship": "0.1.0", "torch": "2.13.0+cpu", "onnx": "1.23.2"}},
        "notes": [], "details": {}, "digest": "6d89" * 16, "size_bytes": 6866, "labels_file": "labels.txt",
        "labels_count": 10,
    }


def manifest_doc() -> dict[str, Any]:
    """A manifest.json as ``edgeship deploy`` writes it (trimmed: one artifact, a benchmark)."""
    art = {**artifact_record(), "id": "onnx-fp32", "path": "onnx-fp32"}
    return {
        "schema": "edgeship.manifest/1", "edgeship_version": "0.1.0", "created": "2026-12-07T13:47:27+00:00",
        "source": {"name": "tiny-classifier", "kind": "torch", "origin": "tinymodels:tiny_classifier", "digest": "85ee" * 16,
                   "inputs": art["inputs"], "outputs": art["outputs"], "preprocess": art["preprocess"],
                   "labels_count": 10, "allow_pickle": False, "input_ranges": [None], "input_values": [], "notes": []},
        "config": {"opset": 18, "slim": True, "method": "auto", "targets": ["onnx"], "quantize": ["fp32"],
                   "bench_threads": [1], "out": "edgeship-out"},
        "artifacts": [art],
        "stages": {"convert": {"steps": ["onnx-fp32"], "skipped": [], "verified": True, "failed": []},
                   "benchmark": {"results": [{"id": "source", "role": "baseline", "latency_ms": {"p50": 1.9}},
                                             {"id": "onnx-fp32", "role": "artifact", "runtime": "onnxruntime", "threads": 1,
                                              "latency_ms": {"p50": 0.21, "p90": 0.25, "mean": 0.22}}]}},
        "timings_s": {"load": 1.153, "convert.onnx.fp32": 4.176, "total": 6.274},
        "environment": {"python": "3.11.7", "machine": "x86_64", "cpu_count": 2, "tool_versions": {"edgeship": "0.1.0"}},
    }


def _jbytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def tiny_onnx(kind: str = "matmul") -> Any:
    """Tiny ONNX models: a MatMul; a Conv classifier carrying edgeship's preprocess and labels
    metadata; an If with subgraphs; a local function; an initializer in external data."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "classifier":
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
        w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                 helper.make_node("Relu", ["c"], ["r"], name="relu"),
                 helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
                 helper.make_node("Flatten", ["g"], ["y"], name="flat")]
        m = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])
        helper.set_model_props(m, {"edgeship.preprocess": json.dumps({"input": "x", "height": 8, "width": 8}),
                                   "edgeship.labels": json.dumps(["cat", "dog", "bird", "fish"])})
    elif kind == "if":
        c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
        then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"], name="then_id")], "then", [],
                                 [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])])
        other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="else_neg")], "else", [],
                                  [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])])
        m = helper.make_model(helper.make_graph([helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then,
                                                                  else_branch=other)], "cond", [c, x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    elif kind == "function":
        f = helper.make_function("local", "Double", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                                 [helper.make_opsetid("", 17)])
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
        m = helper.make_model(helper.make_graph([helper.make_node("Double", ["x"], ["y"], domain="local", name="dbl")],
                                                "fn", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)], functions=[f])
    else:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
        w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
        m = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 17)], producer_name="fuzz")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def onnx_seeds(folder: Path) -> list[Seed]:
    from onnx import TensorProto

    seeds = [Seed(f"onnx-{k}", "onnx", {"model.onnx": tiny_onnx(k).SerializeToString()}, "model.onnx")
             for k in ("matmul", "classifier", "if", "function")]
    m = tiny_onnx("matmul")
    w = m.graph.initializer[0]
    raw = w.raw_data
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in {"location": "w.bin", "offset": "0", "length": str(len(raw))}.items():
        e = w.external_data.add()
        e.key, e.value = k, v
    seeds.append(Seed("onnx-external", "onnx", {"model.onnx": m.SerializeToString(), "w.bin": raw}, "model.onnx"))
    return seeds


#: a deploy's output folder whose manifest.json and artifact.json join the JSON seeds (the benchmark's --deploy)
REAL_RECORDS: Path | None = None


def json_seeds(folder: Path) -> list[Seed]:
    real = REAL_RECORDS
    seeds = [Seed("artifact-record", "json", {"record.json": _jbytes(artifact_record())}, "record.json"),
             Seed("manifest-record", "json", {"record.json": _jbytes(manifest_doc())}, "record.json"),
             Seed("small-record", "json", {"record.json": _jbytes({"a": 1, "b": [1, 2.5, "x", None, True], "c": {"d": {}}})},
                  "record.json"),
             Seed("list-record", "json", {"record.json": b'["cat", "dog", 3, {"k": []}]'}, "record.json"),
             Seed("preprocess-file", "json", {"preprocess.json": _jbytes({"mean": [127, 127, 127], "std": 128.0, "size": "32x32",
                                                                         "layout": "NCHW", "resample": "bicubic"})},
                  "preprocess.json"),
             Seed("labels-json", "json", {"labels.json": _jbytes(["cat", "dog", "bird", "fish", "ant", "bee", "cow", "elk",
                                                                  "fox", "gnu"])}, "labels.json"),
             Seed("labels-text", "text", {"labels.txt": "".join(f"class {i}\n" for i in range(10)).encode()}, "labels.txt")]
    for p in sorted(real.rglob("*.json"))[:4] if real else []:
        seeds.append(Seed(f"real-{p.name}", "json", {"record.json": p.read_bytes()}, "record.json"))
    return seeds


def config_seeds(folder: Path) -> list[Seed]:
    deploy = {"targets": ["onnx", "tflite"], "quantize": "int8", "max_drop": 0.05, "bench_threads": [1, 2],
              "out": "edgeship-out", "calib": "calib/", "opset": 18, "dry_run": True, "input_shape": ["1,3,32,32"]}
    sweep = {"models": ["tinymodels:tiny_classifier", {"model": "tinymodels:relu6_classifier", "name": "relu6",
                                                       "input_shape": ["1,3,32,32"]}],
             "targets": "onnx,tflite", "precisions": ["fp32", "int8"],
             "recipes": {"default": {}, "careful": {"max_drop": 0.01, "calib_samples": 64}}, "threads": "1,2",
             "options": {"opset": 17}, "bench_seconds": 1.5}
    hand = ("# deploy options\ntargets: [onnx, tflite]\nquantize: int8   # or fp16\nmax_drop: 0.05\nbench_threads:\n"
            "  - 1\n  - 2\nout: 'edgeship-out'\ncalib: \"calib/\"\nopset: 18\ndry_run: yes\n")
    import yaml

    return [Seed("deploy-yaml", "yaml", {"config.yaml": hand.encode()}, "config.yaml"),
            Seed("deploy-yaml-dump", "yaml", {"config.yml": yaml.safe_dump(deploy).encode()}, "config.yml"),
            Seed("sweep-yaml", "yaml", {"sweep.yaml": yaml.safe_dump(sweep, sort_keys=False).encode()}, "sweep.yaml"),
            Seed("deploy-json", "json", {"config.json": _jbytes(deploy)}, "config.json"),
            Seed("sweep-json", "json", {"sweep.json": _jbytes(sweep)}, "sweep.json")]


def profile_seeds(folder: Path) -> list[Seed]:
    import yaml

    from edgeship.profiles import builtin_profiles

    seeds = []
    for name, p in builtin_profiles().items():
        seeds.append(Seed(f"profile-{name}", "json", {"profile.json": p.read_bytes()}, "profile.json"))
    first = json.loads(next(iter(builtin_profiles().values())).read_bytes())
    seeds.append(Seed("profile-yaml", "yaml", {"profile.yaml": yaml.safe_dump(first).encode()}, "profile.yaml"))
    return seeds


def array_seeds(folder: Path) -> list[Seed]:
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {"f32": rng.standard_normal((2, 3)).astype(np.float32), "f64": rng.standard_normal((4,)),
              "f16": rng.standard_normal((2, 2)).astype(np.float16), "i8": np.arange(-4, 4, dtype=np.int8).reshape(2, 4),
              "u8": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "i64": np.arange(5, dtype=np.int64),
              "bool": np.array([[True, False, True]]), "fortran": np.asfortranarray(rng.standard_normal((3, 2)))}
    seeds = []
    for name, a in arrays.items():
        bio = io.BytesIO()
        np.save(bio, a)
        seeds.append(Seed(f"npy-{name}", "npy", {f"{name}.npy": bio.getvalue()}, f"{name}.npy"))
    for name, save in (("npz", np.savez), ("npz-compressed", np.savez_compressed)):
        bio = io.BytesIO()
        save(bio, x=arrays["f32"], ids=arrays["i64"], mask=arrays["bool"])
        seeds.append(Seed(name, "npz", {"data.npz": bio.getvalue()}, "data.npz"))
    return seeds


def image_seeds(folder: Path) -> list[Seed]:
    """Pillow-made images: PNG (RGB, RGBA, palette with transparency, LA, 1-bit, 16-bit grey, EXIF),
    JPEG (EXIF-rotated, grey, CMYK, progressive), GIF (animated), BMP (1/8/24/32-bit), TIFF (16-bit,
    float with NaN, LZW, rotated), WebP (lossy, lossless RGBA rotated), and a few more formats."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:12, 0:16]
    rgb = np.stack([xx * 16, yy * 20, (xx + yy) * 8], -1).astype(np.uint8)
    im = Image.fromarray(rgb)
    ex6 = Image.Exif()
    ex6[0x0112] = 6
    ex3 = Image.Exif()
    ex3[0x0112] = 3
    grey16 = Image.fromarray((xx * 4000 + yy * 10).astype(np.uint16))
    fl = (xx / 16.0).astype(np.float32)
    fl[0, 0] = np.nan
    plan: list[tuple[str, Any, str, dict]] = [
        ("png-rgb", im, "PNG", {}), ("png-rgba", im.convert("RGBA"), "PNG", {}),
        ("png-p", im.quantize(16), "PNG", {"transparency": 0}), ("png-la", im.convert("LA"), "PNG", {}),
        ("png-1", im.convert("1"), "PNG", {}), ("png-16", grey16, "PNG", {}), ("png-exif", im, "PNG", {"exif": ex6}),
        ("png-interlaced", im, "PNG", {"optimize": False}),
        ("jpeg-exif6", im, "JPEG", {"exif": ex6}), ("jpeg-l", im.convert("L"), "JPEG", {}),
        ("jpeg-cmyk", im.convert("CMYK"), "JPEG", {}), ("jpeg-progressive", im, "JPEG", {"progressive": True}),
        ("gif", im.quantize(8), "GIF", {}), ("gif-anim", im.quantize(8), "GIF",
                                             {"save_all": True, "append_images": [im.rotate(90).quantize(8)], "loop": 0}),
        ("bmp-24", im, "BMP", {}), ("bmp-8", im.quantize(16), "BMP", {}), ("bmp-1", im.convert("1"), "BMP", {}),
        ("bmp-32", im.convert("RGBA"), "BMP", {}),
        ("tiff-rgb", im, "TIFF", {"tiffinfo": {274: 8}}), ("tiff-16", grey16, "TIFF", {}),
        ("tiff-float", Image.fromarray(fl), "TIFF", {}), ("tiff-lzw", im, "TIFF", {"compression": "tiff_lzw"}),
        ("tiff-cmyk", im.convert("CMYK"), "TIFF", {}),
        ("webp-lossy", im, "WEBP", {"quality": 50}), ("webp-lossless", im.convert("RGBA"), "WEBP",
                                                        {"lossless": True, "exif": ex3}),
        ("ico", im, "ICO", {}), ("tga", im, "TGA", {}), ("pcx", im, "PCX", {}), ("sgi", im, "SGI", {}),
        ("qoi", im, "QOI", {}), ("ppm", im, "PPM", {}), ("dds", im.convert("RGBA"), "DDS", {}),
        ("jp2", im, "JPEG2000", {}), ("im", im, "IM", {}),
    ]
    seeds = []
    for name, img, fmt, kw in plan:
        bio = io.BytesIO()
        try:
            img.save(bio, format=fmt, **kw)
        except Exception:  # noqa: BLE001,S112 - a format this Pillow cannot write: one seed fewer
            continue
        ext = {"JPEG": "jpg", "JPEG2000": "jp2", "WEBP": "webp"}.get(fmt, fmt.lower())
        seeds.append(Seed(name, "image", {f"image.{ext}": bio.getvalue()}, f"image.{ext}"))
    return seeds


def tiny_pt2(folder: Path, kind: str = "linear") -> bytes:
    import torch

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l = torch.nn.Linear(4, 3)
            self.register_buffer("b", torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.l(x)) + self.b

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.e = torch.nn.Embedding(10, 4)
            self.k = torch.tensor([1.0, 2.0, 3.0, 4.0])  # a constant (not a buffer)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.e(ids).sum(1) * self.k

    torch.manual_seed(0)
    if kind == "embed":
        mod, args = Embed(), (torch.tensor([[1, 2, 3]]),)
    else:
        mod, args = Linear(), (torch.randn(2, 4),)
    ep = torch.export.export(mod.eval(), args)
    p = folder / f"{kind}.pt2"
    torch.export.save(ep, str(p))
    return p.read_bytes()


def pt2_seeds(folder: Path) -> list[Seed]:
    return [Seed(f"pt2-{k}", "pt2", {"model.pt2": tiny_pt2(folder, k)}, "model.pt2") for k in ("linear", "embed")]


def zip_seeds(folder: Path) -> list[Seed]:
    import zipfile

    seeds = []
    for name, method in (("stored", zipfile.ZIP_STORED), ("deflated", zipfile.ZIP_DEFLATED), ("bzip2", zipfile.ZIP_BZIP2),
                         ("lzma", zipfile.ZIP_LZMA)):
        bio = io.BytesIO()
        with zipfile.ZipFile(bio, "w", method) as z:
            z.writestr("a.txt", b"hello " * 20)
            z.writestr("dir/", b"")
            z.writestr("dir/b.bin", bytes(range(256)) * 4)
            z.writestr("é/ü.txt", "unicode names\n")
            z.comment = b"fuzz seed"
        seeds.append(Seed(f"zip-{name}", "zip", {"archive.zip": bio.getvalue()}, "archive.zip"))
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as z:
        with z.open("big.bin", "w", force_zip64=True) as fh:
            fh.write(b"z" * 100)
    seeds.append(Seed("zip-zip64", "zip", {"archive.zip": bio.getvalue()}, "archive.zip"))
    for s in array_seeds(folder):
        if s.kind == "npz":
            seeds.append(Seed(f"zip-{s.name}", "zip", {"archive.zip": s.files[s.primary]}, "archive.zip"))
    seeds.append(Seed("zip-pt2", "zip", {"archive.zip": tiny_pt2(folder)}, "archive.zip"))
    return seeds


def _tar_of(fmt: int, global_pax: dict[str, str] | None = None) -> bytes:
    """An uncompressed tar written by tarfile: a top folder, files (one executable, one empty), a
    folder, a symbolic link and a hard link inside, non-ASCII names; with GNU and pax, a long name
    and a long link name; with pax, pax records of its own (and a global header when asked)."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt, pax_headers=global_pax) as t:
        def add(name: str, data: bytes = b"", typ: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644,
                pax: dict[str, str] | None = None, mtime: float = 1_700_000_000) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mode, ti.mtime, ti.size = typ, linkname, mode, mtime, len(data)
            if pax:
                ti.pax_headers = pax
            t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)

        add("top/", typ=tarfile.DIRTYPE, mode=0o755)
        add("top/a.txt", b"hello\n" * 20)
        add("top/sub/", typ=tarfile.DIRTYPE, mode=0o755)
        add("top/sub/b.bin", bytes(range(256)) * 4)
        add("top/empty")
        add("top/run.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
        add("top/link", typ=tarfile.SYMTYPE, linkname="a.txt", mode=0o777)
        add("top/sub/up", typ=tarfile.SYMTYPE, linkname="../a.txt", mode=0o777)
        add("top/sub/hard", typ=tarfile.LNKTYPE, linkname="top/a.txt")
        add("top/é/ü.txt", b"unicode names\n")
        if fmt != tarfile.USTAR_FORMAT:
            add("top/" + "long-name-" * 15 + ".txt", b"a name past 100 bytes\n")
            add("top/long-link", typ=tarfile.SYMTYPE, linkname="sub/" + "../sub/" * 20 + "b.bin", mode=0o777)
        if fmt == tarfile.PAX_FORMAT:
            add("top/pax.txt", b"pax\n", pax={"comment": "a pax record", "SCHILY.xattr.user.note": "x"}, mtime=1_700_000_000.5)
    return bio.getvalue()


def _bundle_tar(folder: Path) -> bytes:
    """A release bundle's .tar.gz as ``edgeship package`` writes it (``edgeship.bundle._tar``: pax,
    sorted, no owners, fixed times), of a bundle's files (bundle.json, the model card, labels, an
    artifact folder, golden vectors, integration code, the signature)."""
    from edgeship.bundle import _tar

    name = "tiny-classifier-1.0.0"
    src = folder / "bundle" / name
    model = random.Random(0).randbytes(6866)
    files = {"artifacts/onnx-fp32/model.onnx": model, "artifacts/onnx-fp32/artifact.json": _jbytes(artifact_record()),
             "artifacts/onnx-fp32/labels.txt": "".join(f"class {i}\n" for i in range(10)).encode(),
             "labels.txt": "".join(f"class {i}\n" for i in range(10)).encode(),
             "MODEL_CARD.md": b"# tiny-classifier 1.0.0\n\nWhat it is, how to feed it, how well and how fast it ran.\n",
             "golden/golden.json": _jbytes({"inputs": ["golden/input-0.npy"], "outputs": ["golden/output-0.npy"]}),
             "golden/input-0.npy": b"\x93NUMPY\x01\x00v\x00" + b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 32, 32), }"
                                   .ljust(117) + b"\n" + bytes(4 * 3 * 32 * 32),
             "integration/python/app.py": b"import edgeship\nprint('hello')\n",
             "model.sig": _jbytes({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "dsseEnvelope": {"payload": ""}})}
    bundle = {"schema": "edgeship.bundle/1", "name": "tiny-classifier", "version": "1.0.0", "release": 1,
              "artifacts": [{"id": "onnx-fp32", "runtime": "onnxruntime", "path": "artifacts/onnx-fp32"}],
              "fallback": ["onnx-fp32"],
              "files": [{"path": k, "sha256": hashlib.sha256(v).hexdigest(), "size": len(v)} for k, v in sorted(files.items())]}
    files["bundle.json"] = _jbytes(bundle)
    if src.exists():
        shutil.rmtree(src)
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    out = folder / "bundle" / f"{name}.tar.gz"
    out.unlink(missing_ok=True)
    _tar(src, name, out)
    return out.read_bytes()


def tar_seeds(folder: Path) -> list[Seed]:
    seeds = []
    for name, fmt, comp, glob in (("tar-gnu", tarfile.GNU_FORMAT, "", None), ("tar-pax", tarfile.PAX_FORMAT, "", None),
                                  ("tar-ustar", tarfile.USTAR_FORMAT, "", None), ("tar-gnu-gz", tarfile.GNU_FORMAT, "gz", None),
                                  ("tar-pax-xz", tarfile.PAX_FORMAT, "xz", None), ("tar-ustar-bz2", tarfile.USTAR_FORMAT, "bz2", None),
                                  ("tar-pax-global-gz", tarfile.PAX_FORMAT, "gz", {"comment": "a global header"})):
        file = f"archive.tar{'.' + comp if comp else ''}"
        seeds.append(Seed(name, "tar", {file: _tar_wrap(comp, _tar_of(fmt, glob))}, file))
    seeds.append(Seed("tar-bundle", "tar", {"tiny-classifier-1.0.0.tar.gz": _bundle_tar(folder)}, "tiny-classifier-1.0.0.tar.gz"))
    return seeds


def labels_seeds(folder: Path) -> list[Seed]:
    """Labels files: one label per line (LF, CRLF, a BOM, no final newline, blank lines and padding),
    UTF-8 in many scripts, UTF-16 and latin-1 (refused: not UTF-8), a thousand ImageNet-style lines,
    JSON lists (compact, indented, escaped), an empty file."""
    classes = ["cat", "dog", "bird", "fish", "ant", "bee", "cow", "elk", "fox", "gnu"]
    lines = "".join(f"{c}\n" for c in classes)
    unicode = "猫\nсобака\n🐦 bird\ne\u0301clair\nعربى\nΔέλτα\n한국어\n"
    imagenet = "".join(f"n{1440764 + 7 * i:08d} class {i}, a synonym\n" for i in range(1000))

    def s(name: str, data: bytes, file: str = "labels.txt") -> Seed:
        return Seed(name, "labels", {file: data}, file)

    return [s("labels-txt", lines.encode()), s("labels-crlf", lines.replace("\n", "\r\n").encode()),
            s("labels-bom", b"\xef\xbb\xbf" + lines.encode()), s("labels-nofinal", lines.rstrip("\n").encode()),
            s("labels-blank", b"  cat  \n\n\tdog\n   \nbird\t\n\n"), s("labels-unicode", unicode.encode()),
            s("labels-utf16", lines.encode("utf-16")), s("labels-latin1", "café\nnaïve\nüber\n".encode("latin-1")),
            s("labels-imagenet", imagenet.encode()), s("labels-empty", b""),
            s("labels-json", json.dumps(classes).encode(), "labels.json"),
            s("labels-json-indent", _jbytes(classes), "labels.json"),
            s("labels-json-escaped", json.dumps(["猫", "e\u0301", "tab\there", "quote\"d"]).encode(), "labels.json")]


def wav_seeds(folder: Path) -> list[Seed]:
    """WAV files as the standard library's ``wave`` (8, 16, 24, 32-bit PCM, mono and stereo),
    :func:`edgeship.readers.audio.write_wav`, DAWs and recorders write them (IEEE float 32/64,
    WAVE_FORMAT_EXTENSIBLE of 24-bit PCM in 20 valid bits and of float in 6 channels, 12-bit PCM,
    LIST/fact/bext chunks with odd sizes around the samples, a stream's 0xFFFFFFFF sizes), and
    one A-law file (refused as it is)."""
    import wave

    import numpy as np

    from edgeship.readers.audio import write_wav

    x = 0.6 * np.sin(2 * np.pi * 440 * np.arange(300) / 8000)

    def fmt(code: int, channels: int, rate: int, bits: int, sub: int | None = None, valid: int | None = None) -> bytes:
        align = channels * -(-bits // 8)
        body = struct.pack("<HHIIHH", code, channels, rate, rate * align, align, bits)
        if sub is not None:
            body += struct.pack("<HHI", 22, valid or bits, (1 << channels) - 1) + struct.pack("<I", sub) + WAV_GUID_TAIL
        return b"fmt " + struct.pack("<I", len(body)) + body

    def chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
        return cid + struct.pack("<I", len(body) if size is None else size) + body + (b"\x00" if len(body) % 2 else b"")

    def riff(*chunks: bytes, size: int | None = None) -> bytes:
        body = b"WAVE" + b"".join(chunks)
        return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body

    def std(width: int, channels: int) -> bytes:
        scale = {1: 127, 2: 32767, 3: 8388607, 4: 2147483647}[width]
        v = np.round(np.repeat(x[:, None], channels, 1) * scale).astype(np.int64).ravel()
        raw = ((v + 128).astype("<u1").tobytes() if width == 1 else
               b"".join(int(s).to_bytes(width, "little", signed=True) for s in v))
        bio = io.BytesIO()
        with wave.open(bio, "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(width)
            w.setframerate(8000)
            w.writeframes(raw)
        return bio.getvalue()

    pcm16 = (np.round(x * 32767).astype("<i2")).tobytes()
    stereo_f64 = np.repeat(x[:, None], 2, 1).astype("<f8").tobytes()
    six_f32 = np.repeat(x[:, None], 6, 1).astype("<f4").tobytes()
    pcm24_20 = b"".join(int(s << 4).to_bytes(3, "little", signed=True) for s in np.round(np.repeat(x[:, None], 2, 1) * 524287).astype(int).ravel())
    write_wav(folder / "edgeship.wav", x, 16000)
    plan = {
        "std-8": std(1, 1), "std-16": std(2, 1), "std-16-stereo": std(2, 2), "std-24": std(3, 1), "std-32": std(4, 2),
        "edgeship": (folder / "edgeship.wav").read_bytes(),
        "float32": riff(fmt(3, 1, 44100, 32), chunk(b"fact", struct.pack("<I", 300)), chunk(b"data", x.astype("<f4").tobytes())),
        "float64-stereo": riff(fmt(3, 2, 48000, 64), chunk(b"data", stereo_f64)),
        "ext-pcm24": riff(fmt(0xFFFE, 2, 96000, 24, sub=1, valid=20), chunk(b"data", pcm24_20)),
        "ext-float-6ch": riff(fmt(0xFFFE, 6, 22050, 32, sub=3), chunk(b"data", six_f32)),
        "pcm12": riff(fmt(1, 1, 11025, 12), chunk(b"data", (np.round(x * 2047).astype("<i2") << 4).astype("<i2").tobytes())),
        "chunked": riff(chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00Lavf\x00"), fmt(1, 1, 16000, 16), chunk(b"bext", b"x" * 601),
                        chunk(b"data", pcm16[:-2]), chunk(b"LIST", b"INFOICMT\x03\x00\x00\x00ab\x00")),
        "stream": riff(fmt(1, 1, 16000, 16), chunk(b"data", pcm16, size=0xFFFFFFFF), size=0xFFFFFFFF),
        "alaw": riff(fmt(6, 1, 8000, 8), chunk(b"fact", struct.pack("<I", 300)), chunk(b"data", bytes(range(256)))),
    }
    return [Seed(f"wav-{name}", "wav", {"audio.wav": data}, "audio.wav") for name, data in plan.items()]


# ---- what a reader documents it returns ------------------------------------------------------

def check_wav(value: Any) -> None:
    """read_wav / decode_wav: (mono float32 samples, at least one, each in [-1, 1]; a rate in range)."""
    import numpy as np

    from edgeship.readers.audio import MAX_RATE, MIN_RATE

    if not isinstance(value, tuple) or len(value) != 2:
        raise ContractError(f"read_wav returned {type(value).__name__}, not (samples, rate)")
    x, rate = value
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 1 or not x.size:
        raise ContractError(f"read_wav returned samples {type(x).__name__} {getattr(x, 'shape', '')} "
                            f"{getattr(x, 'dtype', '')}, not a non-empty 1-d float32 array")
    if not np.isfinite(x).all() or np.abs(x).max() > 1.0:
        raise ContractError(f"read_wav returned samples outside [-1, 1] (from {x.min()} to {x.max()})")
    if type(rate) is not int or not MIN_RATE <= rate <= MAX_RATE:
        raise ContractError(f"read_wav returned the rate {rate!r}")


def check_json(value: Any) -> None:
    """JSON values only (NaN and Infinity read as Python's json writes them, as documented), nested
    no deeper than the readers' limit."""
    from edgeship.readers import MAX_DEPTH, value_depth

    if value_depth(value) > MAX_DEPTH:
        raise ContractError(f"read_json returned a value nested {value_depth(value)} deep (limit {MAX_DEPTH})")
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise ContractError("read_json returned a mapping with a key that is not a string")
            stack += list(v.values())
        elif isinstance(v, list):
            stack += v
        elif not (v is None or isinstance(v, (str, int, float, bool))):
            raise ContractError(f"read_json returned a {type(v).__name__}")


def check_arrays(value: Any) -> None:
    import numpy as np

    if not isinstance(value, dict) or not value:
        raise ContractError(f"read_arrays returned {type(value).__name__} {len(value) if isinstance(value, dict) else ''}")
    for k, a in value.items():
        if not isinstance(a, np.ndarray):
            raise ContractError(f"read_arrays[{k!r}] is a {type(a).__name__}")
        if a.dtype.hasobject or a.dtype.kind not in "biuf" or a.dtype.fields is not None:
            raise ContractError(f"read_arrays[{k!r}] has dtype {a.dtype}")
        if a.ndim < 1:
            raise ContractError(f"read_arrays[{k!r}] is {a.ndim}-d")
        if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
            raise ContractError(f"read_arrays[{k!r}] holds NaN or infinity")


def check_rgb(value: Any) -> None:
    import numpy as np

    from edgeship.readers.images import MAX_PIXELS

    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] != 3:
        raise ContractError(f"decode_image returned {type(value).__name__} "
                            f"{getattr(value, 'shape', '')} {getattr(value, 'dtype', '')}, not HxWx3 uint8")
    if value.shape[0] < 1 or value.shape[1] < 1:
        raise ContractError(f"decode_image returned an empty image {value.shape}")
    if value.shape[0] * value.shape[1] > MAX_PIXELS:
        raise ContractError(f"decode_image returned {value.shape[0]}x{value.shape[1]} = "
                            f"{value.shape[0] * value.shape[1]:,} pixels, more than MAX_PIXELS ({MAX_PIXELS:,})")


def check_zip(z: Any) -> None:
    import zipfile
    from pathlib import PurePosixPath

    try:
        if not isinstance(z, zipfile.ZipFile):
            raise ContractError(f"open_zip returned a {type(z).__name__}")
        for info in z.infolist():
            n = info.filename
            if n.startswith("/") or "\\" in n or "\x00" in n or ".." in PurePosixPath(n).parts:
                raise ContractError(f"open_zip passed a member named {n[:80]!r}")
            if info.flag_bits & 1 or info.compress_type not in (0, 8, 12, 14):
                raise ContractError(f"open_zip passed member {n[:80]!r} (flags {info.flag_bits:#x}, "
                                    f"method {info.compress_type})")
    finally:
        if isinstance(z, zipfile.ZipFile):
            z.close()


def check_onnx(m: Any) -> None:
    import onnx

    if not isinstance(m, onnx.ModelProto):
        raise ContractError(f"parse_onnx returned a {type(m).__name__}")


def check_text(value: Any, p: Path) -> None:
    """read_text: the file's UTF-8 text, a BOM dropped, nothing else changed."""
    if not isinstance(value, str):
        raise ContractError(f"read_text returned a {type(value).__name__}")
    try:
        want = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ContractError("read_text returned text from a file that is not UTF-8") from None
    if value != want:
        at = next((k for k, (a, b) in enumerate(zip(value, want)) if a != b), min(len(value), len(want)))
        raise ContractError(f"read_text returned text that is not the file's (from character {at}: {value[at:at + 20]!r}, "
                            f"the file has {want[at:at + 20]!r})")


def check_labels(value: Any) -> None:
    """read_labels: a tuple of labels (an empty file is refused), each a printable single line."""
    if not isinstance(value, tuple) or not value:
        raise ContractError(f"read_labels returned {type(value).__name__} {value!r:.60}")
    for k, lab in enumerate(value):
        if not isinstance(lab, str):
            raise ContractError(f"read_labels returned label {k} as a {type(lab).__name__}")
        if not lab.isprintable() or len(lab.splitlines()) > 1:
            raise ContractError(f"read_labels returned label {k} {lab[:60]!r}: not a printable single line")


def _left_in_case(folder: Path, inputs: set[str], allowed: set[str], refused: bool) -> None:
    """What the extraction left in the case folder beside its inputs and ``allowed``: a file or folder
    other than its own temp folders was written through a link (an escape); a temp folder or, after
    a refusal, ``dest`` is a leftover (wrong)."""
    extra = sorted(set(os.listdir(folder)) - inputs - allowed)
    own = [x for x in extra if x == "dest" or x.startswith(".dest.")]
    others = [x for x in extra if x not in own]
    if others:
        raise EscapeError(f"created {', '.join(others[:5])} in the case folder, outside dest")
    if own:
        raise ContractError(f"{'a refused' if refused else 'an'} extraction left {', '.join(own[:3])} in the case folder")


def check_extracted(folder: Path, dest: Path, inputs: set[str], names: Any) -> None:
    """safe_extract: the member names it returns (relative, never climbing out, each there), nothing
    made in the case folder but ``dest`` (anything else was written through a link: an escape), and
    in ``dest`` only folders, regular files and symbolic links without set-id bits, no link the kernel
    follows out of ``dest``, no regular file hard-linked with one outside it."""
    from pathlib import PurePosixPath

    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ContractError(f"safe_extract returned a {type(names).__name__}, not a list of names")
    for n in names:
        if n.startswith("/") or "\\" in n or "\x00" in n or ".." in PurePosixPath(n).parts:
            raise ContractError(f"safe_extract extracted a member named {n[:80]!r}")
    _left_in_case(folder, inputs, {"dest"}, refused=False)
    if dest.is_symlink() or not dest.is_dir():
        raise ContractError("safe_extract returned, but dest is not a folder")
    top = os.lstat(dest)
    inside = {(top.st_dev, top.st_ino)}
    links: list[tuple[str, tuple[int, int], str]] = []
    shared: dict[tuple[int, int], list[int]] = {}
    for root, dirs, files, fd in os.fwalk(dest):
        for name in dirs + files:
            rel = os.path.normpath(os.path.join(os.path.relpath(root, dest), name))[:200]
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                try:
                    to = os.stat(name, dir_fd=fd)
                except OSError:  # dangling, a loop, or too long a path: it leads nowhere
                    continue
                links.append((rel, (to.st_dev, to.st_ino), os.readlink(name, dir_fd=fd)))
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise ContractError(f"safe_extract made {rel!r}, {_KIND_NAMES.get(stat.S_IFMT(st.st_mode), 'a special file')}")
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                raise ContractError(f"safe_extract made {rel!r} with mode {stat.filemode(st.st_mode)} (set-id)")
            inside.add((st.st_dev, st.st_ino))
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                shared.setdefault((st.st_dev, st.st_ino), [st.st_nlink, 0])[1] += 1
    for rel, to_id, to in links:
        if to_id not in inside:
            raise ContractError(f"safe_extract made a symbolic link {rel!r} -> {to[:100]!r} that leads outside dest")
    for (nlink, seen) in shared.values():
        if nlink > seen:
            raise ContractError(f"safe_extract made a file hard-linked with {nlink - seen} file(s) outside dest")
    for n in names:
        p = os.path.join(dest, n)
        if len(os.fsencode(p)) < 4000 and not os.path.lexists(p):
            raise ContractError(f"safe_extract returned {n[:80]!r}, which is not in dest")


_KIND_NAMES = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


# ---- the targets -------------------------------------------------------------------------------

def _spec(name: str, shape: list, layout: str | None = None) -> Any:
    from edgeship.artifact import TensorSpec

    return TensorSpec(name=name, shape=tuple(shape), dtype="float32", layout=layout)


def json_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship.readers import read_json
    from edgeship.sources import parse_preprocess, read_labels

    if p.name == "preprocess.json":
        inputs = [_spec("image", ["batch", 3, 32, 32], "NCHW")]
        return [("read_json", lambda: read_json(p, "--preprocess file"), check_json),
                ("parse_preprocess", lambda: parse_preprocess(str(p), inputs), None)]
    if p.name.startswith("labels."):
        outputs = [_spec("logits", ["batch", 10])]
        return [("read_labels", lambda: read_labels(p, outputs), None)]
    return [("read_json", lambda: read_json(p, "record"), check_json)]


def manifest_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship.manifest import listed_paths, load_manifest, read_manifest

    st: dict[str, Any] = {}

    def load() -> Any:
        st["m"] = load_manifest(folder)
        return st["m"]

    def use() -> None:
        m = st["m"]
        if m is None:
            return
        _ = (m.source, m.config, m.records, m.stages)
        for r in m.records:
            m.artifact_folder(r)
        m.benchmark()
        m.benchmark("onnx-fp32")
        listed_paths(m.doc)

    return [("read_manifest", lambda: read_manifest(folder), None), ("load_manifest", load, None),
            ("Manifest accessors", use, None)]


def artifact_seeds(folder: Path) -> list[Seed]:
    model = tiny_onnx("classifier").SerializeToString()
    rec = artifact_record()
    rec["files"] = [{"path": "model.onnx", "sha256": hashlib.sha256(model).hexdigest(), "size": len(model)}]
    rec["inputs"] = [{"name": "x", "shape": ["batch", 3, 8, 8], "dtype": "float32", "layout": "NCHW"}]
    rec["outputs"] = [{"name": "y", "shape": ["batch", 4], "dtype": "float32", "layout": None}]
    rec["preprocess"].update(input="x", height=8, width=8, output="logits")
    rec["labels_count"] = 4
    labels = b"cat\ndog\nbird\nfish\n"
    files = {"artifact.json": _jbytes(rec), "labels.txt": labels, "model.onnx": model}
    quant = dict(rec, precision="int8", details={"quantization": {"method": "static", "calibration": "minmax"}})
    return [Seed("artifact", "json", files, "artifact.json"),
            Seed("artifact-int8", "json", {**files, "artifact.json": _jbytes(quant)}, "artifact.json"),
            Seed("artifact-labels", "text", files, "labels.txt")]


def artifact_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    import edgeship
    from edgeship.artifact import read_artifact

    st: dict[str, Any] = {}

    def read() -> Any:
        st["a"] = read_artifact(folder)
        return st["a"]

    def use() -> None:
        a = st["a"]
        json.dumps(a.record())
        _ = (a.digest, a.size_bytes, a.model_path, a.location, a.verification and a.verification.verified)
        a.verify_files()

    return [("read_artifact", read, None), ("Artifact use", use, None),
            ("read_artifact(artifact.json)", lambda: read_artifact(folder / "artifact.json"), None),
            ("load_artifact", lambda: edgeship.load_artifact(folder), None)]


def config_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship import sweep
    from edgeship.config import DeployConfig, load_config

    st: dict[str, Any] = {}

    def load() -> Any:
        st["data"] = load_config(p)
        return st["data"]

    def build() -> Any:  # as ``edgeship deploy --config FILE MODEL`` does with what load_config gave
        opts = dict(st["data"])
        opts["model"] = "tinymodels:tiny_classifier"
        return DeployConfig.build(**opts)

    def build_sweep() -> Any:  # sweep.load (load_config, then SweepConfig.build) without reading the file again
        data = dict(st["data"])
        with _patched(sweep, "load_config", lambda path: data):
            return sweep.load(p)

    return [("load_config", load, None), ("sweep.load" if p.stem == "sweep" else "DeployConfig.build",
                                           build_sweep if p.stem == "sweep" else build, None)]


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def profile_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship.profiles import load_profile

    return [("load_profile", lambda: load_profile(str(p)), None)]


def array_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship.readers.arrays import read_arrays

    return [("read_arrays", lambda: read_arrays(p, "data file"), check_arrays)]


def image_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship.artifact import Preprocess
    from edgeship.data import preprocess_image
    from edgeship.readers.images import decode_image

    spec = Preprocess(input="x", height=32, width=32)

    def from_bytes() -> Any:
        with open(p, "rb") as fh:
            return decode_image(io.BytesIO(fh.read()), "the image bytes")

    return [("decode_image(path)", lambda: decode_image(p, "image"), check_rgb),
            ("decode_image(bytes)", from_bytes, check_rgb),
            ("preprocess_image", lambda: preprocess_image(str(p), spec), None)]


def zip_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship.readers.archives import open_zip
    from edgeship.sources import sniff_format

    return [("open_zip", lambda: open_zip(p, "archive"), check_zip), ("sniff_format", lambda: sniff_format(p), None)]


PT2_FULL_EVERY = 1  # the full load (torch.export.load) for every case; hostile cases always


def pt2_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship.sources import load_source, sniff_format
    from edgeship.sources.pt2 import _check_pt2_pickles

    stages: list[Stage] = [("sniff_format", lambda: sniff_format(p), None),
                           ("_check_pt2_pickles", lambda: _check_pt2_pickles(p, allow_pickle=False), None)]
    hostile = any("hostile" in m for m in case.mutations)
    if hostile or case.index % PT2_FULL_EVERY == 0:
        stages.append(("load_source", lambda: load_source(str(p)), None))
    return stages


def onnx_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship.readers.onnx import parse_onnx
    from edgeship.sources import load_onnx_model, load_source, sniff_format
    from edgeship.targets.onnx import onnx_artifact_record

    return [("sniff_format", lambda: sniff_format(p), None),
            ("parse_onnx", lambda: parse_onnx(p), check_onnx),
            ("load_onnx_model", lambda: load_onnx_model(p), None),
            ("load_source", lambda: load_source(str(p)), None),
            ("onnx_artifact_record", lambda: onnx_artifact_record(str(p)), None)]


def tar_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship._archive import safe_extract
    from edgeship.errors import EdgeshipError

    dest = folder / "dest"
    inputs = {x for x in os.listdir(folder) if x != "dest" and not x.startswith(".dest.")}  # the case's files (a replay's too)

    def extract() -> Any:
        try:
            return safe_extract(p, dest)
        except Exception as e:  # what a refusal (or a crash) left behind is checked; then it stands
            try:
                _left_in_case(folder, inputs, set(), refused=True)
            except EscapeError:
                raise
            except ContractError:
                if isinstance(e, EdgeshipError):
                    raise
            raise

    return [("safe_extract", extract, lambda names: check_extracted(folder, dest, inputs, names))]


def text_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    from edgeship.readers import read_text
    from edgeship.sources import read_labels

    return [("read_text", lambda: read_text(p, "labels file"), lambda v: check_text(v, p)),
            ("read_labels", lambda: read_labels(p, ()), check_labels)]


def wav_stages(folder: Path, p: Path, case: Case) -> list[Stage]:
    import numpy as np

    from edgeship.readers.audio import decode_wav, read_audio_folder, read_wav, write_wav

    read: list = []

    def from_path() -> Any:
        read.append(read_wav(p))
        return read[0]

    def from_bytes() -> Any:
        with open(p, "rb") as fh:
            value = decode_wav(fh.read(), "the uploaded audio")
        check_wav(value)
        if value[1] != read[0][1] or not np.array_equal(value[0], read[0][0]):
            raise ContractError("decode_wav of the file's bytes differs from read_wav of the file")
        return value

    def folder_read() -> Any:
        got = read_audio_folder(folder, 16000)
        x, rate = read[0]
        if [n for n, _ in got] != [p.name] or got[0][1].dtype != np.float32 or got[0][1].ndim != 1:
            raise ContractError(f"read_audio_folder returned {[(n, getattr(a, 'shape', a)) for n, a in got]!r:.200}")
        if len(got[0][1]) != -(-len(x) * 16000 // rate):
            raise ContractError(f"{len(x)} samples at {rate} Hz resampled to {len(got[0][1])} at 16000 Hz")
        return got

    def round_trip() -> Any:
        x, rate = read[0]
        again = read_wav(write_wav(folder / "again.wav", x, rate))
        want = np.clip(np.round(x.astype(np.float64) * 32768), -32768, 32767).astype(np.float32) / 32768
        if again[1] != rate or not np.array_equal(again[0], want):
            raise ContractError("write_wav then read_wav does not give the samples back (to 16 bits)")
        return again

    return [("read_wav", from_path, check_wav), ("decode_wav(bytes)", from_bytes, None),
            ("read_audio_folder", folder_read, None), ("write_wav", round_trip, None)]


def _manifest_seeds(folder: Path) -> list[Seed]:
    seeds = [Seed("manifest", "json", {"manifest.json": _jbytes(manifest_doc())}, "manifest.json"),
             Seed("manifest-empty", "json", {"manifest.json": _jbytes({"artifacts": []})}, "manifest.json")]
    if REAL_RECORDS is not None and (REAL_RECORDS / "manifest.json").is_file():
        seeds.append(Seed("manifest-real", "json", {"manifest.json": (REAL_RECORDS / "manifest.json").read_bytes()},
                          "manifest.json"))
    return seeds


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("json", "read_json (records), parse_preprocess (--preprocess file), read_labels", json_seeds, json_stages),
    Target("manifest", "read_manifest / load_manifest and the Manifest accessors", _manifest_seeds, manifest_stages),
    Target("artifact", "read_artifact (artifact.json, labels.txt) and load_artifact", artifact_seeds, artifact_stages),
    Target("config", "load_config (YAML/JSON) -> DeployConfig.build, sweep.load", config_seeds, config_stages),
    Target("profile", "load_profile (device profiles, JSON/YAML)", profile_seeds, profile_stages),
    Target("arrays", "readers.arrays.read_arrays (.npy/.npz)", array_seeds, array_stages),
    Target("images", "readers.images.decode_image, data.preprocess_image", image_seeds, image_stages),
    Target("zip", "readers.archives.open_zip, sources.sniff_format", zip_seeds, zip_stages),
    Target("tar", "_archive.safe_extract (release bundles: .tar, .tar.gz/.xz/.bz2)", tar_seeds, tar_stages),
    Target("text", "readers.read_text, sources.read_labels (labels files: lines or a JSON list)", labels_seeds, text_stages),
    Target("pt2", "sniff_format, _check_pt2_pickles, load_source (torch.export.load)", pt2_seeds, pt2_stages,
           quiet=("torch.export",)),
    Target("onnx", "sniff_format, parse_onnx, load_onnx_model, load_source, the bare-.onnx artifact", onnx_seeds,
           onnx_stages),
    Target("wav", "readers.audio: read_wav, decode_wav, read_audio_folder (resampled to 16 kHz), write_wav", wav_seeds,
           wav_stages),
]}
