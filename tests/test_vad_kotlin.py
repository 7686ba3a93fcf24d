"""The voice-activity glue generated for Android (integration/android/EdgeshipVad.kt): rendered from
bundle.json (hostile names escaped), compiled with kotlinc against stubs of ONNX Runtime's Java API
(so OrtVadModel type-checks) and run on a JVM against edgeship.tasks.vad. The model is replaced on
both sides by one that replays per-chunk probabilities and hands back, as its carried state, samples
of the row it was given (so what the next call is fed shows the state was carried): the audio is fed
in uneven pieces, and every call's inputs must be Python's bit for bit (the rows those of
chunk_inputs), the probabilities and speech segments (max_speech_s cuts included) and the chunk
flags exactly Python's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeship.bundle.stream_app import write_vad_app_code
from edgeship.errors import FormatError
from edgeship.tasks.vad import Chunker, StreamRunner, chunk_flags, chunk_inputs, params, speech_segments

CI = bool(os.environ.get("EDGESHIP_CI"))
needs_kotlin = pytest.mark.skipif((shutil.which("kotlinc") is None or shutil.which("javac") is None) and not CI,
                                  reason="no kotlinc here (CI installs it)")
HOSTILE = 'v"a$d ${x} \\n é 😀 */'
#: the rendered task: hostile names, a limit on a segment's length
TASK = {"kind": "voice_activity", "audio_input": 'in"$put', "carry": {"state$N": 'st"ate'}, "probability": "out${p}",
        "max_speech_s": 1.0, "threshold": 0.45, "min_silence_ms": 120}
SILERO_INPUTS = [{"name": "input", "shape": ["batch", 576], "dtype": "float32"},
                 {"name": "state", "shape": [2, "batch", 128], "dtype": "float32"},
                 {"name": "sr", "shape": [], "dtype": "int64"}]


def _bundle(task: dict, inputs: list[dict], name: str = HOSTILE) -> dict:
    arts = [{"id": i, "format": f, "path": f"artifacts/{i}", "model_file": f"artifacts/{i}/{file}", "task": task,
             "inputs": inputs} for i, f, file in (("onnx-fp32", "onnx", "model.onnx"), ("web-fp32", "web", "model.onnx"),
                                                  ("ort-int8", "ort", "model.ort"))]
    return {"name": name, "version": "1.2.3", "task": task, "artifacts": arts,
            "fallback_order": ["ort-int8", "web-fp32", "onnx-fp32"]}


def _rendered_inputs() -> list[dict]:
    names = {"input": TASK["audio_input"], "state": TASK["carry"]["state$N"], "sr": "sr"}
    return [{**s, "name": names[s["name"]]} for s in SILERO_INPUTS]


def test_the_app_code_is_rendered_from_the_bundle_and_parses(tmp_path):
    import tree_sitter_kotlin
    from tree_sitter import Language, Parser

    written = write_vad_app_code(tmp_path, TASK, _bundle(TASK, _rendered_inputs()))
    assert [p.relative_to(tmp_path).as_posix() for p in written] == ["integration/android/EdgeshipVad.kt"]
    kt = written[0].read_text(encoding="utf-8")
    assert not Parser(Language(tree_sitter_kotlin.language())).parse(kt.encode()).root_node.has_error
    assert 'const val NAME = "v\\"a\\$d \\${x} \\\\n \\u00e9 \\ud83d\\ude00 */"' in kt  # escaped, not altered
    assert "*/" not in kt.split("\n", 1)[0]  # the header comment cannot be closed by a name
    assert 'audioInput = "in\\"\\$put", rateInput = "sr"' in kt and 'Pair("state\\$N", "st\\"ate")' in kt
    assert 'probability = "out\\${p}"' in kt and "maxSpeechS = 1.0," in kt and "negThreshold = null," in kt
    assert "threshold = 0.45," in kt and "minSilenceMs = 120," in kt and "minAgreement = 0.98" in kt
    # the ONNX Runtime models in the fallback order, their inputs with dynamic dimensions -1; no web artifact
    assert kt.index('VadArtifact("ort-int8", "ort-int8/model.ort"') < kt.index('VadArtifact("onnx-fp32"')
    assert 'VadInput("st\\"ate", longArrayOf(2, -1, 128), "float32")' in kt and 'VadInput("sr", longArrayOf(), "int64")' in kt
    assert "web-fp32/" not in kt and 'listOf<String>("ort-int8", "web-fp32", "onnx-fp32")' in kt
    assert "import android" not in kt

    web_only = _bundle({"kind": "voice_activity"}, SILERO_INPUTS)
    web_only["artifacts"] = [a for a in web_only["artifacts"] if a["format"] == "web"]
    kt = write_vad_app_code(tmp_path / "web", web_only["task"], web_only)[0].read_text(encoding="utf-8")
    assert "maxSpeechS = null," in kt and "none of this bundle's artifacts is an ONNX or ORT file" in kt
    assert "listOf<VadArtifact>(\n    )" in kt


def test_what_is_not_a_voice_activity_bundle_is_refused(tmp_path):
    with pytest.raises(FormatError, match="the task is a embedding, not a voice_activity stream"):
        write_vad_app_code(tmp_path, {"kind": "embedding"}, _bundle({"kind": "embedding"}, SILERO_INPUTS))
    with pytest.raises(FormatError, match="task threshold: Input should be less than 1"):
        write_vad_app_code(tmp_path, {"kind": "voice_activity", "threshold": 2}, _bundle(TASK, SILERO_INPUTS))
    doc = _bundle(TASK, SILERO_INPUTS)
    del doc["artifacts"][0]["inputs"]
    with pytest.raises(FormatError, match="artifact 'onnx-fp32' has no readable inputs list"):
        write_vad_app_code(tmp_path, TASK, doc)
    assert not (tmp_path / "integration").exists()


# ---- on a JVM ------------------------------------------------------------------------------------

#: ONNX Runtime's Java API as onnxruntime-android ships it, as stubs with the real signatures: the
#: harness's, and the int64 tensors OrtVadModel makes and reads
ONNX_TENSOR = """package ai.onnxruntime;
public class OnnxTensor extends OnnxTensorLike {
    public static OnnxTensor createTensor(OrtEnvironment env, java.nio.FloatBuffer data, long[] shape) throws OrtException { return null; }
    public static OnnxTensor createTensor(OrtEnvironment env, java.nio.LongBuffer data, long[] shape) throws OrtException { return null; }
    public Object getValue() throws OrtException { return null; }
    public java.nio.FloatBuffer getFloatBuffer() { return null; }
    public java.nio.LongBuffer getLongBuffer() { return null; }
}"""

DRIVER_KT = r"""
import ai.edgeship.generated.EdgeshipVad
import ai.edgeship.generated.VadInput
import ai.edgeship.generated.VadModel
import ai.edgeship.generated.VadStream
import ai.edgeship.generated.VadStreamRunner
import ai.edgeship.generated.VadTensor
import ai.edgeship.generated.VoiceActivityTask
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

