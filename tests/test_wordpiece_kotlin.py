"""The WordPiece tokenizer's Kotlin port (integration/android/EdgeshipWordPiece.kt, as
bundle.embed_app.write_wordpiece_code writes it) compiled with a small driver and run on a JVM
against HF tokenizers, token for token: the eight tokenizers of tests/test_wordpiece.py on 500
real sentences, the hard cases and 300 random texts; every code point of planes 0 to 3 and 14
through each step of the normalizer and the pre-tokenizer; the batch; the vocab.txt reader; the
errors; a rendered record with a hostile input name. kotlinc runs once for the module, the JVM
once (every job queued first)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeship.readers.tokenizer import read_vocabulary
from edgeship.tasks import Embedding
from edgeship.tasks.text import WordPiece

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import check_wordpiece as cw  # noqa: E402

CI = bool(os.environ.get("EDGESHIP_CI"))
pytestmark = [pytest.mark.kotlin,
              pytest.mark.skipif(shutil.which("kotlinc") is None and not CI, reason="no kotlinc here (CI installs it)")]
RENDERED = "short, padded to the longest, BertProcessing"
HOSTILE = 'in"put$ ${x} \\n é 😀 */'
VOCAB_TEXTS = ("\ufeff[PAD]\n[UNK] \r\n[CLS]\x1c\n\n[SEP]\u00a0\t\nword\nword\n##s\u3000\nlast", "", "\n", "a\r\n\r\n", "x\ny\n")
BATCH_CONFIGS = ("BERT uncased", RENDERED)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return cw.sentences(500) + list(cw.hard_cases().values()) + cw.fuzz_texts(300, 38)


@pytest.fixture(scope="module")
def run(tmp_path_factory, texts) -> dict:
    """Every job of the module, in one JVM: {"cases", "encode", "batch", "signature", ...}."""
    work = tmp_path_factory.mktemp("wordpiece-kotlin")
    cases = cw.made_cases(cw.sentences(500) + list(cw.hard_cases().values()), work / "tokenizers")
    _, vocab, fields = cases[RENDERED]
    rendered = Embedding(**(fields | {"ids_input": HOSTILE, "type_input": "token_type_ids"}))
    kt = cw.KotlinPort(rendered, work)
    out: dict = {"cases": cases, "rendered": rendered, "kt": kt.files}
    out["encode"] = {name: kt.encode(v, f, texts) for name, (_, v, f) in cases.items()}
    out["signature"] = kt.signature()
    out["batch"] = {(name, n): kt.batch(cases[name][1], cases[name][2] | {"type_input": "token_type_ids"}, b)
                    for name in BATCH_CONFIGS for n, b in enumerate(_batches(texts))}
    out["rendered_batch"] = kt.batch(vocab, "rendered", texts[:5])
    out["vocab"] = [kt.vocabulary(t) for t in VOCAB_TEXTS]
    _, v0, f0 = cases["BERT uncased"]
    out["errors"] = {"surrogate": kt.encode(v0, f0, ["a\ud800b", "a\ud83d\ude00b", "\udc00"]),
                     "cls": kt.encode(v0, f0 | {"cls_token": "<cls>"}, ["a"]),
                     "max_length": kt.encode(v0, {"max_length": 2}, ["a"])}
    kt.run()
    return out


def _batches(texts: list[str]) -> list[list[str]]:
    return [texts[:9], texts[500:560], [""], []]


def test_the_kotlin_ids_are_tokenizers_own_in_every_configuration(run, texts):
    for name, (tok, _, _) in run["cases"].items():
        want = cw.reference_ids(tok, texts)
        got = cw.read_ids(run["encode"][name])
        bad = [(t, a, b) for t, a, b in zip(texts, got, want) if a != b]
        assert len(got) == len(texts) and not bad, f"{name}: {len(bad)} of {len(texts)} texts differ, the first {bad[:1]}"


def test_every_code_point_goes_through_each_step_as_in_tokenizers(run):
    """The JVM's own Unicode (Java 17: 13.0) is not tokenizers': the port reads tokenizers' tables,
    and java.text.Normalizer's NFD between the NFD_KEEP code points."""
    want = cw.tokenizers_signature(cw.probe_points())
    got = run["signature"].read_text(encoding="utf-8")
    assert got == want, cw.signature_diff(want, got)


def test_the_kotlin_batch_is_the_python_batch(run, texts):
    for (name, n), out in run["batch"].items():
        _, vocab, fields = run["cases"][name]
        want = WordPiece(vocab, fields | {"type_input": "token_type_ids"}).batch(_batches(texts)[n])
        got = cw.read_batch(out)
        assert got["shape"] == list(want["input_ids"].shape) and list(got["inputs"]) == list(want), (name, n)
        for k, v in want.items():
            assert np.array_equal(got["inputs"][k], v), (name, n, k)


def test_the_rendered_record_is_the_default_and_a_hostile_name_survives(run, texts):
    """EdgeshipWordPieceTask.BUNDLE is the record rendered in: its input name (quotes, $,
    templates, a backslash, non-ASCII) comes back as it was; max_length 12 and padding to the
    longest row apply."""
    _, vocab, _ = run["cases"][RENDERED]
    got = cw.read_batch(run["rendered_batch"])
    want = WordPiece(vocab, run["rendered"]).batch(texts[:5])
    assert list(got["inputs"]) == [HOSTILE, "attention_mask", "token_type_ids"] == list(want)
    assert got["shape"] == [5, 12] and all(np.array_equal(got["inputs"][k], v) for k, v in want.items())


def test_the_kotlin_reads_vocab_txt_as_python(run):
    for text, out in zip(VOCAB_TEXTS, run["vocab"]):
        assert cw.read_vocabulary_out(out) == read_vocabulary(text), repr(text)


def test_the_kotlin_tokenizer_refuses_what_python_refuses(run):
    _, vocab, fields = run["cases"]["BERT uncased"]
    surrogate = cw.read_ids(run["errors"]["surrogate"])
    assert surrogate[0] == "the text holds a lone surrogate at 1: not Unicode text"
    assert surrogate[1] == WordPiece(vocab, fields).encode("a😀b") and surrogate[2].startswith("the text holds a lone")
    assert cw.read_ids(run["errors"]["cls"]) == ['the vocabulary has no "<cls>" (the record\'s clsToken)']
    assert cw.read_ids(run["errors"]["max_length"])[0].startswith("maxLength 2:")
