"""The WordPiece tokenizer's JavaScript port (integration/web/edgeship-wordpiece.js, as
bundle.embed_app.write_wordpiece_code writes it) in headless Chromium against HF tokenizers, token
for token: the eight tokenizers of tests/test_wordpiece.py on 500 real sentences, the hard cases
and 300 random texts; every code point of planes 0 to 3 and 14 through each step of the
normalizer and the pre-tokenizer; the batch's BigInt64Arrays; the vocab.txt reader; the errors.
Chromium starts once for the module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeship.readers.tokenizer import read_vocabulary
from edgeship.targets.web import chromium_path
from edgeship.tasks import Embedding
from edgeship.tasks.text import WordPiece

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import check_wordpiece as cw  # noqa: E402

CI = bool(os.environ.get("EDGESHIP_CI"))
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_path() is None and not CI, reason="no Chromium here (CI installs it)")]
#: the record rendered into the module (TASK): not the defaults, so that `new WordPiece(vocab)` shows it is used
RENDERED = "short, padded to the longest, BertProcessing"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return cw.sentences(500) + list(cw.hard_cases().values()) + cw.fuzz_texts(300, 38)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict:
    return cw.made_cases(cw.sentences(500) + list(cw.hard_cases().values()), tmp_path_factory.mktemp("tokenizers"))


@pytest.fixture(scope="module")
def js(cases, tmp_path_factory):
    port = cw.JsPort(Embedding(**cases[RENDERED][2]), tmp_path_factory.mktemp("site"))
    yield port
    errors, outside = port.errors, port.outside
    port.close()
    assert not errors and not outside, (errors, outside)


def test_the_js_ids_are_tokenizers_own_in_every_configuration(js, cases, texts):
    for name, (tok, vocab, fields) in cases.items():
        want = cw.reference_ids(tok, texts)
        got = js.encode(vocab, {**fields, "added_tokens": list(fields["added_tokens"])} if "added_tokens" in fields
                        else fields, texts)
        bad = [(t, a, b) for t, a, b in zip(texts, got, want) if a != b]
        assert not bad, f"{name}: {len(bad)} of {len(texts)} texts differ, the first {bad[0]}"


def test_every_code_point_goes_through_each_step_as_in_tokenizers(js):
    """Chromium's own Unicode (its ICU) is newer than tokenizers' tables: the module reads
    tokenizers' tables, and NFD between the NFD_KEEP code points."""
    want = cw.tokenizers_signature(cw.probe_points())
    got = js.signature()
    assert got == want, cw.signature_diff(want, got)


def test_the_js_batch_is_the_python_batch(js, cases, texts):
    """BigInt64Arrays named by the record's inputs, row by row, [rows, width]: the arrays
    tasks.text.WordPiece.batch gives (padded to max_length, or to the longest row)."""
    for name in ("BERT uncased", RENDERED):
        _, vocab, fields = cases[name]
        task = fields | {"type_input": "token_type_ids"}
        for batch in (texts[:9], texts[500:560], [""], []):
            want = WordPiece(vocab, task).batch(batch)
            got = js.batch(vocab, task, batch)
            assert got["shape"] == list(want["input_ids"].shape), name
            assert set(got["types"].values()) == {"BigInt64Array"}
            assert {k: np.array(v, np.int64).reshape(got["shape"]) for k, v in got["inputs"].items()}.keys() == want.keys()
            for k, v in want.items():
                assert np.array_equal(np.array(got["inputs"][k], np.int64).reshape(got["shape"]), v), (name, k)


def test_the_module_uses_the_rendered_record_and_reads_vocab_txt_as_python(js, cases):
    _, vocab, fields = cases[RENDERED]
    text = "a long sentence of more than twelve tokens, truncated to the rendered max_length: twelve"
    assert js.evaluate("c => new window.wp.WordPiece(c.vocab).encode(c.text)", {"vocab": vocab, "text": text}) == \
        WordPiece(vocab, fields).encode(text)
    assert len(WordPiece(vocab, fields).encode(text)) == 12
    assert js.evaluate("() => window.wp.TASK.max_length") == 12 and js.evaluate("() => window.wp.VOCABULARY") == "vocab.txt"
    raw = "\ufeff[PAD]\n[UNK] \r\n[CLS]\x1c\n\n[SEP]\u00a0\t\nword\nword\n##s\u3000\nlast"
    for t in (raw, raw + "\n", "", "\n", "a\r\n\r\n"):
        assert js.evaluate("t => window.wp.readVocabulary(t)", t) == read_vocabulary(t), repr(t)


def test_the_js_tokenizer_refuses_what_python_refuses(js, cases):
    _, vocab, fields = cases["BERT uncased"]
    assert js.call(vocab, fields, "encode", "a\ud800b")["error"].startswith("RangeError: the text holds a lone surrogate at 1")
    assert js.call(vocab, fields, "batch", "abc")["error"].startswith("TypeError: batch() takes a list")
    assert "the vocabulary has no \"<cls>\"" in js.call(vocab, fields | {"cls_token": "<cls>"}, "encode", "a")["error"]
    assert "max_length 2" in js.call(vocab, {"max_length": 2}, "encode", "a")["error"]
    assert js.call(vocab, fields, "encode", "a\ud83d\ude00b") == {"ok": WordPiece(vocab, fields).encode("a😀b")}
