"""The benchmark worker: one artifact (or the torch baseline) at one thread count, in a fresh process.

:func:`run` is called with the spec by ``python -P -m edgeship._child`` (the one child-process
protocol, :func:`edgeship.isolate.run_child`, started by :func:`edgeship.bench.child.run_worker`):
the limits of every untrusted run are applied first, the JSON result goes to the parent, and an
exception comes back as a typed error dict. Progress markers (:func:`edgeship.isolate.phase`) go to
stderr so the parent can say where a process hung or crashed.

Spec keys (the parent, :mod:`edgeship.bench.harness`, writes them):

``kind``          ``"artifact"`` | ``"source"`` (the PyTorch eager baseline) | ``"peaks"`` (GEMM peaks)
``artifact``      artifact folder (kind artifact)
``origin``, ``source_options``   model spec and SourceConfig options (kind source)
``threads``       runtime thread count, set explicitly in the runtime
``cpus``          CPU ids to pin this process to (``os.sched_setaffinity``), or null
``warmup``, ``runs``             untimed and timed warm calls at batch 1
``fresh_input``   a new random input before every call (generated outside the timed region)
``batch_sizes``, ``throughput_runs``   throughput at larger batches when the batch axis is dynamic
``register``      ``{name: "module:Class"}`` targets to register in this process first
``sys_path``      the parent's import path (without the current folder), appended so factories and
                  plugins import alike
``spawned_at``    the parent's ``time.monotonic()`` just before it started this process

The parent starts this process with ``python -P``, so the current folder is not on its import path.

Cold start is measured inside this fresh process: ``process_start`` (interpreter, edgeship
import and the child protocol's start, from the parent's spawn), ``runtime_import`` (the target's runtime modules),
``model_load`` (artifact record + runner/session creation, or building the torch model) and
``first_inference``.
"""

from __future__ import annotations

import time

T_START = time.monotonic()  # first line after the interpreter, the edgeship package import and the child's start

import gc  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from .._util import article, check_example_size  # noqa: E402
from ..cpus import pin  # noqa: E402
from ..errors import UsageError  # noqa: E402
from ..isolate import phase  # noqa: E402

RAPL_ROOT = Path("/sys/class/powercap")


def _status_bytes(key: str) -> int | None:
    """VmHWM / VmRSS of this process from /proc/self/status, in bytes (None off Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rapl_domains() -> list[Path]:
    """Readable top-level RAPL package domains (intel-rapl:N), if the machine exposes them."""
    out = []
    if RAPL_ROOT.is_dir():
        for d in sorted(RAPL_ROOT.glob("intel-rapl:*")):
            if d.name.count(":") == 1 and os.access(d / "energy_uj", os.R_OK):
                out.append(d)
    return out


def _rapl_read(domains: list[Path]) -> list[int] | None:
    try:
        return [int((d / "energy_uj").read_text()) for d in domains]
    except (OSError, ValueError):
        return None


def _rapl_delta(domains: list[Path], a: list[int] | None, b: list[int] | None) -> int | None:
    if a is None or b is None:
        return None
    total = 0
    for d, x, y in zip(domains, a, b):
        if y < x:  # the counter wrapped
            try:
                y += int((d / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                return None
        total += y - x
    return total


# ---- inputs -----------------------------------------------------------------------------

class TaskSpecs(list):  # type: ignore[type-arg]
    """Input specs with the shapes and fixed values a task record gives them (``fixed``: input name
    -> the array it always takes)."""

    fixed: dict[str, Any] = {}


def task_specs(art: Any, specs: Any) -> Any:
    """``specs`` as ``art``'s task calls the model: a voice-activity stream's audio input one chunk
    with its context ([1, context + chunk]), its rate input the task's sample rate and its carried
    state zeros at batch 1 (one call of the stream, what a device pays per chunk); other tasks'
    specs as they are."""
    task = getattr(art, "task", None)
    if getattr(task, "kind", None) != "voice_activity":
        return specs
    import numpy as np

    width = task.context + task.chunk
    out = TaskSpecs(s.model_copy(update={"shape": (1, width)}) if s.name == task.audio_input else s for s in specs)
    out.fixed = {s.name: np.array(task.sample_rate, dtype=np.dtype(s.dtype)) for s in specs
                 if s.name == task.rate_input and not s.shape}
    out.fixed.update({s.name: np.zeros(tuple(d if isinstance(d, int) else 1 for d in s.shape), np.dtype(s.dtype))
                      for s in specs if s.name in task.carry.values()})
    return out


def make_inputs(specs: Any, batch: int, rng: Any) -> dict[str, Any]:
    """Random inputs for ``specs``: the first dynamic axis is the batch, other dynamic axes 1.

    Floats are standard normal; integers are 0/1 (valid for any embedding or index input);
    booleans random. An input a task fixes (:func:`task_specs`) takes its value.
    """
    import numpy as np

    feeds = {}
    fixed = getattr(specs, "fixed", {})
    for s in specs:
        if s.name in fixed:
            feeds[s.name] = fixed[s.name]
            continue
        shape = tuple(d if isinstance(d, int) else (batch if i == 0 else 1) for i, d in enumerate(s.shape))
        dt = np.dtype(s.dtype)
        check_example_size(shape, dt.itemsize, f"input {s.name!r}")  # named before anything allocates
        if np.issubdtype(dt, np.floating):
            a = rng.standard_normal(shape, dtype=np.float32).astype(dt, copy=False)
        elif dt == np.bool_:
            a = rng.random(shape) < 0.5
        else:
            a = rng.integers(0, 2, size=shape).astype(dt)
        feeds[s.name] = a
    return feeds


def _batch_is_dynamic(specs: Any) -> bool:
    return bool(specs) and all(s.shape and not isinstance(s.shape[0], int) for s in specs)


class _SourceRunner:
    """The source model in PyTorch eager, behind the Runner's ``inputs`` / ``run``."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.inputs = source.inputs

    def run(self, feeds: dict[str, Any]) -> Any:
        return self.source.run([feeds[s.name] for s in self.inputs])


