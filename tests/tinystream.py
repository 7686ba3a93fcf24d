"""Tiny models of the stream and embedding tasks, built on the fly (onnx.helper), shaped like the
real ones: a Silero-VAD-like stream model (audio chunk + carried state + a rate scalar in, a speech
probability and the next state out) and a BERT-like sentence embedder (token ids + mask in, one
pooled vector out), with a WordPiece tokenizer.json made by HF ``tokenizers`` itself."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHUNK, CONTEXT, HIDDEN = 512, 64, 32


def vad_model(path: Path, seed: int = 0, hidden: int = HIDDEN) -> Path:
    """A stream model like Silero VAD's: ``input`` [N, 576] f32, ``state`` [2, N, H] f32, ``sr`` an
    int64 scalar -> ``output`` [N, 1] (speech probability), ``stateN`` [2, N, H]. The probability
    follows the chunk's log energy (speech is loud) and the carried state (so carrying matters):
    ``z = tanh(x W + h U + b)``, ``p = sigmoid(2 (log(mean x^2 * sr / 16000) + 7) + z w)``."""
    rng = np.random.default_rng(seed)
    n = CONTEXT + CHUNK
    inits = [numpy_helper.from_array((rng.standard_normal((n, hidden)) * 0.05).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((hidden, hidden)) * 0.08).astype(np.float32), "U"),
             numpy_helper.from_array((rng.standard_normal(hidden) * 0.1).astype(np.float32), "b"),
             numpy_helper.from_array((rng.standard_normal((hidden, 1)) * 0.5).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([0], np.int64), "i0"), numpy_helper.from_array(np.array([1], np.int64), "i1"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "eps"), numpy_helper.from_array(np.array(7.0, np.float32), "seven"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two"), numpy_helper.from_array(np.array(16000.0, np.float32), "r0"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [
        helper.make_node("Slice", ["state", "i0", "i1"], ["h3"]),
        helper.make_node("Squeeze", ["h3", "i0"], ["h"]),
        helper.make_node("MatMul", ["input", "W"], ["xw"]),
        helper.make_node("MatMul", ["h", "U"], ["hu"]),
        helper.make_node("Add", ["xw", "hu"], ["s1"]),
        helper.make_node("Add", ["s1", "b"], ["s2"]),
        helper.make_node("Tanh", ["s2"], ["z"]),
        helper.make_node("Mul", ["input", "input"], ["x2"]),
        helper.make_node("ReduceMean", ["x2", "ax1"], ["e"], keepdims=1),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["srf", "r0"], ["rs"]),
        helper.make_node("Mul", ["e", "rs"], ["er"]),
        helper.make_node("Add", ["er", "eps"], ["e1"]),
        helper.make_node("Log", ["e1"], ["le"]),
        helper.make_node("Add", ["le", "seven"], ["le7"]),
        helper.make_node("Mul", ["le7", "two"], ["a"]),
        helper.make_node("MatMul", ["z", "w"], ["zw"]),
        helper.make_node("Add", ["a", "zw"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["output"]),
        helper.make_node("Unsqueeze", ["z", "i0"], ["z3"]),
        helper.make_node("Mul", ["h3", "half"], ["h3h"]),
        helper.make_node("Concat", ["z3", "h3h"], ["stateN"], axis=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny_vad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", hidden]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", hidden])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="edgeship-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    """16-bit PCM mono, with the standard library (independent of edgeship's reader)."""
    pcm = np.clip(np.round(np.asarray(audio, np.float64) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def speech_folder(folder: Path, seconds: float, seeds: tuple[int, ...], rate: int = 16000) -> Path:
    """A folder of speech-like .wav recordings (edgeship.data.speech_like), one per seed."""
    from edgeship.data import speech_like

    folder.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        audio, _ = speech_like(seconds, s, rate)
        write_wav(folder / f"rec-{s}.wav", audio, rate)
    return folder


WORDS = ("the", "a", "model", "runs", "on", "device", "phone", "camera", "speech", "voice", "text", "search", "fast",
         "small", "edge", "release", "signed", "bundle", "check", "golden", "vector", "embedding", "sentence", "token",
         "café", "naïve", "東", "京", "über", "is", "and", "of", "to", "in", "it", "with", "for", "this", "that")


def wordpiece_tokenizer(path: Path, max_length: int = 16) -> Path:
    """A BERT WordPiece tokenizer.json written by HF ``tokenizers`` (BertNormalizer,
    BertPreTokenizer, the [CLS] $A [SEP] template, truncation and padding to ``max_length``)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = sorted({w.lower() for w in WORDS} | {"ca", "##fe", "##s", "##ing", "##ed", "un", "##known", ".", ",", "!",
                                                    "?", "'", "-", "cafe", "naive", "uber"})
    pieces += [c for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + pieces))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    tok.save(str(path))
    return path


def embedder_model(path: Path, vocab_size: int, dim: int = 24, seed: int = 0) -> Path:
    """``input_ids`` [N, L] int64, ``attention_mask`` [N, L] int64 -> ``embedding`` [N, D]: token
    vectors (a Gather), a tanh layer, the mask-weighted mean (as sentence-transformers pools)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((vocab_size, dim)).astype(np.float32), "table"),
             numpy_helper.from_array((rng.standard_normal((dim, dim)) * 0.3).astype(np.float32), "M"),
             numpy_helper.from_array(np.array([2], np.int64), "ax2"), numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(np.array(1e-9, np.float32), "eps")]
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["t"]),
        helper.make_node("MatMul", ["t", "M"], ["tm"]),
        helper.make_node("Tanh", ["tm"], ["h"]),
        helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mf", "ax2"], ["m3"]),
        helper.make_node("Mul", ["h", "m3"], ["hm"]),
        helper.make_node("ReduceSum", ["hm", "ax1"], ["s"], keepdims=0),
        helper.make_node("ReduceSum", ["m3", "ax1"], ["c"], keepdims=0),
        helper.make_node("Add", ["c", "eps"], ["c1"]),
        helper.make_node("Div", ["s", "c1"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="edgeship-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


SENTENCES = ("the model runs on the device.", "a small edge release, signed and checked!", "speech and voice on a phone",
             "search the text with an embedding", "golden vectors check the bundle", "this camera is fast",
             "the café serves naïve über tokens", "東京 in a sentence", "unknown words like zebra-crossing",
             "it runs with a token and a vector", "the signed bundle of the release", "a voice in the camera",
             "fast small models on the edge", "sentence embedding for search", "check this, and that?",
             "the device of the phone", "release the model to the device", "text to token to vector",
             "golden speech on the edge", "a bundle is signed for release")
