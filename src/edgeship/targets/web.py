"""Web target: the ONNX artifact for ``onnxruntime-web`` (wasm backend), run in a real browser.

The artifact is the onnx target's export at the same precision (fp32, or the int8 that came
through the shared int8 flow; one exporter, one quantiser) with onnxruntime-web's wasm build
vendored beside it, so a page serves it offline::

    model.onnx
    ort/ort.wasm.min.js                  onnxruntime-web's wasm-only bundle
    ort/ort-wasm-simd-threaded.mjs       its loader
    ort/ort-wasm-simd-threaded.wasm      ONNX Runtime's CPU kernels, compiled to WebAssembly (14 MB)
    ort/NOTICE.txt                       name, version, licence, where it came from, its hash

onnxruntime-web comes from the npm registry once (a pinned version, checked against the sha512
the registry published for it and the sha256 of each file kept) and is cached in
``$EDGESHIP_CACHE_DIR/onnxruntime-web-<version>/``. Offline, point ``EDGESHIP_ORT_WEB_TGZ`` at the
package tarball (``npm pack onnxruntime-web@<version>``); it is checked the same way.

The runner (:class:`WebRunner`) drives a headless Chromium through Playwright
(``EDGESHIP_CHROMIUM``, else Debian's ``/usr/bin/chromium``): a page served over http on loopback
by this process, every other request blocked, loads the session once; each call sends the inputs
in and reads the outputs back. ``last_run_ms`` is ``session.run`` as the page timed it
(``performance.now()``), so the benchmark reports in-browser latency without the transfer a real
page does not pay. Single-threaded wasm unless more threads are asked for, then the page is
served cross-origin isolated (COOP/COEP) so onnxruntime-web may start its worker threads.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import http.server
import io
import json
import os
import shutil
import socketserver
import sys
import tarfile
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import cache
from ..artifact import Artifact, Format, TensorSpec, sha256_file
from ..errors import FormatError, MissingExtraError, UnsupportedError, first_line, printable
from ..runner import Runner
from .base import Built, Target
from .onnx import MODEL_FILE, OnnxTarget

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

__all__ = ["WebTarget", "WebRunner", "session_extra", "ORT_WEB_VERSION", "ort_web_files", "chromium_path", "RUNTIME_DIR",
           "RUNTIME_FILES"]

ORT_WEB_VERSION = "1.30.0"
#: what the npm registry publishes as the tarball's integrity (dist.integrity)
ORT_WEB_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
ORT_WEB_BYTES = 33_106_585
#: the files a page needs (package path -> sha256), so a cached copy is checked, never trusted
RUNTIME_FILES = {
    "ort.wasm.min.js": "faece07e84faa9001f5104bbe4e5c70861d06cb2376a0dea1fa0ad33a67adc81",
    "ort-wasm-simd-threaded.mjs": "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b",
    "ort-wasm-simd-threaded.wasm": "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2",
}
RUNTIME_DIR = "ort"
NOTICE = "NOTICE.txt"
REGISTRY = "https://registry.npmjs.org"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic")
MAX_CALL_BYTES = 16 << 20  # inputs per page call (they cross as base64 text)
THREADS_NOTE = ("onnxruntime-web's wasm backend runs single-threaded unless the page is cross-origin isolated "
                "(served with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp); "
                "then ort.env.wasm.numThreads may be raised")


# ---- the vendored runtime ------------------------------------------------------------------

def _cached_ok(folder: Path) -> bool:
    return all((folder / n).is_file() and sha256_file(folder / n) == h for n, h in RUNTIME_FILES.items())


def _tarball(say: Any) -> bytes:
    local = os.environ.get("EDGESHIP_ORT_WEB_TGZ")
    if local:
        try:
            return Path(local).read_bytes()
        except OSError as e:
            raise UnsupportedError(f"EDGESHIP_ORT_WEB_TGZ={local} is not readable: {e.strerror}",
                                   hint=f"make it with: npm pack onnxruntime-web@{ORT_WEB_VERSION}") from None
    url = f"{os.environ.get('EDGESHIP_NPM_REGISTRY', REGISTRY).rstrip('/')}/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    say(f"downloading onnxruntime-web {ORT_WEB_VERSION} ({ORT_WEB_BYTES / 1e6:.0f} MB, once) from {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 - a fixed https registry address
            return r.read(ORT_WEB_BYTES + 1)
    except OSError as e:
        raise UnsupportedError(f"could not download onnxruntime-web {ORT_WEB_VERSION} from the npm registry: "
                               f"{first_line(e)}",
                               hint=f"on a machine with the registry: npm pack onnxruntime-web@{ORT_WEB_VERSION}, "
                                    "then set EDGESHIP_ORT_WEB_TGZ to that file") from None


def ort_web_files(say: Any = lambda _m: None) -> Path:
    """The folder holding onnxruntime-web's wasm runtime (:data:`RUNTIME_FILES`), fetched and
    checked once, then read from the cache (each file's sha256 checked on every use)."""
    folder = cache.kept(f"onnxruntime-web-{ORT_WEB_VERSION}")
    if _cached_ok(folder):
        return folder
    data = _tarball(say)
    algo, _, want = ORT_WEB_INTEGRITY.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        raise UnsupportedError(f"the onnxruntime-web {ORT_WEB_VERSION} tarball does not match the registry's "
                               f"published {algo} ({len(data)} bytes)",
                               hint="it is not the package edgeship pins; fetch it again "
                                    f"(npm pack onnxruntime-web@{ORT_WEB_VERSION})")
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for name in RUNTIME_FILES:  # only the named regular files: nothing else leaves the archive
                member = tar.getmember(f"package/dist/{name}")
                fh = tar.extractfile(member) if member.isfile() else None
                if fh is None:
                    raise UnsupportedError(f"onnxruntime-web {ORT_WEB_VERSION}: dist/{name} is not a file")
                (tmp / name).write_bytes(fh.read())
            pkg = json.loads(tar.extractfile(tar.getmember("package/package.json")).read())  # type: ignore[union-attr]
        (tmp / "package.json").write_text(json.dumps({k: pkg.get(k) for k in ("name", "version", "license")}) + "\n")
        if not _cached_ok(tmp):
            raise UnsupportedError(f"onnxruntime-web {ORT_WEB_VERSION}'s files differ from the ones edgeship pins")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def notice_text(folder: Path) -> str:
    try:
        lic = json.loads((folder / "package.json").read_text()).get("license") or "MIT"
    except (OSError, ValueError):
        lic = "MIT"
    files = "\n".join(f"  {n}  sha256 {h}" for n, h in RUNTIME_FILES.items())
    return (f"onnxruntime-web {ORT_WEB_VERSION} (wasm backend), (c) Microsoft Corporation, {lic} licence\n"
            f"https://www.npmjs.com/package/onnxruntime-web/v/{ORT_WEB_VERSION}\n"
            f"tarball {ORT_WEB_INTEGRITY}\n{files}\n")


def vendor_runtime(dest: Path, say: Any = lambda _m: None) -> tuple[str, ...]:
    """Copy onnxruntime-web's wasm runtime into ``dest`` (with its NOTICE); the names written."""
    src = ort_web_files(say)
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_FILES:
        shutil.copyfile(src / name, dest / name)
    (dest / NOTICE).write_text(notice_text(src))
    return (*RUNTIME_FILES, NOTICE)


# ---- the browser ---------------------------------------------------------------------------

def chromium_path() -> str | None:
    """The Chromium binary the runner starts: ``EDGESHIP_CHROMIUM``, else chromium on the PATH."""
    env = os.environ.get("EDGESHIP_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


CHROMIUM_HINT = ("install Debian's chromium (apt-get install chromium) or point EDGESHIP_CHROMIUM at a Chromium "
                 "binary; Playwright's own browser download is not needed")


class _Browser:
    """One headless Chromium per process, shared by every runner in it: started on first use,
    closed when the last runner closes. Playwright's sync API must not be called from a garbage
    collection that happens inside its own dispatcher, so a runner dropped without ``close()``
    only queues its page; the next call from plain code (or the exit of the process) closes it."""

    lock = threading.RLock()
    users = 0
    pw: Any = None
    browser: Any = None
    dropped: list[Any] = []  # contexts of runners collected without close()

    @classmethod
    def acquire(cls) -> Any:
        with cls.lock:
            cls._close_dropped(stop=False)
            if cls.browser is None:
                exe = chromium_path()
                if exe is None:
                    raise MissingExtraError("the web target needs a Chromium browser", hint=CHROMIUM_HINT)
                try:
                    from playwright.sync_api import sync_playwright
                except ImportError:
                    raise MissingExtraError("the web target needs playwright", hint="pip install 'edgeship[web]'") from None
                pw = sync_playwright().start()
                try:
                    cls.browser = pw.chromium.launch(executable_path=exe, headless=True, args=list(CHROMIUM_ARGS))
                except Exception as e:  # noqa: BLE001 - the browser's own reason, typed
                    pw.stop()
                    raise UnsupportedError(f"Chromium ({exe}) did not start: {first_line(e)[:300]}",
                                           hint=CHROMIUM_HINT) from None
                cls.pw = pw
                atexit.register(cls.stop)
            cls.users += 1
            return cls.browser

    @classmethod
    def release(cls, context: Any) -> None:
        with cls.lock:
            if context is not None:
                cls.dropped.append(context)
            cls._close_dropped(stop=True)

    @classmethod
    def _close_dropped(cls, stop: bool) -> None:
        while cls.dropped:
            ctx = cls.dropped.pop()
            cls.users -= 1
            try:
                ctx.close()
            except Exception:  # noqa: BLE001, S110 - the browser may be gone already
                pass
        if stop and cls.users <= 0:
            cls.stop()

    @classmethod
    def stop(cls) -> None:
        with cls.lock:
            browser, pw = cls.browser, cls.pw
            cls.browser = cls.pw = None
            cls.users = 0
            cls.dropped.clear()
        if browser is not None:
            try:
                browser.close()
            except Exception:  # noqa: BLE001, S110 - at exit the driver may be gone
                pass
            try:
                pw.stop()
            except Exception:  # noqa: BLE001, S110
                pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve_folder(root: Path, pages: dict[str, bytes], isolated: bool) -> _Server:
    """An http server on 127.0.0.1 (a free port) serving ``pages`` from memory and the files under
    ``root`` (nothing outside it; no listings), in a daemon thread."""
    root = root.resolve()
    types = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
             ".html": "text/html; charset=utf-8", ".json": "application/json", ".txt": "text/plain; charset=utf-8"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            body = pages.get(path)
            if body is None:
                target = (root / path.lstrip("/")).resolve()
                if (root not in target.parents) or not target.is_file():
                    self.send_error(404)
                    return
                body = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", types.get(Path(path).suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if isolated:
                self.send_header("Cross-Origin-Opener-Policy", "same-origin")
                self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.end_headers()
            self.wfile.write(body)

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="edgeship-web-server", daemon=True).start()
    return server


RUNNER_PAGE = b"""<!doctype html><meta charset="utf-8"><title>edgeship web runner</title>
<script src="ort/ort.wasm.min.js"></script>
<script>
const TYPED = {float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array,
               uint8: Uint8Array, int8: Int8Array, int16: Int16Array, uint16: Uint16Array, bool: Uint8Array,
               float16: Uint16Array};
function fromB64(s) { const b = atob(s); const u = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i); return u.buffer; }
function toB64(view) { const u = new Uint8Array(view.buffer, view.byteOffset, view.byteLength); let s = "";
  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));
  return btoa(s); }
window.edgeship = {
  async load(model, threads, config) {
    ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
    ort.env.wasm.numThreads = threads;
    ort.env.logLevel = "error";
    const t0 = performance.now();
    this.session = await ort.InferenceSession.create(model, {executionProviders: ["wasm"], extra: config});
    return {ms: performance.now() - t0, inputs: this.session.inputNames, outputs: this.session.outputNames,
            isolated: self.crossOriginIsolated, threads: ort.env.wasm.numThreads};
  },
  async run(feeds) {
    const t = {};
    for (const [name, f] of Object.entries(feeds))
      t[name] = new ort.Tensor(f.dtype, new TYPED[f.dtype](fromB64(f.data)), f.shape);
    const t0 = performance.now();
    const out = await this.session.run(t);
    const ms = performance.now() - t0;
    const outputs = this.session.outputNames.map(n => ({dtype: out[n].type, shape: out[n].dims, data: toB64(out[n].data)}));
    return {ms, outputs};
  },
  async runMany(list) {
    const res = [];
    for (const f of list) res.push(await this.run(f));
    return res;
  },
};
</script>"""


class WebRunner(Runner):
    """An ONNX model on onnxruntime-web (wasm) in a headless Chromium page on loopback."""

    bench_notes = ("web: latency is session.run as the page timed it (performance.now()), without the transfer "
                   "of tensors between Python and the page; memory and CPU time are the browser renderer's",)

    def __init__(self, artifact: Artifact, threads: int = 1) -> None:
        super().__init__(artifact.model_path, threads)
        self.artifact = artifact
        self.last_run_ms: float | None = None
        self._inputs = artifact.inputs
        self._server: _Server | None = None
        self._context: Any = None
        browser = _Browser.acquire()
        self._acquired = True
        try:
            want = max(1, threads)
            self._server = serve_folder(artifact.root, {"/edgeship-runner.html": RUNNER_PAGE}, isolated=want > 1)
            origin = f"http://127.0.0.1:{self._server.server_address[1]}"
            self._context = browser.new_context()
            # the network is blocked: only this runner's own origin answers
            self._context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(origin + "/")
                                else route.abort())
            self._page = self._context.new_page()
            self._page.goto(f"{origin}/edgeship-runner.html")
            config = session_extra(artifact.details.get("session_config") or {})
            info = self._page.evaluate("([m, n, c]) => window.edgeship.load(m, n, c)", [MODEL_FILE, want, config])
        except MissingExtraError:
            self.close()
            raise
        except Exception as e:  # noqa: BLE001 - the page's reason (a model onnxruntime-web cannot load), typed
            self.close()
            raise FormatError(f"onnxruntime-web cannot load {artifact.model_path}: {_page_error(e)}",
                              hint="onnxruntime-web's wasm kernels lack an operator or type this model uses; "
                                   "the onnx artifact runs on native ONNX Runtime") from None
        self.load_ms = float(info["ms"])
        self.threads_used = int(info["threads"])
        self.isolated = bool(info["isolated"])
        self.output_names = list(info["outputs"])

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One page call; a batch whose tensors exceed :data:`MAX_CALL_BYTES` (verification runs
        every evaluation input as one batch) goes in slices along its dynamic batch axis, each
        still a batch, and ``last_run_ms`` is their sum."""
        size = sum(a.nbytes for a in feeds.values())
        n = min((a.shape[0] for a in feeds.values() if a.ndim), default=1)
        dynamic = bool(self._inputs) and all(s.shape and not isinstance(s.shape[0], int) for s in self._inputs)
        if size <= MAX_CALL_BYTES or not dynamic or n < 2:
            return self._call(feeds)
        step = max(1, int(n * MAX_CALL_BYTES // size))
        parts, total = [], 0.0
        for i in range(0, n, step):
            parts.append(self._call({k: a[i:i + step] for k, a in feeds.items()}))
            total += self.last_run_ms or 0.0
        self.last_run_ms = total
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def run_many(self, samples: Any) -> list[list[np.ndarray]]:
        """Many samples in as few page calls as :data:`MAX_CALL_BYTES` allows (one call each cost
        a round trip through the page: 256 evaluation inputs took 74 s one at a time)."""
        feeds = [self.prepare(s) for s in samples]
        out: list[list[np.ndarray]] = []
        i = 0
        while i < len(feeds):
            j, size = i, 0
            while j < len(feeds) and (j == i or size + sum(a.nbytes for a in feeds[j].values()) <= MAX_CALL_BYTES):
                size += sum(a.nbytes for a in feeds[j].values())
                j += 1
            res = self._evaluate("(l) => window.edgeship.runMany(l)", [self._payload(f) for f in feeds[i:j]])
            out.extend(self._outputs(r) for r in res)
            i = j
        return out

    @staticmethod
    def _payload(feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        return {n: {"dtype": "bool" if a.dtype == np.bool_ else str(a.dtype), "shape": list(a.shape),
                    "data": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()} for n, a in feeds.items()}

    def _evaluate(self, script: str, arg: Any) -> Any:
        try:
            return self._page.evaluate(script, arg)
        except Exception as e:  # noqa: BLE001
            raise FormatError(f"onnxruntime-web failed to run {self.path.name}: {_page_error(e)}",
                              hint="check the input shapes and dtypes") from None

    def _outputs(self, res: dict[str, Any]) -> list[np.ndarray]:
        self.last_run_ms = float(res["ms"])
        out = []
        for o in res["outputs"]:
            dt = np.dtype("uint16" if o["dtype"] == "float16" else "bool" if o["dtype"] == "bool" else o["dtype"])
            a = np.frombuffer(base64.b64decode(o["data"]), dtype=dt).reshape([int(d) for d in o["shape"]])
            out.append(a.view(np.float16) if o["dtype"] == "float16" else a.copy())
        return out

    def _call(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._outputs(self._evaluate("(f) => window.edgeship.run(f)", self._payload(feeds)))

    def _renderers(self) -> list[Path]:
        """/proc folders of the Chromium renderer processes started from this process."""
        parent: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parent[int(stat.parent.name)] = int(fields[1])
            except (OSError, ValueError, IndexError):
                continue
        me, out = os.getpid(), []
        for pid in parent:
            p, seen = pid, 0
            while p in parent and p != me and seen < 64:
                p, seen = parent[p], seen + 1
            if p == me and pid != me:
                try:
                    if b"--type=renderer" in (Path("/proc") / str(pid) / "cmdline").read_bytes():
                        out.append(Path("/proc") / str(pid))
                except OSError:
                    continue
        return out

    def outside_peak_rss_bytes(self) -> int | None:
        """Peak resident memory (VmHWM) of the browser's renderer processes, where the model runs."""
        total = None
        for d in self._renderers():
            try:
                for line in (d / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total = (total or 0) + int(line.split()[1]) * 1024
            except (OSError, ValueError):
                continue
        return total

    def outside_cpu_s(self) -> float:
        """CPU seconds the browser's renderer processes have used so far (the model's compute)."""
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        total = 0
        for d in self._renderers():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, ValueError, IndexError):
                continue
        return total / tick

    def close(self) -> None:
        """Close the page and its server (the browser closes with the last runner)."""
        ctx, server = self._context, self._server
        self._context = self._server = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._acquired:
            self._acquired = False
            _Browser.release(ctx)

    def __del__(self) -> None:
        # never a Playwright call here: a collection may run inside Playwright's dispatcher
        ctx, server = getattr(self, "_context", None), getattr(self, "_server", None)
        self._context = self._server = None
        if server is not None:
            if sys.is_finalizing():  # no new thread can start now (it would wait forever): close the socket
                server.server_close()
            else:
                threading.Thread(target=lambda: (server.shutdown(), server.server_close()), daemon=True).start()
        if getattr(self, "_acquired", False):
            self._acquired = False
            _Browser.dropped.append(ctx)