fun readF32(f: File): FloatArray {
    val b = ByteBuffer.wrap(f.readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    val out = FloatArray(b.remaining())
    b.get(out)
    return out
}

/** The test's model: chunk k's replayed probability under the task's probability name (first), and
 *  as each carried output a [2, 1, 128] state made of the row's own samples (state[j] = row[7 j % width]). */
class Replay(val probs: FloatArray, val task: VoiceActivityTask) : VadModel {
    var calls = 0
    val fed = ArrayList<Map<String, VadTensor>>()
    override fun run(feed: Map<String, VadTensor>): Map<String, VadTensor> {
        if (calls >= probs.size) throw IllegalStateException("called ${calls + 1} times; Python has ${probs.size} chunks")
        fed.add(feed)
        val row = feed[task.audioInput]!!.floats!!
        val out = LinkedHashMap<String, VadTensor>()
        out[task.probability ?: "output"] = VadTensor.of(longArrayOf(1L, 1L), floatArrayOf(probs[calls]))
        for (o in task.carry.keys) out[o] = VadTensor.of(longArrayOf(2L, 1L, 128L), FloatArray(256) { row[(7 * it) % row.size] })
        calls++
        return out
    }
}

fun segs(s: List<LongArray>): String = s.joinToString(";") { it[0].toString() + "," + it[1] }

fun task(sampleRate: Int, chunk: Int, threshold: Double, neg: Double?, minSpeechMs: Int, minSilenceMs: Int, padMs: Int,
         maxSpeechS: Double?, minSilenceAtMaxMs: Int, useMaxPoss: Boolean): VoiceActivityTask = VoiceActivityTask(
    "input", "sr", sampleRate, chunk, chunk / 8, linkedMapOf(Pair("stateN", "state")), null, threshold, neg, minSpeechMs,
    minSilenceMs, padMs, maxSpeechS, minSilenceAtMaxMs, useMaxPoss, 0.98)

/** Lines of `file`: "SR CHUNK THRESHOLD NEG MIN_SPEECH MIN_SILENCE PAD MAX_SPEECH MIN_SIL_AT_MAX USE_MAX_POSS N PROBS"
 *  (tab-separated; NEG, MAX_SPEECH, N empty for null; PROBS the doubles' bits) -> speechSegments, a line each in file.out;
 *  "flags CHUNK N SEGMENTS" -> chunkFlags. */
fun parts(file: File) {
    val out = StringBuilder()
    for (line in file.readLines(Charsets.UTF_8)) {
        val f = line.split("\t")
        if (f[0] == "flags") {
            val s = if (f[3].isEmpty()) emptyList<LongArray>() else f[3].split(";").map { p -> p.split(",").map { it.toLong() }.toLongArray() }
            val t = task(16000, f[1].toInt(), 0.5, null, 0, 0, 0, null, 0, true)
            out.append(EdgeshipVad.chunkFlags(s, f[2].toInt(), t).joinToString("") { if (it) "1" else "0" } + "\n")
            continue
        }
        val t = task(f[0].toInt(), f[1].toInt(), f[2].toDouble(), f[3].ifEmpty { null }?.toDouble(), f[4].toInt(), f[5].toInt(),
                     f[6].toInt(), f[7].ifEmpty { null }?.toDouble(), f[8].toInt(), f[9] == "1")
        val probs = if (f[11].isEmpty()) DoubleArray(0) else f[11].split(",").map { java.lang.Double.longBitsToDouble(it.toLong()) }.toDoubleArray()
        out.append(segs(EdgeshipVad.speechSegments(probs, t, f[10].ifEmpty { null }?.toLong())) + "\n")
    }
    File(file.path + ".out").writeText(out.toString(), Charsets.UTF_8)
}

// args: a file of case folders, one a line; each holds case.txt and gets kt_*; a line "parts<TAB>FILE" runs parts(FILE)
fun main(args: Array<String>) {
    for (line in File(args[0]).readLines(Charsets.UTF_8)) {
        if (line.isBlank()) continue
        if (line.startsWith("parts\t")) {
            parts(File(line.substring(6)))
            continue
        }
        val dir = File(line)
        val o = HashMap<String, String>()
        val inputs = ArrayList<VadInput>()
        for (entry in File(dir, "case.txt").readLines(Charsets.UTF_8)) {
            val f = entry.split("\t")
            if (f[0] == "input") {
                inputs.add(VadInput(f[1], if (f[2].isEmpty()) LongArray(0) else f[2].split(",").map { it.toLong() }.toLongArray(), f[3]))
            } else {
                o[f[0]] = if (f.size > 1) f[1] else ""
            }
        }
        val task = if (o["task"] == "rendered") EdgeshipVad.TASK else VoiceActivityTask(
            audioInput = o["audio_input"]!!, rateInput = o["rate_input"]!!.ifEmpty { null }, sampleRate = o["sample_rate"]!!.toInt(),
            chunk = o["chunk"]!!.toInt(), context = o["context"]!!.toInt(), carry = linkedMapOf(Pair(o["carry_out"]!!, o["carry_in"]!!)),
            probability = o["probability"]!!.ifEmpty { null }, threshold = o["threshold"]!!.toDouble(),
            negThreshold = o["neg_threshold"]!!.ifEmpty { null }?.toDouble(), minSpeechMs = o["min_speech_ms"]!!.toInt(),
            minSilenceMs = o["min_silence_ms"]!!.toInt(), speechPadMs = o["speech_pad_ms"]!!.toInt(),
            maxSpeechS = o["max_speech_s"]!!.ifEmpty { null }?.toDouble(),
            minSilenceAtMaxSpeechMs = o["min_silence_at_max_speech_ms"]!!.toInt(),
            useMaxPossSilAtMaxSpeech = o["use_max_poss"] == "1", minAgreement = 0.98)
        val specs = if (o["inputs"] == "rendered") EdgeshipVad.MODELS[0].inputs else inputs
        val audio = readF32(File(dir, "audio.f32"))
        val model = Replay(readF32(File(dir, "probs.f32")), task)
        val out = StringBuilder()
        if (o.containsKey("error")) {  // the runner refuses the inputs: its message
            try {
                VadStreamRunner(model, specs, task)
                out.append("error\tnone\n")
            } catch (e: IllegalArgumentException) {
                out.append("error\t" + e.message + "\n")
            }
            File(dir, "kt_result.txt").writeText(out.toString(), Charsets.UTF_8)
            continue
        }
        val stream = VadStream(model, specs, task)
        var at = 0
        val pushes = ArrayList<Int>()
        for (p in o["pieces"]!!.split(",").filter { it.isNotEmpty() }.map { it.toInt() }) {
            pushes.add(stream.feed(audio.copyOfRange(at, at + p)).size)
            at += p
        }
        pushes.add(stream.feed(audio.copyOfRange(at, audio.size)).size)
        pushes.add(stream.finish().size)
        out.append("pushes\t" + pushes.joinToString(",") + "\n")
        out.append("samples\t" + stream.samples + "\n")
        out.append("probs\t" + stream.probs.joinToString(",") { java.lang.Double.doubleToRawLongBits(it).toString() } + "\n")
        out.append("segments\t" + segs(stream.segments()) + "\n")
        out.append("flags\t" + stream.flags().joinToString("") { if (it) "1" else "0" } + "\n")
        // every call's inputs, in the order fed: name, shape, the values (float32 or int64 little-endian) in a file
        for ((n, feed) in model.fed.withIndex()) {
            for ((k, entry) in feed.entries.withIndex()) {
                val t = entry.value
                val file = "kt_in_${n}_$k.bin"
                val b = ByteBuffer.allocate(8 * t.size).order(ByteOrder.LITTLE_ENDIAN)
                if (t.floats != null) b.asFloatBuffer().put(t.floats) else b.asLongBuffer().put(t.longs)
                File(dir, file).writeBytes(b.array().copyOf(if (t.floats != null) 4 * t.size else 8 * t.size))
                out.append("in\t" + n + "\t" + entry.key + "\t" + t.shape.joinToString(",") + "\t" +
                           (if (t.floats != null) "float32" else "int64") + "\t" + file + "\n")
            }
        }
        // reset, then the same audio fed at once: the same calls (the state zeros again), probabilities, segments
        val first = ArrayList(model.fed)
        val firstProbs = ArrayList(stream.probs)
        stream.reset()
        val afterReset = stream.samples.toString() + "," + stream.probs.size
        model.calls = 0
        model.fed.clear()
        stream.feed(audio)
        stream.finish()
        val same = first.size == model.fed.size && first.indices.all { n ->
            first[n].keys == model.fed[n].keys && first[n].keys.all { k ->
                val x = first[n][k]!!
                val y = model.fed[n][k]!!
                x.shape.contentEquals(y.shape) && (x.floats?.contentEquals(y.floats!!) ?: x.longs!!.contentEquals(y.longs!!))
            }
        }
        out.append("again\t" + segs(stream.segments()) + "\t" + (same && stream.probs == firstProbs) + "\t" + afterReset + "\n")
        File(dir, "kt_result.txt").writeText(out.toString(), Charsets.UTF_8)
    }
}
"""


@pytest.fixture(scope="module")
def vad_jar(tmp_path_factory) -> tuple[Path, Path]:
    """The rendered EdgeshipVad.kt and the driver, compiled once: (jar, the stubs' classes)."""
    from kotlin_harness import ORT_STUBS

    if shutil.which("kotlinc") is None or shutil.which("javac") is None:
        if CI:
            pytest.fail("kotlinc and javac are needed (EDGESHIP_CI=1)")
        pytest.skip("no kotlinc here (CI installs it)")
    work = tmp_path_factory.mktemp("vadkt")
    kt = write_vad_app_code(work / "bundle", TASK, _bundle(TASK, _rendered_inputs()))[0]
    stubs = work / "stubs"
    for rel, text in {**ORT_STUBS, "ai/onnxruntime/OnnxTensor.java": ONNX_TENSOR}.items():
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text(text)
    classes = work / "classes"
    subprocess.run(["javac", "-d", str(classes), *map(str, stubs.rglob("*.java"))], check=True, capture_output=True,
                   timeout=300)
    (work / "Driver.kt").write_text(DRIVER_KT)
    jar = work / "driver.jar"
    build = subprocess.run(["kotlinc", "-cp", str(classes), str(kt), str(work / "Driver.kt"), "-include-runtime",
                            "-d", str(jar)], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    return jar, classes


def _probabilities(n: int, rate: int, chunk: int, seed: int) -> np.ndarray:
    """Per-chunk probabilities like a VAD's: silences, speech with short dips (candidate cuts for
    max_speech_s), a long stretch of speech, values near the thresholds."""
    rng = np.random.default_rng(seed)
    p = np.empty(0)
    while len(p) < n:
        if rng.random() < 0.4:
            block = rng.uniform(0.0, 0.3, int(rng.integers(3, 30)))
        else:
            block = rng.uniform(0.5, 1.0, int(rng.integers(5, int(3.5 * rate / chunk))))
            for _ in range(int(rng.integers(0, 4))):
                at = int(rng.integers(0, len(block)))
                block[at:at + int(rng.integers(1, 5))] = rng.uniform(0.0, 0.2)
        p = np.concatenate([p, block])
    p[rng.integers(0, n, n // 20)] = rng.choice([0.3, 0.35, 0.45, 0.5, 0.2], n // 20)
    return p[:n].astype(np.float32)


def _replay(probs: np.ndarray, task: dict):  # noqa: ANN202
    """Python's side of the driver's Replay model."""
    p = params(task)
    calls: list[int] = []

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        row = feed[p.audio_input].reshape(-1)
        out = {p.probability or "output": np.array([[probs[len(calls)]]], np.float32)}
        for o in p.carry:
            out[o] = row[(7 * np.arange(256)) % row.size].reshape(2, 1, 128)
        calls.append(1)
        return out

    return run


def _case(folder: Path, task: dict, inputs: list[dict] | str, n: int, pieces: list[int], seed: int,
          probs: np.ndarray | None = None) -> dict:
    """A case folder for the driver: ``n`` samples of audio fed in ``pieces`` (then the rest), the
    replayed probabilities, the task (its fields, or "rendered": EdgeshipVad.TASK) and the inputs."""
    p = params(task)
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal(n) * 0.1).astype(np.float32)
    n_chunks = -(-n // p.chunk)
    probs = _probabilities(n_chunks, p.sample_rate, p.chunk, seed) if probs is None else probs
    folder.mkdir(parents=True)
    audio.astype("<f4").tofile(folder / "audio.f32")
    probs.astype("<f4").tofile(folder / "probs.f32")
    lines = [f"pieces\t{','.join(map(str, pieces))}"]
    if task is TASK:
        lines.append("task\trendered")
    else:
        lines += [f"{k}\t{'' if v is None else v}" for k, v in {
            "audio_input": p.audio_input, "rate_input": p.rate_input, "sample_rate": p.sample_rate, "chunk": p.chunk,
            "context": p.context, "carry_out": next(iter(p.carry)), "carry_in": next(iter(p.carry.values())),
            "probability": p.probability, "threshold": repr(p.threshold), "neg_threshold": task.get("neg_threshold"),
            "min_speech_ms": p.min_speech_ms, "min_silence_ms": p.min_silence_ms, "speech_pad_ms": p.speech_pad_ms,
            "max_speech_s": task.get("max_speech_s"), "min_silence_at_max_speech_ms": p.min_silence_at_max_speech_ms,
            "use_max_poss": int(p.use_max_poss_sil_at_max_speech)}.items()]
    if inputs == "rendered":
        lines.append("inputs\trendered")
        specs = _rendered_inputs()
    else:
        specs = inputs
        lines += [f"input\t{s['name']}\t{','.join(str(d if isinstance(d, int) else -1) for d in s['shape'])}\t{s['dtype']}"
                  for s in specs]
    (folder / "case.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"folder": folder, "task": task, "audio": audio, "probs": probs, "pieces": pieces, "specs": specs}


def _run(jar_classes: tuple[Path, Path], cases: list[dict]) -> list[dict]:
    jar, classes = jar_classes
    jobs = cases[0]["folder"].parent / "jobs.txt"
    jobs.write_text("\n".join(str(c["folder"]) for c in cases) + "\n", encoding="utf-8")
    run = subprocess.run(["java", "-cp", f"{jar}{os.pathsep}{classes}", "DriverKt", str(jobs)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = []
    for c in cases:
        got: dict = {"in": []}
        for line in (c["folder"] / "kt_result.txt").read_text(encoding="utf-8").splitlines():
            f = line.split("\t")
            if f[0] == "in":
                dtype = "<f4" if f[4] == "float32" else "<i8"
                shape = [int(d) for d in f[3].split(",")] if f[3] else []
                arr = np.fromfile(c["folder"] / f[5], dtype).reshape(shape)
                if int(f[1]) == len(got["in"]):
                    got["in"].append({})
                got["in"][int(f[1])][f[2]] = arr
            elif f[0] == "probs":
                got["probs"] = np.asarray([int(v) for v in f[1].split(",")] if f[1] else [], np.int64).view(np.float64)
            elif f[0] in ("segments", "again"):
                got[f[0]] = [tuple(int(v) for v in s.split(",")) for s in f[1].split(";")] if f[1] else []
                if f[0] == "again":
                    got["again_same"], got["after_reset"] = f[2] == "true", f[3]
            else:
                got[f[0]] = f[1]
        out.append(got)
    return out


def _python(c: dict) -> dict:
    """What edgeship.tasks.vad does with the case: the same pieces through a Chunker and a StreamRunner."""
    task, audio = c["task"], c["audio"]
    chunker, runner = Chunker(task), StreamRunner(_replay(c["probs"], task), task, c["specs"])
    feeds: list[dict] = []
    probs, pushes, at = [], [], 0
    for piece in [*c["pieces"], len(audio) - sum(c["pieces"])]:
        rows = chunker.push(audio[at:at + piece])
        at += piece
        probs += [runner.step(r, feeds) for r in rows]
        pushes.append(len(rows))
    last = chunker.flush()
    pushes.append(0 if last is None else 1)
    if last is not None:
        probs.append(runner.step(last, feeds))
    segs = speech_segments(probs, task, len(audio))
    return {"feeds": feeds, "probs": np.asarray(probs), "pushes": pushes, "segments": segs,
            "flags": chunk_flags(segs, len(probs), task)}


@pytest.mark.kotlin
@needs_kotlin
def test_the_kotlin_stream_is_pythons_call_for_call_and_segment_for_segment(vad_jar, tmp_path):
    legacy = {"kind": "voice_activity", "sample_rate": 8000, "chunk": 256, "context": 32, "max_speech_s": 0.6,
              "use_max_poss_sil_at_max_speech": False, "neg_threshold": 0.2, "speech_pad_ms": 7,
              "min_silence_at_max_speech_ms": 64, "threshold": 0.5}
    inputs8k = [{"name": "input", "shape": ["batch", 288], "dtype": "float32"},
                {"name": "state", "shape": [2, "batch", 128], "dtype": "float32"},
                {"name": "sr", "shape": [], "dtype": "int64"}]
    # 22.05 kHz, a context longer than the chunk, padding of 661.5 samples, a model with no rate input
    odd = {"kind": "voice_activity", "sample_rate": 22050, "chunk": 300, "context": 450, "speech_pad_ms": 30,
           "min_speech_ms": 33, "min_silence_ms": 40, "threshold": 0.6, "max_speech_s": 2.5}
    inputs_odd = [{"name": "state", "shape": [2, 1, 128], "dtype": "float32"},
                  {"name": "input", "shape": [1, 750], "dtype": "float32"}]
    plain = {"kind": "voice_activity"}
    cases = [
        _case(tmp_path / "rendered", TASK, "rendered", 228_801, [1000, 24, 3000, 1, 511, 513, 40000], 1),
        _case(tmp_path / "legacy8k", legacy, inputs8k, 88_003, [256, 255, 257, 7000, 3], 2),
        _case(tmp_path / "odd", odd, inputs_odd, 198_527, [299, 301, 450, 12345], 3),
        _case(tmp_path / "exact", plain, SILERO_INPUTS, 512 * 40, [512 * 10, 100], 4, np.full(40, 0.1, np.float32)),
        _case(tmp_path / "tiny", {"kind": "voice_activity", "min_speech_ms": 0}, SILERO_INPUTS, 100, [], 5, np.array([0.9], np.float32)),
        _case(tmp_path / "empty", plain, SILERO_INPUTS, 0, [], 6, np.zeros(0, np.float32)),
    ]
    got = _run(vad_jar, cases)
    cut = 0
    for c, kt in zip(cases, got):
        name = c["folder"].name
        py = _python(c)
        rows = chunk_inputs(c["audio"], c["task"])
        assert kt["pushes"] == ",".join(map(str, py["pushes"])), name
        assert int(kt["samples"]) == len(c["audio"]) and len(kt["in"]) == len(py["feeds"]) == len(rows), name
        # every call's inputs are Python's bit for bit: the rows chunk_inputs's, the state carried, the rate
        for n, (a, b) in enumerate(zip(py["feeds"], kt["in"])):
            assert list(a) == list(b), (name, n)
            for k in a:
                assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), (name, n, k)
            audio_in = params(c["task"]).audio_input
            assert b[audio_in].reshape(-1).tobytes() == rows[n].tobytes(), (name, n)
        assert kt["probs"].tobytes() == py["probs"].tobytes(), name
        assert kt["segments"] == py["segments"] == speech_segments(c["probs"], c["task"], len(c["audio"])), name
        assert kt["flags"] == "".join("1" if f else "0" for f in py["flags"]), name
        assert kt["again"] == kt["segments"] and kt["again_same"] and kt["after_reset"] == "0,0", name
        if params(c["task"]).max_speech_s < 1e9:
            cut += speech_segments(c["probs"], {**c["task"], "max_speech_s": None}, len(c["audio"])) != py["segments"]
    assert cut == 3  # the max_speech_s cuts ran in the three cases that set it
    carried = got[0]["in"][1]['st"ate'].reshape(-1)
    assert carried.tobytes() == chunk_inputs(cases[0]["audio"], TASK)[0][(7 * np.arange(256)) % 576].tobytes()
    assert not got[0]["in"][0]['st"ate'].any() and got[0]["in"][0]["sr"].shape == () and int(got[0]["in"][0]["sr"]) == 16000
    assert list(got[2]["in"][0]) == ["state", "input"]  # no rate input: none fed
    assert got[3]["pushes"].endswith(",0") and got[3]["segments"] == [] and got[4]["segments"] == [(0, 100)]
    assert len(got[5]["in"]) == 0 and got[5]["segments"] == []
    assert sum(len(g["segments"]) for g in got) > 20


@pytest.mark.kotlin
@needs_kotlin
def test_the_kotlin_runner_refuses_inputs_the_task_does_not_feed(vad_jar, tmp_path):
    plain = {"kind": "voice_activity"}
    cases = [_case(tmp_path / "extra", plain, [*SILERO_INPUTS, {"name": "h0", "shape": [1], "dtype": "float32"}], 16_000, [], 1),
             _case(tmp_path / "width", plain, [{**SILERO_INPUTS[0], "shape": [1, 512]}, *SILERO_INPUTS[1:]], 16_000, [], 1),
             _case(tmp_path / "half", plain, [{**SILERO_INPUTS[0], "dtype": "float16"}, *SILERO_INPUTS[1:]], 16_000, [], 1),
             _case(tmp_path / "fine", plain, SILERO_INPUTS, 16_000, [], 1)]
    for c in cases:
        with open(c["folder"] / "case.txt", "a", encoding="utf-8") as f:
            f.write("error\t1\n")
    got = [g["error"] for g in _run(vad_jar, cases)]
    assert got == ["the model's input h0 is not fed by the voice_activity task",
                   "the model's audio input input has the shape [1, 512]; the task feeds it [1, 576] (context 64 + chunk 512)",
                   "the model's input input takes float16; this code feeds it float32", "none"]
    # Python says the same of the first two
    with pytest.raises(FormatError, match="input 'h0' is not fed"):
        StreamRunner(lambda f: {}, plain, cases[0]["specs"])
    with pytest.raises(FormatError, match=r"has the shape \[1, 512\]; the task feeds it \[1, 576\]"):
        StreamRunner(lambda f: {}, plain, cases[1]["specs"])


@pytest.mark.kotlin
@needs_kotlin
def test_the_kotlin_segment_rule_and_chunk_flags_are_pythons_on_many_sequences(vad_jar, tmp_path):
    """EdgeshipVad.speechSegments on the probability sequences and parameters the package is checked
    on in test_vad_glue.py (every branch, limits on chunk boundaries; 22.05 kHz too, where the padding
    is not a whole number of samples), and chunkFlags on segments whose ends fall on, before and after
    the middle samples."""
    from test_vad_glue import _probability_walks

    rng = np.random.default_rng(380)
    lines, want = [], []
    for t in range(600):
        rate, chunk = (8000, 256) if t % 3 == 0 else (22050, 300) if t % 5 == 4 else (16000, 512)  # 22.05 kHz: fractional pads
        probs = _probability_walks(rng, int(rng.integers(0, 400)), t % 4)
        task = {"sample_rate": rate, "chunk": chunk, "context": chunk // 8, "threshold": float(rng.choice([0.5, 0.3, 0.7, 0.15])),
                "neg_threshold": float(rng.choice([0.05, 0.2])) if t % 7 == 0 else None,
                "min_speech_ms": int(rng.choice([0, 50, 64, 250, 600])), "min_silence_ms": int(rng.choice([0, 32, 100, 300])),
                "speech_pad_ms": int(rng.choice([0, 7, 30, 32, 100])) if t % 6 != 5 else 0,
                "max_speech_s": [None, 0.4, 1.0, 2.3, 5.0, 0.288][t % 6],
                "min_silence_at_max_speech_ms": int(rng.choice([0, 40, 64, 98, 200])),
                "use_max_poss_sil_at_max_speech": bool(t % 2)}
        n = None if t % 4 == 0 else max(0, len(probs) * chunk - int(rng.integers(0, chunk)))
        fields = [rate, chunk, repr(task["threshold"]), task["neg_threshold"], task["min_speech_ms"], task["min_silence_ms"],
                  task["speech_pad_ms"], task["max_speech_s"], task["min_silence_at_max_speech_ms"],
                  int(task["use_max_poss_sil_at_max_speech"]), n, ",".join(str(v) for v in probs.view(np.int64))]
        lines.append("\t".join("" if v is None else str(v) for v in fields))
        want.append(speech_segments(probs, task, n))
    flag_cases = []
    for _ in range(300):
        chunk = int(rng.choice([512, 256, 300, 7, 1]))
        mids = np.arange(60) * chunk + chunk // 2
        bounds = np.sort(np.concatenate([rng.choice(mids, 4) + rng.integers(-1, 2, 4), rng.integers(-50, 60 * chunk, 4)]))
        segs = [(int(a), int(b)) for a, b in zip(bounds[::2], bounds[1::2])]
        n = int(rng.integers(0, 64))
        flag_cases.append((chunk, n, segs))
        lines.append(f"flags\t{chunk}\t{n}\t" + ";".join(f"{a},{b}" for a, b in segs))
    jobs_file = tmp_path / "parts.txt"
    jobs_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "jobs.txt").write_text(f"parts\t{jobs_file}\n", encoding="utf-8")
    jar, classes = vad_jar
    run = subprocess.run(["java", "-cp", f"{jar}{os.pathsep}{classes}", "DriverKt", str(tmp_path / "jobs.txt")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = (tmp_path / "parts.txt.out").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(got) == len(want) + len(flag_cases)
    for k, w in enumerate(want):
        assert got[k] == ";".join(f"{a},{b}" for a, b in w), (k, lines[k][:200])
    assert sum(bool(w) for w in want) > 500
    for k, (chunk, n, segs) in enumerate(flag_cases):
        flags = chunk_flags(segs, n, {"chunk": chunk})
        assert got[len(want) + k] == "".join("1" if f else "0" for f in flags), (chunk, n, segs)