# ---- loading ----------------------------------------------------------------------------

def _load_artifact_runner(spec: dict[str, Any], info: dict[str, Any]) -> tuple[Any, dict[str, float]]:
    from edgeship.targets import load_artifact, register_target, runner_for, target_of

    cold: dict[str, float] = {}
    for name, ref in (spec.get("register") or {}).items():
        register_target(name, ref)
    t0 = time.monotonic()
    art = load_artifact(spec["artifact"])
    t_record = time.monotonic() - t0

    phase("runtime_import")
    t0 = time.monotonic()
    target = target_of(art)
    modules = tuple(getattr(target, "runtime_modules", None) or target.requires)
    versions = {}
    for m in modules:
        try:
            mod = importlib.import_module(m)
        except ImportError:
            continue  # runner_for names the missing extra
        versions[m] = str(getattr(mod, "__version__", "?"))
    cold["runtime_import"] = time.monotonic() - t0
    info["runtime"] = {"target": target.name, "modules": versions}
    info["rss_after_import_bytes"] = _status_bytes("VmRSS")

    phase("model_load")
    t0 = time.monotonic()
    runner = runner_for(art, threads=spec["threads"])
    cold["model_load"] = t_record + time.monotonic() - t0
    info["rss_after_load_bytes"] = _status_bytes("VmRSS")
    specs = task_specs(art, getattr(runner, "inputs", None) or art.inputs)
    return (runner, specs), cold


def _load_source_runner(spec: dict[str, Any], info: dict[str, Any]) -> tuple[Any, dict[str, float]]:
    cold: dict[str, float] = {}
    threads = int(spec["threads"])
    phase("runtime_import")
    t0 = time.monotonic()
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (cannot happen in a fresh process, but harmless)
        pass
    cold["runtime_import"] = time.monotonic() - t0
    info["runtime"] = {"target": "torch-eager", "modules": {"torch": torch.__version__}}
    info["rss_after_import_bytes"] = _status_bytes("VmRSS")

    phase("model_load")
    t0 = time.monotonic()
    from edgeship.config import SourceConfig
    from edgeship.sources import load_source

    cfg = SourceConfig.build(**(spec.get("source_options") or {}))
    source = load_source(spec["origin"], **cfg.source_kwargs())
    if source.kind not in ("torch", "pt2"):
        raise UsageError(f"the baseline must be a PyTorch model; {spec['origin']!r} is {article(source.kind)} model",
                         hint="give --baseline a built-in name, a factory pkg.mod:fn, a .pt2 or a checkpoint")
    cold["model_load"] = time.monotonic() - t0
    info["rss_after_load_bytes"] = _status_bytes("VmRSS")
    info["source"] = {"name": source.name, "digest": source.digest, "kind": source.kind, "origin": source.origin}
    info["size_bytes"] = source.path.stat().st_size if source.path is not None and source.path.is_file() else None
    if torch.get_num_threads() != threads:
        info.setdefault("notes", []).append(f"torch runs {torch.get_num_threads()} threads, asked {threads}")
    return (_SourceRunner(source), source.inputs), cold


