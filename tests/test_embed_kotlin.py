"""The Android embedder of an embedding bundle (integration/android/EdgeshipEmbedder.kt, as
bundle.embed_app.write_embedder_kotlin writes it beside EdgeshipWordPiece.kt), rendered from a
bundle laid out here (hostile names, five ONNX/ORT artifacts and a web one, golden sentences),
compiled with kotlinc against stubs of ONNX Runtime's Java API (so OrtEmbeddingModel type-checks)
and run on a JVM. The model is the test's own on both sides, behind EmbeddingModel: integer
arithmetic on the token ids under the mask (exact in float32, blind to padding), so the Kotlin's
batching (rows split and kept in order, batches padded to their longest row, a fixed batch
dimension obeyed), its L2 normalisation, its nearest neighbours and its golden check with the
fallback order are compared with numpy and edgeship.tasks.text.WordPiece. kotlinc runs once for
the module, the JVM once."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeship.bundle.embed_app import EMBEDDER_KOTLIN, write_embedder_kotlin, write_wordpiece_code
from edgeship.errors import FormatError
from edgeship.readers.tokenizer import read_tokenizer, vocabulary_text
from edgeship.tasks.text import WordPiece
from kotlin_harness import ORT_STUBS
from tinystream import SENTENCES, wordpiece_tokenizer

CI = bool(os.environ.get("EDGESHIP_CI"))
pytestmark = [pytest.mark.kotlin, pytest.mark.skipif((shutil.which("kotlinc") is None or shutil.which("javac") is None)
                                                     and not CI, reason="no kotlinc here (CI installs it)")]
HOSTILE = 'e"m$b ${x} \\n é 😀 */'
IDS, MASK, TYPES = 'ids"$in', "attention_mask", "token_type_ids"
DIM = 6
#: the fallback order: (id, format, what the test does to it)
ARTIFACTS = (("onnx-int8", "onnx", "tampered embeddings"), ("ort-int8", "ort", "does not load"),
             ("web-fp32", "web", "a web artifact"), ("onnx-fp16", "onnx", "another text"),
             ("ort-fp32", "ort", "not in the assets"), ("onnx-fp32", "onnx", "serves"))

#: ONNX Runtime's Java API with the int64 tensors OrtEmbeddingModel makes (the harness's stubs)
ONNX_TENSOR = """package ai.onnxruntime;
public class OnnxTensor extends OnnxTensorLike {
    public static OnnxTensor createTensor(OrtEnvironment env, java.nio.FloatBuffer data, long[] shape) throws OrtException { return null; }
    public static OnnxTensor createTensor(OrtEnvironment env, java.nio.LongBuffer data, long[] shape) throws OrtException { return null; }
    public Object getValue() throws OrtException { return null; }
    public java.nio.FloatBuffer getFloatBuffer() { return null; }
    public java.nio.LongBuffer getLongBuffer() { return null; }
}"""

DRIVER_KT = r"""
import ai.edgeship.generated.EdgeshipEmbedder
import ai.edgeship.generated.EdgeshipTokenBatch
import ai.edgeship.generated.EdgeshipWordPiece
import ai.edgeship.generated.EdgeshipWordPieceTask
import ai.edgeship.generated.EmbeddingModel
import ai.edgeship.generated.EmbeddingOutput
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** The test's model: row r, value j = sum over k of mask[r][k] * ((ids[r][k] * (j + 3) + 7 k) mod 11 - 5). */
class Fake(val ids: String, val mask: String, val dim: Int) : EmbeddingModel {
    val calls = ArrayList<String>()
    override fun run(batch: EdgeshipTokenBatch): EmbeddingOutput {
        calls.add("" + batch.rows + "x" + batch.width + ":" + batch.inputs.keys.joinToString(","))
        val x = batch.inputs.getValue(ids)
        val m = batch.inputs.getValue(mask)
        val out = FloatArray(batch.rows * dim)
        for (r in 0 until batch.rows) for (j in 0 until dim) {
            var s = 0L
            for (k in 0 until batch.width) s += m[r * batch.width + k] * (((x[r * batch.width + k] * (j + 3) + 7 * k) % 11) - 5)
            out[r * dim + j] = s.toFloat()
        }
        return EmbeddingOutput(longArrayOf(batch.rows.toLong(), dim.toLong()), out)
    }
}

