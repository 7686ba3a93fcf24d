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


def typecheck_android(android: Path, work: Path) -> subprocess.CompletedProcess:
    """kotlinc on the generated android/ folder against :data:`ANDROID_STUBS` (compiled, not run)."""
    stubs = work / "stubs"
    for rel, text in ANDROID_STUBS.items():
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text(text)
    subprocess.run(["javac", "-d", str(work / "classes"), *map(str, stubs.rglob("*.java"))], check=True,
                   capture_output=True, timeout=300)
    return subprocess.run(["kotlinc", "-cp", str(work / "classes"), *map(str, sorted(android.glob("*.kt"))),
                           "-d", str(work / "out")], capture_output=True, text=True, timeout=900)