# ---- timing -----------------------------------------------------------------------------

def _timed_calls(runner: Any, specs: Any, batch: int, n: int, fresh: bool, rng: Any,
                 feeds: dict[str, Any] | None, max_seconds: float | None = None,
                 min_calls: int = 1) -> tuple[list[float], float]:
    """``n`` calls (fewer, not under ``min_calls``, once ``max_seconds`` of calls have passed);
    returns wall ms per call and the process CPU seconds spent inside the calls."""
    perf = time.perf_counter_ns
    outside = getattr(runner, "outside_cpu_s", None)  # a runtime in other processes (a browser's renderer)

    def other() -> int:
        return int(outside() * 1e9) if callable(outside) else 0

    def cpu_start() -> int:  # reading the other processes' time is left out of this one's
        o = other()
        return time.process_time_ns() + o

    def cpu_end() -> int:
        p = time.process_time_ns()
        return p + other()

    samples: list[float] = []
    cpu_ns = 0
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    deadline = perf() + int(max_seconds * 1e9) if max_seconds else None
    try:
        for i in range(n):
            if deadline is not None and i >= min_calls and perf() > deadline:
                break
            if fresh or feeds is None:
                feeds = make_inputs(specs, batch, rng)
            c0 = cpu_start()
            t0 = perf()
            runner.run(feeds)
            t1 = perf()
            c1 = cpu_end()
            inside = getattr(runner, "last_run_ms", None)  # the runtime's own timing (the web runner's page)
            samples.append(inside if inside is not None else (t1 - t0) / 1e6)
            cpu_ns += c1 - c0
    finally:
        if was:
            gc.enable()
    return samples, cpu_ns / 1e9


def bench_model(spec: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"notes": []}
    if spec["kind"] == "artifact":
        (runner, specs), cold = _load_artifact_runner(spec, info)
    else:
        (runner, specs), cold = _load_source_runner(spec, info)
    try:
        return _bench_runner(spec, runner, specs, cold, info)
    finally:
        close = getattr(runner, "close", None)  # a runner with a browser or a server stops it now, not at exit
        if callable(close):
            close()