fun readF32(f: File): FloatArray {
    val b = ByteBuffer.wrap(f.readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    val out = FloatArray(b.remaining())
    b.get(out)
    return out
}

fun writeF32(f: File, rows: Array<FloatArray>) {
    val b = ByteBuffer.allocate(4 * rows.sumBy { it.size }).order(ByteOrder.LITTLE_ENDIAN)
    for (r in rows) for (v in r) b.putFloat(v)
    f.writeBytes(b.array())
}

fun texts(f: File): List<String> = f.readLines(Charsets.UTF_8).map { String(hex(it), Charsets.UTF_8) }

fun hex(s: String): ByteArray = ByteArray(s.length / 2) { s.substring(2 * it, 2 * it + 2).toInt(16).toByte() }

// args: the bundle folder, a jobs file, a results file. Jobs (tab-separated):
//   embed BATCH MAX_BATCH TEXTS OUT   -> OUT (normalised rows), OUT.raw, "calls" and "ids" lines
//   normalize ROWS N DIM OUT          -> OUT: each row l2Normalize'd
//   nearest ROWS N DIM QUERY K        -> "nearest" line: index,cosine-bits ...
//   serve TEXTS OUT                   -> "served", "skipped" lines; OUT: the served embedder's rows
fun main(args: Array<String>) {
    val bundle = File(args[0])
    val log = StringBuilder()
    val load = { path: String ->
        val f = if (path.startsWith("golden/") || path == EdgeshipEmbedder.VOCABULARY) File(bundle, path) else File(bundle, "artifacts/" + path)
        if (f.isFile) f.readBytes() else null
    }
    val vocab = EdgeshipWordPiece.readVocabulary(String(load(EdgeshipEmbedder.VOCABULARY)!!, Charsets.UTF_8))
    val task = EdgeshipWordPieceTask.BUNDLE
    val names = listOf(task.idsInput, task.maskInput!!, task.typeInput!!)
    for (line in File(args[1]).readLines(Charsets.UTF_8)) {
        if (line.isBlank()) continue
        val f = line.split("\t")
        when (f[0]) {
            "embed" -> {
                val fake = Fake(task.idsInput, task.maskInput!!, 6)
                val e = EdgeshipEmbedder(fake, EdgeshipWordPiece(vocab), names, maxBatch = f[2].toInt())
                val t = texts(File(f[3]))
                writeF32(File(f[4]), e.embed(t, f[1].toInt()))
                writeF32(File(f[4] + ".raw"), e.raw(t, f[1].toInt()))
                log.append("calls\t" + f[4] + "\t" + fake.calls.joinToString(";") + "\n")
                log.append("ids\t" + f[4] + "\t" + t.joinToString(";") { e.ids(it).joinToString(",") } + "\n")
                try {
                    e.raw(t, 0)
                } catch (x: IllegalArgumentException) {
                    log.append("error\t" + f[4] + "\t" + x.message + "\n")
                }
            }
            "normalize" -> {
                val v = readF32(File(f[1]))
                val n = f[2].toInt()
                val d = f[3].toInt()
                writeF32(File(f[4]), Array(n) { EdgeshipEmbedder.l2Normalize(v.copyOfRange(it * d, (it + 1) * d)) })
            }
            "nearest" -> {
                val v = readF32(File(f[1]))
                val n = f[2].toInt()
                val d = f[3].toInt()
                val rows = Array(n) { v.copyOfRange(it * d, (it + 1) * d) }
                val near = EdgeshipEmbedder.nearest(rows[f[4].toInt()], rows, f[5].toInt(), setOf(f[4].toInt()))
                log.append("nearest\t" + f[4] + "\t" + near.joinToString(" ") { "" + it.first + "," + java.lang.Double.doubleToRawLongBits(it.second) } + "\n")
            }
            "serve" -> {
                val opened = ArrayList<String>()
                val e = EdgeshipEmbedder.serve(load, { a, bytes ->
                    val what = String(bytes, Charsets.UTF_8)
                    if (what.startsWith("broken")) throw IllegalStateException("the test's runtime cannot open " + what)
                    opened.add(a.id)
                    Fake(a.inputs[0], a.inputs[1], 6)
                })
                log.append("served\t" + e.servedBy + "\t" + opened.joinToString(",") + "\n")
                for (s in e.skipped) log.append("skipped\t" + s + "\n")
                writeF32(File(f[2]), e.embed(texts(File(f[1]))))
                try {
                    EdgeshipEmbedder.serve({ p -> if (p.endsWith(".npy")) null else load(p) }, { a, _ -> Fake(a.inputs[0], a.inputs[1], 6) },
                                           artifacts = EdgeshipEmbedder.MODELS.filter { it.id == "onnx-fp32" })
                } catch (x: IllegalStateException) {
                    log.append("none\t" + x.message + "\n")
                }
                val unchecked = EdgeshipEmbedder.serve(load, { a, _ -> Fake(a.inputs[0], a.inputs[1], 6) }, check = false)
                log.append("unchecked\t" + unchecked.servedBy + "\n")
            }
        }
    }
    log.append("models\t" + EdgeshipEmbedder.MODELS.joinToString(";") { it.id + "," + it.batch + "," + it.inputs.size } + "\n")
    log.append("name\t" + EdgeshipEmbedder.NAME + "\t" + EdgeshipEmbedder.FALLBACK_ORDER.size + "\n")
    File(args[2]).writeText(log.toString(), Charsets.UTF_8)
}
"""


def fake(batch: dict[str, np.ndarray]) -> np.ndarray:
    """The driver's model in numpy: [rows, DIM] float32."""
    x, m = batch[IDS].astype(np.int64), batch[MASK].astype(np.int64)
    j = np.arange(DIM)[None, None, :]
    k = np.arange(x.shape[1])[None, :, None]
    return (m[:, :, None] * ((x[:, :, None] * (j + 3) + 7 * k) % 11 - 5)).sum(1).astype(np.float32)


def normalised(rows: np.ndarray) -> np.ndarray:
    """edgeship.runtime.Embedder's rule, in numpy."""
    rows = np.asarray(rows, np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _npy(root: Path, a: np.ndarray, name: str) -> str:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    rel = f"golden/t/{name}.npy"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(buf.getvalue())
    return rel


def make_bundle(root: Path) -> tuple[dict, dict, list[str]]:
    """A bundle folder as edgeship package lays one out, for the parts the Kotlin reads: bundle.json's
    record (returned), vocab.txt, golden/golden.json with three sentences per artifact (their token
    arrays and the test model's embedding of them), artifacts/<id>/<file> holding bytes that name the
    artifact (the test's runtime opens them)."""
    vocab, fields = read_tokenizer(wordpiece_tokenizer(root / "tokenizer.json", max_length=12))
    task = {"kind": "embedding", "tokenizer": "wordpiece", **fields, "vocabulary": "vocab.txt", "pad_to_max": False,
            "ids_input": IDS, "mask_input": MASK, "type_input": TYPES}
    (root / "vocab.txt").write_text(vocabulary_text(vocab), encoding="utf-8")
    wp = WordPiece(vocab, task)
    names = [IDS, MASK, TYPES]
    golden: dict = {"schema": "edgeship.golden/1", "artifacts": {}}
    texts = {f"sentence-{i}": s for i, s in enumerate(SENTENCES[:3])}
    arts = []
    for aid, fmt, what in ARTIFACTS:
        file = "model.ort" if fmt == "ort" else "model.onnx"
        if what != "not in the assets":
            (root / "artifacts" / aid).mkdir(parents=True)
            (root / "artifacts" / aid / file).write_bytes((f"broken {aid}" if what == "does not load" else aid).encode())
        arts.append({"id": aid, "format": fmt, "path": f"artifacts/{aid}", "model_file": f"artifacts/{aid}/{file}",
                     "task": task, "inputs": [{"name": n, "shape": ["batch", "seq"], "dtype": "int64"} for n in names]})
        rec: dict = {"inputs": {}, "outputs": {}, "texts": dict(texts), "expected_from": f"{aid} itself, run here",
                     "tolerance": {"cosine_min": 0.99} if "int8" in aid else {"cosine_min": 0.9999, "max_abs_rel_to_scale": 1e-3}}
        for name, text in texts.items():
            b = wp.batch([text])
            rec["inputs"][name] = [_npy(root, b[n], f"{name}-{n.encode().hex()}") for n in names]
            y = fake(b) * (-1 if what == "tampered embeddings" else 1)
            rec["outputs"][name] = [_npy(root, y, f"{aid}-{name}-out")]
        if what == "another text":
            rec["texts"]["sentence-1"] = "a sentence the golden ids are not of"
        golden["artifacts"][aid] = rec
    (root / "golden" / "golden.json").write_text(json.dumps(golden, indent=1))
    doc = {"schema": "edgeship.bundle/1", "name": HOSTILE, "version": "1.2.3", "task": task, "artifacts": arts,
           "fallback_order": [a[0] for a in ARTIFACTS], "golden": "golden/golden.json"}
    (root / "bundle.json").write_text(json.dumps(doc, indent=1))
    return doc, task, vocab


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Render, compile (kotlinc on the generated files, the driver and ORT stubs), run every job."""
    work = tmp_path_factory.mktemp("embed-kotlin")
    bundle = work / "bundle"
    bundle.mkdir()
    doc, task, vocab = make_bundle(bundle)
    files = write_wordpiece_code(bundle, task) + write_embedder_kotlin(bundle, task, doc)
    kts = [p for p in files if p.suffix == ".kt"]
    stubs = work / "stubs"
    for rel, text in {**ORT_STUBS, "ai/onnxruntime/OnnxTensor.java": ONNX_TENSOR}.items():
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text(text)
    classes = work / "classes"
    subprocess.run(["javac", "-d", str(classes), *map(str, stubs.rglob("*.java"))], check=True, capture_output=True,
                   timeout=300)
    (work / "Driver.kt").write_text(DRIVER_KT)
    jar = work / "embed.jar"
    build = subprocess.run(["kotlinc", "-cp", str(classes), *map(str, kts), str(work / "Driver.kt"), "-include-runtime",
                            "-d", str(jar)], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]

    rng = np.random.default_rng(38)
    jobs: list[str] = []
    texts = list(SENTENCES) + ["", "zebra " * 30, "東京 café"]
    tfile = work / "texts.txt"
    tfile.write_text("".join(t.encode().hex() + "\n" for t in texts), encoding="utf-8")
    embeds = {}
    for batch, max_batch in ((1, -1), (3, -1), (7, -1), (5, 2), (100, -1)):
        embeds[(batch, max_batch)] = work / f"embed-{batch}-{max_batch}.f32"
        jobs.append(f"embed\t{batch}\t{max_batch}\t{tfile}\t{embeds[(batch, max_batch)]}")
    rows = np.concatenate([rng.standard_normal((20, 16)) * rng.uniform(1e-3, 1e3, (20, 1)), np.zeros((1, 16)),
                           np.full((1, 16), 1e-8), rng.standard_normal((1, 16)) * 1e15]).astype(np.float32)
    rows[3] = rows[5] * 2  # a tie in cosine with another row
    rows.astype("<f4").tofile(work / "rows.f32")
    jobs.append(f"normalize\t{work / 'rows.f32'}\t{len(rows)}\t16\t{work / 'normalized.f32'}")
    for q in (0, 5, 20):
        jobs.append(f"nearest\t{work / 'rows.f32'}\t{len(rows)}\t16\t{q}\t4")
    jobs.append(f"serve\t{tfile}\t{work / 'served.f32'}")
    (work / "jobs.txt").write_text("\n".join(jobs) + "\n", encoding="utf-8")
    ran = subprocess.run(["java", "-cp", f"{jar}:{classes}", "DriverKt", str(bundle), str(work / "jobs.txt"),
                          str(work / "results.txt")], capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    log: dict[str, list[list[str]]] = {}
    for line in (work / "results.txt").read_text(encoding="utf-8").splitlines():
        f = line.split("\t")
        log.setdefault(f[0], []).append(f[1:])
    return {"work": work, "bundle": bundle, "doc": doc, "task": task, "wp": WordPiece(vocab, task), "texts": texts,
            "embeds": embeds, "rows": rows, "log": log, "kt": (bundle / EMBEDDER_KOTLIN).read_text(encoding="utf-8")}


def test_the_kotlin_is_rendered_from_the_bundle_and_type_checks_against_onnx_runtime(run: dict) -> None:
    kt = run["kt"]
    assert 'const val NAME = "e\\"m\\$b \\${x} \\\\n \\u00e9 \\ud83d\\ude00 */"' in kt  # escaped, not altered
    assert "*/" not in kt.split("\n", 1)[0] and "import android" not in kt
    assert 'listOf<String>("ids\\"\\$in", "attention_mask", "token_type_ids")' in kt
    # the ONNX and ORT artifacts in the fallback order with their golden files; the web one is not there
    assert run["log"]["models"][0][0] == "onnx-int8,-1,3;ort-int8,-1,3;onnx-fp16,-1,3;ort-fp32,-1,3;onnx-fp32,-1,3"
    assert run["log"]["name"][0][1] == "6"
    assert '"web-fp32/' not in kt and "//   ort-fp32/model.ort   (artifacts/ort-fp32/model.ort" in kt
    assert "0.9999, 0.001, null, null)" in kt and "0.99, null, null, null)" in kt


def test_batches_and_normalisation_match_numpy(run: dict) -> None:
    wp, texts = run["wp"], run["texts"]
    want_raw = np.concatenate([fake(wp.batch([t])) for t in texts])  # each text alone, as Embedder runs it
    want = normalised(want_raw)
    calls = {Path(c[0]): c[1].split(";") for c in run["log"]["calls"]}
    worst = 0.0
    for (batch, max_batch), out in run["embeds"].items():
        got = np.fromfile(out, "<f4").reshape(len(texts), DIM)
        raw = np.fromfile(str(out) + ".raw", "<f4").reshape(len(texts), DIM)
        assert np.array_equal(raw, want_raw), (batch, max_batch)  # integers: exact, whatever the padding
        worst = max(worst, float(np.abs(got - want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=f"batch {batch}, max {max_batch}")
        n = batch if max_batch < 0 else min(batch, max_batch)
        parts = [texts[i:i + n] for i in range(0, len(texts), n)]
        # each call: the batch's rows, padded to its longest (the task does not pad to max_length), all three inputs
        assert calls[out] == [f"{len(p)}x{max(len(wp.encode(t)) for t in p)}:{IDS},{MASK},{TYPES}" for p in parts] * 2
    ids = {Path(c[0]): c[1].split(";") for c in run["log"]["ids"]}
    for out in run["embeds"].values():
        assert [[int(i) for i in s.split(",")] for s in ids[out]] == [wp.encode(t) for t in texts]
    assert {e[1] for e in run["log"]["error"]} == {"batchSize 0: at least one text per call"}
    print(f"Kotlin embeddings vs numpy: max |diff| {worst:.2e}")


def test_l2_normalisation_and_the_nearest_are_numpys(run: dict) -> None:
    rows = run["rows"]
    got = np.fromfile(run["work"] / "normalized.f32", "<f4").reshape(rows.shape)
    want = normalised(rows[:-1])  # numpy's float32 norm overflows on the last row (1e15 squared); Kotlin's is double
    np.testing.assert_allclose(got[:-1], want, rtol=1e-6, atol=1e-12)
    assert not got[20].any() and np.allclose(np.linalg.norm(got[21:], axis=1), 1.0, atol=1e-6)
    r = rows.astype(np.float64)
    cos = (r @ r.T) / np.maximum(np.outer(np.linalg.norm(r, axis=1), np.linalg.norm(r, axis=1)), 1e-300)
    for q, line in ((int(x[0]), x[1]) for x in run["log"]["nearest"]):
        pairs = [p.split(",") for p in line.split(" ")]
        idx = [int(i) for i, _ in pairs]
        vals = np.asarray([int(b) for _, b in pairs], np.int64).view(np.float64)
        order = sorted((i for i in range(len(rows)) if i != q), key=lambda i: (-round(cos[q, i], 12), i))[:4]
        assert idx == order, (q, idx, order)
        np.testing.assert_allclose(vals, cos[q, idx], atol=1e-12)
    assert [int(p.split(",")[0]) for p in dict(run["log"]["nearest"])["5"].split(" ")][0] == 3  # the tie's other row


def test_the_first_artifact_that_passes_its_golden_sentences_serves(run: dict) -> None:
    log = run["log"]
    served, opened = log["served"][0]
    assert served == "onnx-fp32" and opened.split(",") == ["onnx-int8", "onnx-fp16", "onnx-fp32"]
    skipped = [s[0] for s in log["skipped"]]
    assert skipped[0].startswith("onnx-int8: fails its golden vectors: sentence-0 output 0: cosine -1.00000 < 0.99; "
                                 "sentence-1 output 0: cosine -1.00000 < 0.99"), skipped[0]
    assert skipped[1] == "ort-int8: does not load here: the test's runtime cannot open broken ort-int8"
    assert skipped[2] == ('onnx-fp16: fails its golden vectors: sentence-1: the tokenizer gives other inputs than the '
                          'golden ones for "a sentence the golden ids are not of"')
    assert skipped[3] == "ort-fp32: ort-fp32/model.ort is not in the app's assets"
    assert len(skipped) == 4
    got = np.fromfile(run["work"] / "served.f32", "<f4").reshape(len(run["texts"]), DIM)
    np.testing.assert_allclose(got, normalised(np.concatenate([fake(run["wp"].batch([t])) for t in run["texts"]])),
                               rtol=1e-6, atol=1e-7)
    none = log["none"][0][0]
    assert none.startswith("no artifact of ") and "onnx-fp32: fails its golden vectors: sentence-0: golden/t/" in none
    assert "is not in the app's assets" in none
    assert log["unchecked"][0][0] == "onnx-int8"  # check = false: the first that loads


def test_what_is_not_a_wordpiece_embedding_bundle_is_refused(tmp_path: Path) -> None:
    doc = {"name": "x", "artifacts": [], "fallback_order": []}
    with pytest.raises(FormatError, match="not an embedding with the wordpiece tokenizer"):
        write_embedder_kotlin(tmp_path, {"kind": "embedding", "tokenizer": None}, doc)
    with pytest.raises(FormatError, match="no artifacts list"):
        write_embedder_kotlin(tmp_path, {"kind": "embedding", "tokenizer": "wordpiece"}, {"name": "x"})
    bad = {"name": "x", "fallback_order": ["onnx-fp32"],
           "artifacts": [{"id": "onnx-fp32", "format": "onnx", "model_file": "artifacts/onnx-fp32/model.onnx"}]}
    with pytest.raises(FormatError, match="artifact 'onnx-fp32' has no readable inputs list"):
        write_embedder_kotlin(tmp_path, {"kind": "embedding", "tokenizer": "wordpiece"}, bad)
    assert not (tmp_path / "integration").exists()
    # no golden vectors in the folder: the artifact is rendered with why, and fails its check on the phone
    bad["artifacts"][0]["inputs"] = [{"name": "input_ids", "shape": [1, 128], "dtype": "int64"}]
    kt = write_embedder_kotlin(tmp_path, {"kind": "embedding", "tokenizer": "wordpiece"}, bad)[0].read_text()
    assert 'listOf<String>("input_ids"), 1,' in kt and "golden.json" in kt.split('listOf<String>("input_ids"), 1,')[1]
