"""One-off check that benchmarks/real_inputs.py reproduces the packages' own pre/post-processing.
Imports the packages (the harness never does); run once:

    .venv/bin/python benchmarks/check_real_inputs.py

* magika: real_inputs.magika_features == Magika._extract_features_from_seekable (beg + end) on real
  files of this machine, and the argmax label of the model == the package's ``dl.label``
  (identify_path) on the same files.
* silero_vad: real_inputs.vad_chunks + a plain streaming loop == OnnxWrapper.audio_forward's
  probabilities on synthesised speech.
* rapidocr: cannot be imported here (it needs cv2, not installed); its reproduction is checked by
  the ground truth instead (bench_real_models prints how the original model does on the rendered
  text: recognised text and orientation against what was drawn).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import real_inputs as ri  # noqa: E402


def check_magika() -> None:
    from magika import Magika
    from magika.types.seekable import Seekable

    m = Magika()
    files = ri.magika_files(60, seed=11)
    same_feat = same_label = 0
    for p in files:
        data = p.read_bytes()
        mine = ri.magika_features(ri.read_for_magika(p))
        cfg = ri.magika_config()
        fs = Magika._extract_features_from_seekable(Seekable(io.BytesIO(data)), cfg["beg_size"], cfg["mid_size"],
                                                    cfg["end_size"], cfg["padding_token"], cfg["block_size"],
                                                    cfg["use_inputs_at_offsets"])
        theirs = np.array(fs.beg + fs.end, dtype=np.int32)
        same_feat += int(mine is not None and np.array_equal(mine, theirs))
        import onnxruntime as ort
        sess = getattr(check_magika, "sess", None) or ort.InferenceSession(str(ri.site_file("magika", "models", "standard_v3_3", "model.onnx")))
        check_magika.sess = sess  # type: ignore[attr-defined]
        lab = ri.magika_config()["target_labels_space"][int(sess.run(None, {"bytes": mine[None]})[0].argmax())]
        res = m.identify_path(p)
        same_label += int(str(res.dl.label) == lab) if res.ok else 0
    print(f"magika: features identical on {same_feat}/{len(files)} files; model label == package dl.label on "
          f"{same_label}/{len(files)}")


def check_vad() -> None:
    import onnxruntime as ort
    import torch
    from silero_vad.utils_vad import OnnxWrapper

    path = str(ri.site_file("silero_vad", "data", "silero_vad.onnx"))
    audio, _ = ri.speech_like(12, 3)
    theirs = OnnxWrapper(path, force_onnx_cpu=True).audio_forward(torch.from_numpy(audio)[None], 16000).numpy()[0]
    sess = ort.InferenceSession(path)
    state = np.zeros((2, 1, 128), np.float32)
    mine = []
    for c in ri.vad_chunks(audio):
        o, state = sess.run(None, {"input": c[None], "state": state, "sr": np.array(16000, np.int64)})
        mine.append(float(o[0, 0]))
    mine = np.array(mine)
    print(f"silero_vad: {len(mine)} chunks, max |p - OnnxWrapper p| = {np.abs(mine - theirs[:len(mine)]).max():.2e}, "
          f"decisions equal on {((mine > 0.5) == (theirs[:len(mine)] > 0.5)).mean():.1%} ({len(theirs)} from the package)")


if __name__ == "__main__":
    check_magika()
    check_vad()