def session_extra(config: dict[str, str]) -> dict[str, Any]:
    """ONNX Runtime session config entries ('session.disable_quant_qdq') as onnxruntime-web's
    ``extra`` option takes them (nested objects, joined with dots)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        node = out
        *path, last = str(key).split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = str(value)
    return out


def _page_error(e: Exception) -> str:
    text = first_line(e)
    return text.split("Error: ", 1)[-1][:300] if "Error: " in text else text[:300]


# ---- the target ----------------------------------------------------------------------------

class WebTarget(Target):
    name: ClassVar[str] = "web"
    format: ClassVar[Format] = Format.web
    description: ClassVar[str] = ("the ONNX model for onnxruntime-web (wasm) with the runtime vendored, "
                                  "verified and benchmarked in headless Chromium")
    extra: ClassVar[str | None] = "web"
    requires: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime", "onnxscript", "onnxslim", "playwright")
    runtime_modules: ClassVar[tuple[str, ...]] = ("playwright",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8")
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2", "onnx")
    derives_from: ClassVar[str | None] = "onnx"  # the onnx artifact of the same run and precision
    derives_reduced: ClassVar[bool] = False  # int8 is the onnx int8 (one int8 flow), not made from web fp32
    # Chromium reserves tens of GB of address space (V8's heap cage) and will not start under the
    # benchmark's address-space cap; its data segment is capped instead, and the model runs in
    # WebAssembly, whose memory the engine bounds (4 GB) and checks
    memory_limit: ClassVar[str] = "data"
    int8_knobs: ClassVar[tuple[str, ...]] = OnnxTarget.int8_knobs
    int8_methods: ClassVar[tuple[str, ...]] = OnnxTarget.int8_methods

    def check_environment(self) -> list[str]:
        missing = super().check_environment()
        return missing + ([] if chromium_path() else ["chromium"])

    def probe(self) -> str | None:
        """Start the Chromium the runner would start, headless, on a blank page: installed but not
        starting (a busy or broken machine) is said with Chromium's own error, not "install it"."""
        import subprocess

        exe = chromium_path()
        if exe is None:
            return None  # not installed: check_environment says so, with how to install it
        try:
            r = subprocess.run([exe, "--headless", *CHROMIUM_ARGS, "--dump-dom", "about:blank"], capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"Chromium ({exe}) is installed but did not answer within 60 s (a busy machine?)"
        except OSError as e:
            return f"Chromium ({exe}) is installed but did not start: {e.strerror or e}"
        if r.returncode != 0 or "<html" not in r.stdout:
            err = next((ln.strip() for ln in r.stderr.splitlines() if ln.strip()), f"exit status {r.returncode}")
            return f"Chromium ({exe}) is installed but did not start: {printable(err)[:200]}"
        return None

    def install_hint(self, missing: list[str]) -> str:
        pip = [m for m in missing if m != "chromium"]
        parts = [f"pip install 'edgeship[{self.extra}]'"] if pip else []
        if "chromium" in missing:
            parts.append("apt-get install chromium (or set EDGESHIP_CHROMIUM)")
        return "; ".join(parts)

    @classmethod
    def can_run_here(cls) -> bool | str:
        if chromium_path() is None:
            return f"no Chromium here: {CHROMIUM_HINT}"
        return True

    def export(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        assert base is not None  # the onnx artifact of the same run and precision
        shutil.copyfile(base.model_path, out_dir / MODEL_FILE)
        self.say(f"vendoring onnxruntime-web {ORT_WEB_VERSION}")
        names = vendor_runtime(out_dir / RUNTIME_DIR, self.say)
        details = {k: v for k, v in base.details.items() if k in ("quantization", "session_config", "float_weights")}
        details["web"] = {"runtime": f"onnxruntime-web {ORT_WEB_VERSION}", "backend": "wasm",
                          "page_threads": "1 unless cross-origin isolated"}
        return Built(
            files=(MODEL_FILE, *(f"{RUNTIME_DIR}/{n}" for n in names)), inputs=base.inputs, outputs=base.outputs,
            stage="web.package", preprocess=base.preprocess,
            config={**base.provenance.config, "onnx_digest": base.digest, "onnxruntime_web": ORT_WEB_VERSION,
                    "backend": "wasm"},
            tools=("torch", "onnx", "onnxscript", "onnxslim", "onnxruntime", "playwright"),
            notes=(f"runs in the browser on onnxruntime-web {ORT_WEB_VERSION} (wasm), vendored in {RUNTIME_DIR}/: "
                   "serve the folder over http(s) (not file://); verified and measured in headless Chromium",
                   THREADS_NOTE, *base.notes),
            details=details,
        )

    def runner(self, artifact: Artifact, threads: int = 1) -> Runner:
        return WebRunner(artifact, threads=threads)

    def runtime_requirement(self, artifact: Artifact) -> dict[str, Any]:
        onnx = OnnxTarget().runtime_requirement(artifact)["requires"]
        return {"name": "onnxruntime-web", "tested_version": ORT_WEB_VERSION,
                "requires": "a browser with WebAssembly SIMD" + (f"; {onnx}" if onnx else ""),
                "vendored": f"{RUNTIME_DIR}/"}