def _bench_runner(spec: dict[str, Any], runner: Any, specs: Any, cold: dict[str, float],
                  info: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(int(spec.get("seed", 0)))
    feeds = make_inputs(specs, 1, rng)

    phase("first_inference")
    t0 = time.monotonic()
    runner.run(feeds)
    t_first = time.monotonic()
    cold["first_inference"] = t_first - t0
    spawned = spec.get("spawned_at")
    cold["process_start"] = max(0.0, T_START - spawned) if spawned is not None else None
    cold["total"] = t_first - spawned if spawned is not None else None

    phase("warmup")
    fresh = bool(spec.get("fresh_input"))
    if spec.get("warmup", 0):
        _timed_calls(runner, specs, 1, int(spec["warmup"]), fresh, rng, feeds)

    phase("warm")
    domains = rapl_domains()
    r0 = _rapl_read(domains) if domains else None
    w0 = time.perf_counter()
    samples, cpu_s = _timed_calls(runner, specs, 1, int(spec["runs"]), fresh, rng, feeds,
                                  spec.get("max_seconds"), int(spec.get("min_runs") or 1))
    wall = time.perf_counter() - w0
    r1 = _rapl_read(domains) if domains else None
    warm = {"samples_ms": samples, "cpu_s": cpu_s, "wall_s": wall,
            "rapl_uj": _rapl_delta(domains, r0, r1) if domains else None}
    memory = {"peak_rss_bytes": _status_bytes("VmHWM"), "rss_after_import_bytes": info.pop("rss_after_import_bytes"),
              "rss_after_load_bytes": info.pop("rss_after_load_bytes")}
    info["notes"].extend(getattr(runner, "bench_notes", ()))
    apart = getattr(runner, "outside_peak_rss_bytes", None)  # the model runs in other processes (a browser)
    if callable(apart) and (peak := apart()) is not None:
        memory["worker_peak_rss_bytes"] = memory["peak_rss_bytes"]
        memory["peak_rss_bytes"] = peak

    throughput = []
    batch_sizes = [int(b) for b in spec.get("batch_sizes") or []]
    if batch_sizes:
        if _batch_is_dynamic(specs):
            for b in batch_sizes:
                phase(f"throughput_b{b}")
                tp_feeds = make_inputs(specs, b, rng)
                for _ in range(2):  # the first calls at a new shape allocate: untimed
                    runner.run(tp_feeds)
                s, c = _timed_calls(runner, specs, b, int(spec.get("throughput_runs", 5)), fresh, rng, tp_feeds)
                throughput.append({"batch": b, "samples_ms": s, "cpu_s": c})
            memory["peak_rss_throughput_bytes"] = _status_bytes("VmHWM")
        else:
            info["notes"].append("no throughput at larger batches: the batch axis is static")
    phase("done")
    return {
        "ok": True, "kind": spec["kind"], "pid": os.getpid(), "threads": spec["threads"],
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs],
        "cold": cold, "warm": warm, "throughput": throughput, "memory": memory,
        "rapl_domains": [d.name for d in domains], **info,
    }


# ---- machine peaks ----------------------------------------------------------------------

def _gemm_session(ort: Any, n: int, precision: str, threads: int) -> tuple[Any, dict[str, Any]]:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if precision == "fp32":
        b = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["C"])
        a_t, c_t = TensorProto.FLOAT, TensorProto.FLOAT
        feed = {"A": rng.standard_normal((n, n), dtype=np.float32)}
    else:  # uint8 activations x int8 weights, the fast int8 recipe for CNNs in ONNX Runtime
        b = numpy_helper.from_array(rng.integers(-127, 128, (n, n)).astype(np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B"], ["C"])
        a_t, c_t = TensorProto.UINT8, TensorProto.INT32
        feed = {"A": rng.integers(0, 256, (n, n)).astype(np.uint8)}
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("A", a_t, [n, n])],
                              [helper.make_tensor_value_info("C", c_t, [n, n])], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]), feed


def measure_peaks(spec: dict[str, Any]) -> dict[str, Any]:
    """Best GEMM rate (2·n³ ops per call) over square sizes 512 and 1024, with ONNX Runtime."""
    import onnxruntime as ort

    threads = int(spec["threads"])
    budget = float(spec.get("seconds_per_size", 0.4))
    out: dict[str, Any] = {"ok": True, "kind": "peaks", "threads": threads, "runtime": f"onnxruntime {ort.__version__}",
                           "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    for precision in ("fp32", "int8"):
        phase(f"peaks_{precision}")
        best = 0.0
        for n in (512, 1024):
            sess, feed = _gemm_session(ort, n, precision, threads)
            sess.run(None, feed)
            fastest = float("inf")
            t_end = time.perf_counter() + budget
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                sess.run(None, feed)
                fastest = min(fastest, time.perf_counter() - t0)
            best = max(best, 2.0 * n ** 3 / fastest / 1e9)
        out[f"{precision}_gops"] = round(best, 1)
    return out


# ---- the entry -------------------------------------------------------------------------

def run(spec: dict[str, Any]) -> dict[str, Any]:
    """The worker's entry, called by ``python -P -m edgeship._child`` (:func:`edgeship.bench.child.run_worker`)
    with the limits already applied: the parent's import path appended, this process pinned to
    ``spec["cpus"]``, then the measurement ``spec["kind"]`` names."""
    for p in spec.get("sys_path") or []:
        if p not in sys.path:
            sys.path.append(p)
    pin(spec.get("cpus"), spec.get("threads"))
    kind = spec.get("kind")
    if kind == "peaks":
        return measure_peaks(spec)
    if kind in ("artifact", "source"):
        return bench_model(spec)
    raise ValueError(f"unknown worker kind {kind!r}")
