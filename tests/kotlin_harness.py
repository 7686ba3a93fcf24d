"""The generated plain-Kotlin preprocessing (integration/android/EdgeshipPreprocessing.kt),
compiled with a small driver and run on a JVM: the tests hand it RGB pixels as stored, an EXIF
orientation and an artifact id, and get back the bytes it would give the model."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

DRIVER_KT = r"""
import ai.edgeship.generated.EdgeshipArtifacts
import ai.edgeship.generated.EdgeshipPreprocessing
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

// args: a jobs file, a results file. A job line (tab-separated) is either
//   pixels RGB_FILE W H ORIENTATION ARTIFACT_ID OUT_FILE   -> the artifact's input bytes (little-endian)
//   topk SCORES_FILE LABELS_FILE K THRESHOLD ARTIFACT_ID    -> "topk<TAB>p<TAB>label" lines
fun main(args: Array<String>) {
    val out = StringBuilder()
    for (s in EdgeshipArtifacts.ALL) {
        out.append("spec\t" + s.artifact + "\t" + s.format + "\t" + s.modelFile + "\t" + s.shape.joinToString(",") + "\t" +
                   s.dtype + "\t" + (if (s.channelsFirst) "NCHW" else "NHWC") + "\t" + s.byteSize + "\t" + s.rawPixels +
                   "\t" + s.quantized + "\t" + s.inputName.length + "\n")
    }
    for (line in File(args[0]).readLines(Charsets.UTF_8)) {
        if (line.isBlank()) continue
        val f = line.split("\t")
        if (f[0] == "pixels") {
            val w = f[2].toInt()
            val h = f[3].toInt()
            val rgb = File(f[1]).readBytes()
            val argb = IntArray(w * h) { i -> (0xFF shl 24) or ((rgb[3 * i].toInt() and 0xFF) shl 16) or
                ((rgb[3 * i + 1].toInt() and 0xFF) shl 8) or (rgb[3 * i + 2].toInt() and 0xFF) }
            val up = EdgeshipPreprocessing.orient(argb, w, h, f[4].toInt())
            val spec = EdgeshipArtifacts.byId(f[5])
            val buf = EdgeshipPreprocessing.toInputBuffer(up.argb, up.width, up.height, spec, ByteOrder.LITTLE_ENDIAN)
            val bytes = ByteArray(buf.remaining())
            buf.get(bytes)
            File(f[6]).writeBytes(bytes)
            out.append("pixels\t" + f[6] + "\t" + up.width + "\t" + up.height + "\n")
        } else if (f[0] == "topk") {
            val sb = ByteBuffer.wrap(File(f[1]).readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
            val scores = FloatArray(sb.remaining())
            sb.get(scores)
            val labels = File(f[2]).readLines(Charsets.UTF_8)
            val spec = EdgeshipArtifacts.byId(f[5])
            for ((label, p) in EdgeshipPreprocessing.topK(scores, labels, f[3].toInt(), f[4].toDouble(), spec.outputIsLogits)) {
                out.append("topk\t" + p + "\t" + label + "\n")
            }
        }
    }
    File(args[1]).writeText(out.toString(), Charsets.UTF_8)
    val name = File(args[1] + ".names")
    name.writeText(EdgeshipArtifacts.ALL.joinToString("\u0000") { it.inputName }, Charsets.UTF_8)
}
"""


def have_kotlin() -> bool:
    return shutil.which("kotlinc") is not None and shutil.which("java") is not None


def compile_preprocessing(kt: Path, work: Path) -> Path:
    """The generated file and the driver compiled into ``work/driver.jar``."""
    (work / "Driver.kt").write_text(DRIVER_KT)
    jar = work / "driver.jar"
    build = subprocess.run(["kotlinc", str(kt), str(work / "Driver.kt"), "-include-runtime", "-d", str(jar)],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    return jar


class Driver:
    """Jobs for one run of the compiled driver."""

    def __init__(self, jar: Path, work: Path) -> None:
        self.jar, self.work = jar, work
        self.jobs: list[str] = []
        self.n = 0

    def pixels(self, rgb: np.ndarray, orientation: int, artifact: str) -> Path:
        """Queue: the stored pixels ``rgb`` (HxWx3 uint8), shown as ``orientation`` says, as the
        input of ``artifact``; the file its bytes will be in."""
        self.n += 1
        src, out = self.work / f"rgb{self.n}.bin", self.work / f"out{self.n}.bin"
        src.write_bytes(np.ascontiguousarray(rgb, np.uint8).tobytes())
        h, w, _ = rgb.shape
        self.jobs.append(f"pixels\t{src}\t{w}\t{h}\t{orientation}\t{artifact}\t{out}")
        return out

    def topk(self, scores: np.ndarray, labels: list[str], k: int, threshold: float, artifact: str) -> None:
        self.n += 1
        s, lab = self.work / f"scores{self.n}.bin", self.work / f"labels{self.n}.txt"
        np.asarray(scores, "<f4").tofile(s)
        lab.write_text("\n".join(labels) + "\n", encoding="utf-8")
        self.jobs.append(f"topk\t{s}\t{lab}\t{k}\t{threshold}\t{artifact}")

    def run(self) -> dict:
        """Run the jobs: {"specs": {id: {...}}, "topk": [(p, label)], "sizes": {out: (w, h)},
        "input_names": [...]}."""
        jobs, results = self.work / "jobs.txt", self.work / "results.txt"
        jobs.write_text("\n".join(self.jobs) + "\n", encoding="utf-8")
        run = subprocess.run(["java", "-jar", str(self.jar), str(jobs), str(results)], capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        out: dict = {"specs": {}, "topk": [], "sizes": {}}
        for line in results.read_text(encoding="utf-8").splitlines():
            f = line.split("\t")
            if f[0] == "spec":
                out["specs"][f[1]] = {"format": f[2], "model_file": f[3], "shape": [int(d) for d in f[4].split(",")],
                                      "dtype": f[5], "layout": f[6], "bytes": int(f[7]), "raw": f[8] == "true",
                                      "quantized": f[9] == "true"}
            elif f[0] == "pixels":
                out["sizes"][f[1]] = (int(f[2]), int(f[3]))
            elif f[0] == "topk":
                out["topk"].append((float(f[1]), f[2]))
        out["input_names"] = Path(str(results) + ".names").read_bytes().decode("utf-8").split("\0")
        self.jobs = []
        return out


def read_input(path: Path, spec: dict) -> np.ndarray:
    """The bytes the driver wrote for an artifact of ``spec`` (from ``run()["specs"]``), as an array."""
    dtype = {"float32": "<f4", "uint8": "u1", "int8": "i1"}[spec["dtype"]]
    data = path.read_bytes()
    assert len(data) == spec["bytes"], (len(data), spec)
    return np.frombuffer(data, dtype=dtype).reshape(spec["shape"])


#: the Android and LiteRT API that EdgeshipClassifier.kt uses, as stubs with the real signatures
#: (android.jar and the LiteRT AAR are not here): enough for kotlinc to type-check the classifier
ANDROID_STUBS = {
    "android/content/Context.java": """package android.content;
public abstract class Context {
    public abstract android.content.res.AssetManager getAssets();
    public abstract ContentResolver getContentResolver();
}""",
    "android/content/ContentResolver.java": """package android.content;
public abstract class ContentResolver {
    public final java.io.InputStream openInputStream(android.net.Uri uri) throws java.io.FileNotFoundException { return null; }
}""",
    "android/content/res/AssetManager.java": """package android.content.res;
public final class AssetManager {
    public java.io.InputStream open(String fileName) throws java.io.IOException { return null; }
    public AssetFileDescriptor openFd(String fileName) throws java.io.IOException { return null; }
}""",
    "android/content/res/AssetFileDescriptor.java": """package android.content.res;
public class AssetFileDescriptor implements java.io.Closeable {
    public java.io.FileDescriptor getFileDescriptor() { return null; }
    public long getStartOffset() { return 0; }
    public long getDeclaredLength() { return 0; }
    public void close() throws java.io.IOException {}
}""",
    "android/net/Uri.java": """package android.net;
public abstract class Uri {}""",
    "android/graphics/Bitmap.java": """package android.graphics;
public final class Bitmap {
    public enum Config { ALPHA_8, RGB_565, ARGB_4444, ARGB_8888, RGBA_F16, HARDWARE }
    public final Config getConfig() { return null; }
    public Bitmap copy(Config config, boolean isMutable) { return null; }
    public final int getWidth() { return 0; }
    public final int getHeight() { return 0; }
    public void getPixels(int[] pixels, int offset, int stride, int x, int y, int width, int height) {}
}""",
    "android/graphics/BitmapFactory.java": """package android.graphics;
public class BitmapFactory {
    public static class Options {
        public Bitmap.Config inPreferredConfig;
        public boolean inPremultiplied;
    }
    public static Bitmap decodeByteArray(byte[] data, int offset, int length, Options opts) { return null; }
}""",
    "androidx/exifinterface/media/ExifInterface.java": """package androidx.exifinterface.media;
public class ExifInterface {
    public static final String TAG_ORIENTATION = "Orientation";
    public static final int ORIENTATION_NORMAL = 1;
    public ExifInterface(java.io.InputStream inputStream) throws java.io.IOException {}
    public int getAttributeInt(String tag, int defaultValue) { return defaultValue; }
}""",
    "org/tensorflow/lite/DataType.java": """package org.tensorflow.lite;
public enum DataType { FLOAT32, INT32, UINT8, INT64, STRING, BOOL, INT16, INT8 }""",
    "org/tensorflow/lite/Tensor.java": """package org.tensorflow.lite;
public interface Tensor {
    class QuantizationParams {
        public float getScale() { return 0f; }
        public int getZeroPoint() { return 0; }
    }
    DataType dataType();
    int numBytes();
    int numElements();
    int[] shape();
    QuantizationParams quantizationParams();
}""",
    "org/tensorflow/lite/Interpreter.java": """package org.tensorflow.lite;
public final class Interpreter implements AutoCloseable {
    public static class Options {
        public Options setNumThreads(int numThreads) { return this; }
    }
    public Interpreter(java.nio.ByteBuffer byteBuffer, Options options) {}
    public Tensor getInputTensor(int inputIndex) { return null; }
    public Tensor getOutputTensor(int outputIndex) { return null; }
    public void run(Object input, Object output) {}
    public void close() {}
}""",
}


#: the ONNX Runtime Java API (ai.onnxruntime, as onnxruntime-android ships it) that
#: EdgeshipOcrReader.kt uses, as stubs with the real signatures (the AAR is not here)
ORT_STUBS = {
    "ai/onnxruntime/OrtException.java": """package ai.onnxruntime;
public class OrtException extends Exception {
    public OrtException(String message) { super(message); }
}""",
    "ai/onnxruntime/OnnxValue.java": """package ai.onnxruntime;
public interface OnnxValue extends AutoCloseable {
    Object getValue() throws OrtException;
    ValueInfo getInfo();
    void close();
}""",
    "ai/onnxruntime/ValueInfo.java": """package ai.onnxruntime;
public interface ValueInfo {}""",
    "ai/onnxruntime/TensorInfo.java": """package ai.onnxruntime;
public class TensorInfo implements ValueInfo {
    public long[] getShape() { return null; }
}""",
    "ai/onnxruntime/OnnxTensorLike.java": """package ai.onnxruntime;
public abstract class OnnxTensorLike implements OnnxValue {
    public TensorInfo getInfo() { return null; }
    public void close() {}
}""",
    "ai/onnxruntime/OnnxTensor.java": """package ai.onnxruntime;
public class OnnxTensor extends OnnxTensorLike {
    public static OnnxTensor createTensor(OrtEnvironment env, java.nio.FloatBuffer data, long[] shape) throws OrtException { return null; }
    public Object getValue() throws OrtException { return null; }
    public java.nio.FloatBuffer getFloatBuffer() { return null; }
}""",
    "ai/onnxruntime/OrtEnvironment.java": """package ai.onnxruntime;
public class OrtEnvironment implements AutoCloseable {
    public static OrtEnvironment getEnvironment() { return null; }
    public OrtSession createSession(byte[] modelArray, OrtSession.SessionOptions options) throws OrtException { return null; }
    public OrtSession createSession(String modelPath, OrtSession.SessionOptions options) throws OrtException { return null; }
    public void close() {}
}""",
    "ai/onnxruntime/OrtSession.java": """package ai.onnxruntime;
public class OrtSession implements AutoCloseable {
    public static class SessionOptions implements AutoCloseable {
        public SessionOptions() {}
        public void setIntraOpNumThreads(int numThreads) throws OrtException {}
        public void close() {}
    }
    public static class Result implements AutoCloseable, Iterable<java.util.Map.Entry<String, OnnxValue>> {
        public OnnxValue get(int index) { return null; }
        public java.util.Iterator<java.util.Map.Entry<String, OnnxValue>> iterator() { return null; }
        public void close() {}
    }
    public java.util.Set<String> getInputNames() { return null; }
    public java.util.Set<String> getOutputNames() { return null; }
    public Result run(java.util.Map<String, ? extends OnnxTensorLike> inputs) throws OrtException { return null; }
    public void close() throws OrtException {}
}""",
}

def typecheck_android(android: Path, work: Path, extra_stubs: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """kotlinc on the generated android/ folder against :data:`ANDROID_STUBS` (and ``extra_stubs``,
    e.g. :data:`ORT_STUBS`) (compiled, not run)."""
    stubs = work / "stubs"
    for rel, text in {**ANDROID_STUBS, **(extra_stubs or {})}.items():
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text(text)
    subprocess.run(["javac", "-d", str(work / "classes"), *map(str, stubs.rglob("*.java"))], check=True,
                   capture_output=True, timeout=300)
    return subprocess.run(["kotlinc", "-cp", str(work / "classes"), *map(str, sorted(android.glob("*.kt"))),
                           "-d", str(work / "out")], capture_output=True, text=True, timeout=900)


# ---- the OCR glue (integration/android/EdgeshipOcr.kt) on a JVM ------------------------------

#: a driver that replays a traced run of tasks.ocr.read_page through the Kotlin glue: the models
#: are functions that hand back the traced outputs in turn and keep the inputs they were given
OCR_DRIVER_KT = r"""
import ai.edgeship.generated.EdgeshipOcrGlue
import ai.edgeship.generated.EdgeshipOcrPipeline
import ai.edgeship.generated.OcrImage
import ai.edgeship.generated.OcrTensor
import ai.edgeship.generated.TextDetectionTask
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

fun readF32(f: File): FloatArray {
    val b = ByteBuffer.wrap(f.readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    val out = FloatArray(b.remaining())
    b.get(out)
    return out
}

fun writeF32(f: File, x: FloatArray) {
    val b = ByteBuffer.allocate(4 * x.size).order(ByteOrder.LITTLE_ENDIAN)
    b.asFloatBuffer().put(x)
    f.writeBytes(b.array())
}

fun shape(s: String): IntArray = s.split(",").map { it.toInt() }.toIntArray()

fun hex(b: ByteArray): String = b.joinToString("") { String.format("%02x", it.toInt() and 0xFF) }

/** A model that answers with the traced outputs in turn and writes down what it was given. */
class Replay(val stage: String, val dir: File, val outputs: List<OcrTensor>, val log: StringBuilder) {
    var calls = 0
    fun run(x: OcrTensor): OcrTensor {
        if (calls >= outputs.size) throw IllegalStateException("$stage called ${calls + 1} times; Python called it ${outputs.size}")
        writeF32(File(dir, "kt_${stage}_in_$calls.f32"), x.data)
        log.append(stage + "_in\t" + calls + "\t" + x.shape.joinToString(",") + "\n")
        return outputs[calls++]
    }
}

fun doubles(s: String): DoubleArray = s.split(",").map { java.lang.Double.longBitsToDouble(it.toLong()) }.toDoubleArray()

/** The glue's parts on what parts.txt in `dir` lists (doubles and floats as their bits): "offset PATH DELTA",
 *  "distance BOX RATIO", "boxes MAP_FILE MH MW PAGE_H PAGE_W", "crop H W IMAGE_FILE BOX OUT_FILE"; each answer
 *  a line of kt_parts.txt. */
fun runParts(dir: File) {
    val out = StringBuilder()
    for (entry in File(dir, "parts.txt").readLines(Charsets.UTF_8)) {
        val f = entry.split("\t")
        when (f[0]) {
            "offset" -> out.append("offset\t" + EdgeshipOcrGlue.roundOffset(doubles(f[1]), doubles(f[2])[0]).joinToString(",") + "\n")
            "distance" -> out.append("distance\t" +
                java.lang.Double.doubleToRawLongBits(EdgeshipOcrGlue.unclipDistance(doubles(f[1]), doubles(f[2])[0])) + "\n")
            "boxes" -> {  // the rendered detection record's dbBoxes of a map
                val r = EdgeshipOcrGlue.dbBoxes(readF32(File(dir, f[1])), f[2].toInt(), f[3].toInt(), f[4].toInt(), f[5].toInt(),
                                                 EdgeshipOcrPipeline.DET)
                out.append("boxes\t" + r.first.joinToString(";") { b -> b.joinToString(",") { java.lang.Float.floatToRawIntBits(it).toString() } } +
                           "\t" + r.second.joinToString(",") { java.lang.Double.doubleToRawLongBits(it).toString() } + "\n")
            }
            "crop" -> {
                val box = f[4].split(",").map { java.lang.Float.intBitsToFloat(it.toInt()) }.toFloatArray()
                val r = EdgeshipOcrGlue.crop(OcrImage(f[1].toInt(), f[2].toInt(), 3, File(dir, f[3]).readBytes()), box)
                File(dir, f[5]).writeBytes(r.data)
                out.append("crop\t" + r.height + "\t" + r.width + "\n")
            }
        }
    }
    File(dir, "kt_parts.txt").writeText(out.toString(), Charsets.UTF_8)
}

// args: a file of case folders, one a line; each holds case.txt (what Python traced) and gets kt_*;
// a line "parts<TAB>FOLDER" runs the glue's parts on FOLDER/parts.txt instead (runParts)
fun main(args: Array<String>) {
    for (line in File(args[0]).readLines(Charsets.UTF_8)) {
        if (line.isBlank()) continue
        if (line.startsWith("parts\t")) {
            runParts(File(line.substring(6)))
            continue
        }
        val dir = File(line)
        var rgb: OcrImage? = null
        val outs = HashMap<String, ArrayList<OcrTensor>>()
        var characters: List<String> = emptyList()
        var useCls = false
        var detTask = EdgeshipOcrPipeline.DET
        for (entry in File(dir, "case.txt").readLines(Charsets.UTF_8)) {
            val f = entry.split("\t")
            when (f[0]) {
                "rgb" -> rgb = OcrImage(f[1].toInt(), f[2].toInt(), f[3].toInt(), File(dir, f[4]).readBytes())
                "characters" -> characters = EdgeshipOcrGlue.readCharacters(File(dir, f[1]).readText(Charsets.UTF_8))
                "use_cls" -> useCls = f[1] == "1"
                "det_task" -> {  // the rendered record with some fields changed: name=value ...
                    val o = f.drop(1).associate { it.substringBefore("=") to it.substringAfter("=") }
                    val d = EdgeshipOcrPipeline.DET
                    detTask = TextDetectionTask(o["limit_side_len"]?.toInt() ?: d.limitSideLen, o["limit_type"] ?: d.limitType,
                        d.mean, d.std, o["thresh"]?.toDouble() ?: d.thresh, o["box_thresh"]?.toDouble() ?: d.boxThresh,
                        o["max_candidates"]?.toInt() ?: d.maxCandidates, o["unclip_ratio"]?.toDouble() ?: d.unclipRatio,
                        o["use_dilation"]?.let { it == "1" } ?: d.useDilation, o["min_size"]?.toInt() ?: d.minSize,
                        d.maxSideLen, d.minSideLen, d.minHeight, d.widthHeightRatio, d.input)
                }
                else -> outs.getOrPut(f[0]) { ArrayList() }.add(OcrTensor(readF32(File(dir, f[2])), shape(f[1])))
            }
        }
        val log = StringBuilder()
        val det = Replay("det", dir, outs["det"] ?: ArrayList(), log)
        val cls = Replay("cls", dir, outs["cls"] ?: ArrayList(), log)
        val rec = Replay("rec", dir, outs["rec"] ?: ArrayList(), log)
        val t0 = System.nanoTime()
        val clsModel: (OcrTensor) -> OcrTensor = { cls.run(it) }
        val r = EdgeshipOcrGlue.readPage(rgb!!, { det.run(it) }, { rec.run(it) }, characters, if (useCls) clsModel else null,
                                         detTask = detTask)
        log.append("ms\t" + (System.nanoTime() - t0) / 1e6 + "\n")
        log.append("calls\t" + det.calls + "\t" + cls.calls + "\t" + rec.calls + "\n")
        log.append("page\t" + r.pageHeight + "\t" + r.pageWidth + "\n")
        log.append("det_input_shape\t" + r.detInputShape.joinToString(",") + "\n")
        for (b in r.boxesPage) log.append("box\t" + b.joinToString(",") { java.lang.Float.floatToRawIntBits(it).toString() } + "\n")
        for (l in r.lines) {
            log.append("line\t" + l.box.joinToString(",") { java.lang.Float.floatToRawIntBits(it).toString() } + "\t" +
                       java.lang.Double.doubleToRawLongBits(l.score) + "\t" + (if (l.turned) 1 else 0) + "\t" +
                       hex(l.text.toByteArray(Charsets.UTF_8)) + "\n")
        }
        File(dir, "kt_result.txt").writeText(log.toString(), Charsets.UTF_8)
    }
}
"""


def compile_ocr(kt: Path, work: Path) -> Path:
    """The generated EdgeshipOcr.kt and :data:`OCR_DRIVER_KT` compiled into ``work/ocr.jar``."""
    (work / "OcrDriver.kt").write_text(OCR_DRIVER_KT)
    jar = work / "ocr.jar"
    build = subprocess.run(["kotlinc", str(kt), str(work / "OcrDriver.kt"), "-include-runtime", "-d", str(jar)],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    return jar


def write_ocr_case(folder: Path, rgb: np.ndarray, trace: dict, characters_txt: str, use_cls: bool,
                   det_changes: dict | None = None) -> Path:
    """A case folder for the driver: the RGB page, the character list and the traced model outputs
    (``tasks.ocr.read_page(..., trace=True).trace``) as little-endian float32 files; ``det_changes``:
    fields of the detection record that differ from the rendered one (limit_side_len, limit_type,
    thresh, box_thresh, max_candidates, unclip_ratio, use_dilation, min_size)."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w, c = rgb.shape
    (folder / "rgb.bin").write_bytes(np.ascontiguousarray(rgb, np.uint8).tobytes())
    (folder / "characters.txt").write_text(characters_txt, encoding="utf-8")
    lines = [f"rgb\t{h}\t{w}\t{c}\trgb.bin", "characters\tcharacters.txt", f"use_cls\t{int(use_cls)}"]
    if det_changes:
        lines.append("\t".join(["det_task"] + [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in det_changes.items()]))
    outs = [("det", trace["det_map"])] + [("cls", b["scores"]) for b in trace.get("cls", [])] + \
           [("rec", b["logits"]) for b in trace.get("rec", [])]
    for n, (stage, a) in enumerate(outs):
        a = np.asarray(a, np.float32)
        a.astype("<f4").tofile(folder / f"out{n}.f32")
        lines.append(f"{stage}\t{','.join(str(d) for d in a.shape)}\tout{n}.f32")
    (folder / "case.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run_ocr(jar: Path, folders: list[Path]) -> None:
    jobs = folders[0].parent / "ocr-jobs.txt"
    jobs.write_text("\n".join(str(f) for f in folders) + "\n", encoding="utf-8")
    run = subprocess.run(["java", "-jar", str(jar), str(jobs)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]


def read_ocr_result(folder: Path) -> dict:
    """What the Kotlin glue gave for a case: {"page": (h, w), "det_input_shape", "boxes" [[8 floats]],
    "lines": [{"box", "score", "turned", "text"}], "calls": (det, cls, rec), "inputs": {stage: [arrays]}, "ms"}."""
    out: dict = {"boxes": [], "lines": [], "inputs": {"det": [], "cls": [], "rec": []}}

    def f32(bits: str) -> list[float]:
        return np.asarray([int(b) for b in bits.split(",")], np.int64).astype(np.uint32).view(np.float32).tolist()

    for line in (folder / "kt_result.txt").read_text(encoding="utf-8").splitlines():
        f = line.split("\t")
        if f[0].endswith("_in"):
            stage = f[0][:-3]
            shape = [int(d) for d in f[2].split(",")]
            out["inputs"][stage].append(np.fromfile(folder / f"kt_{stage}_in_{f[1]}.f32", "<f4").reshape(shape))
        elif f[0] == "ms":
            out["ms"] = float(f[1])
        elif f[0] == "calls":
            out["calls"] = tuple(int(v) for v in f[1:])
        elif f[0] == "page":
            out["page"] = (int(f[1]), int(f[2]))
        elif f[0] == "det_input_shape":
            out["det_input_shape"] = [int(d) for d in f[1].split(",")]
        elif f[0] == "box":
            out["boxes"].append(f32(f[1]))
        elif f[0] == "line":
            score = np.asarray([int(f[2])], np.int64).view(np.float64)[0]
            out["lines"].append({"box": f32(f[1]), "score": float(score), "turned": f[3] == "1",
                                 "text": bytes.fromhex(f[4]).decode("utf-8")})
    return out


def _bits64(values: object) -> str:
    return ",".join(str(v) for v in np.asarray(values, np.float64).ravel().view(np.int64))


def run_ocr_parts(jar: Path, folder: Path, offsets: list[dict], distances: list[tuple[object, float]],
                  crops: list[dict], maps: list[tuple[np.ndarray, int, int]] = ()) -> dict:
    """The Kotlin glue's roundOffset of each {"path", "delta"}, unclipDistance of each (box, ratio),
    crop of each {"img" (h x w x 3 uint8), "box" (float32 [4, 2])} and dbBoxes (the rendered
    detection record) of each (map [H, W], page height, page width): {"offsets": [[[x, y]...]],
    "distances": [float], "crops": [uint8 h x w x 3], "boxes": [([[x, y] * 4]..., [score...])]}."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"offset\t{_bits64(c['path'])}\t{_bits64([c['delta']])}" for c in offsets]
    lines += [f"distance\t{_bits64(box)}\t{_bits64([ratio])}" for box, ratio in distances]
    for n, (m, ph, pw) in enumerate(maps):
        np.asarray(m, "<f4").tofile(folder / f"map{n}.f32")
        lines.append(f"boxes\tmap{n}.f32\t{m.shape[0]}\t{m.shape[1]}\t{ph}\t{pw}")
    for n, c in enumerate(crops):
        h, w = c["img"].shape[:2]
        (folder / f"crop{n}.bin").write_bytes(np.ascontiguousarray(c["img"], np.uint8).tobytes())
        bits = ",".join(str(v) for v in np.asarray(c["box"], np.float32).ravel().view(np.int32))
        lines.append(f"crop\t{h}\t{w}\tcrop{n}.bin\t{bits}\tkt_crop{n}.bin")
    (folder / "parts.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    jobs = folder / "parts-jobs.txt"
    jobs.write_text(f"parts\t{folder}\n", encoding="utf-8")
    run = subprocess.run(["java", "-jar", str(jar), str(jobs)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out: dict = {"offsets": [], "distances": [], "crops": [], "boxes": []}

    def bits(text: str, sep: str, dtype: str) -> list:
        ints = np.asarray([int(v) for v in text.split(sep)] if text else [], np.int64)
        return (ints.astype(np.int32).view(np.float32) if dtype == "f4" else ints.view(np.float64)).tolist()

    for line in (folder / "kt_parts.txt").read_text(encoding="utf-8").splitlines():
        f = line.split("\t")
        if f[0] == "offset":
            xy = [int(v) for v in f[1].split(",")] if f[1] else []
            out["offsets"].append([[xy[i], xy[i + 1]] for i in range(0, len(xy), 2)])
        elif f[0] == "distance":
            out["distances"].append(float(np.asarray([int(f[1])], np.int64).view(np.float64)[0]))
        elif f[0] == "boxes":
            boxes = [np.reshape(bits(b, ",", "f4"), (4, 2)).tolist() for b in f[1].split(";")] if f[1] else []
            out["boxes"].append((boxes, bits(f[2], ",", "f8")))
        elif f[0] == "crop":
            n = len(out["crops"])
            out["crops"].append(np.fromfile(folder / f"kt_crop{n}.bin", np.uint8).reshape(int(f[1]), int(f[2]), 3))
    return out
