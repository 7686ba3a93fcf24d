"""edgeship.tasks.text.WordPiece against HF tokenizers, token for token: BERT tokenizers made with
tokenizers itself (WordPiece over a vocabulary of the sentences' words and pieces, BertNormalizer,
BertPreTokenizer, the [CLS] $A [SEP] post-processors, truncation and padding) in eight
configurations, saved as tokenizer.json files and read back with readers.tokenizer.read_tokenizer,
on 500 real English sentences, the hard cases and 300 random texts; every code point of planes 0
to 3 and 14 through each step of the normalizer and the pre-tokenizer; the vocab.txt reader
against tokenizers' own; read_tokenizer's typed refusals; the generated app code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeship.errors import FormatError, InputError, UnsupportedError
from edgeship.readers.tokenizer import read_tokenizer, read_vocabulary, vocabulary_sha256, vocabulary_text
from edgeship.tasks import Embedding
from edgeship.tasks.text import DEFAULTS, WordPiece

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import check_wordpiece as cw  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return cw.sentences(500) + list(cw.hard_cases().values()) + cw.fuzz_texts(300, 38)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict:
    return cw.made_cases(cw.sentences(500) + list(cw.hard_cases().values()), tmp_path_factory.mktemp("tokenizers"))


def test_the_ids_are_tokenizers_own_in_every_configuration(cases, texts):
    """Every configuration, every text: the same ids; and the texts reach every branch: unknown
    words (too long, a part no token matches), ## pieces, truncation, added tokens matched whole."""
    reached = {"unknown": 0, "pieces": 0, "truncated": 0, "added": 0, "too long": 0}
    for name, (tok, vocab, fields) in cases.items():
        want = cw.reference_ids(tok, texts)
        wp = WordPiece(vocab, fields)
        got = [wp.encode(t) for t in texts]
        bad = [(t, a, b) for t, a, b in zip(texts, got, want) if a != b]
        assert not bad, f"{name}: {len(bad)} of {len(texts)} texts differ, the first {bad[0]}"
        assert len(set(map(tuple, got))) > 700, name  # the texts are not all alike
        reached["unknown"] += sum(wp.unk in ids for ids in got)
        reached["pieces"] += sum(any(vocab[i].startswith("##") for i in ids) for ids in got)
        reached["truncated"] += sum(len(ids) == fields.get("max_length", 128) for ids in got)
        reached["added"] += sum(any(vocab[i] in ("[MASK]", "<s>x", "abc") for i in ids) for ids in got)
        reached["too long"] += wp.encode("x" * (wp.task.max_chars_per_word + 1)) == [wp.cls, wp.unk, wp.sep]
    assert min(reached.values()) >= 8, reached


def test_the_batch_arrays_are_tokenizers_padded_encodings(cases, texts):
    """Padded to max_length or to the longest of the batch, the attention mask and the token type
    ids (all 0) of tokenizers' encode_batch, int64, named by the record's inputs."""
    for name in ("BERT uncased", "short, padded to the longest, BertProcessing"):
        tok, vocab, fields = cases[name]
        task = fields | {"type_input": "token_type_ids", "mask_input": "mask"}
        for batch in (texts[:7], texts[500:540], [""], []):
            got = WordPiece(vocab, task).batch(batch)
            enc = tok.encode_batch(batch)
            assert list(got) == ["input_ids", "mask", "token_type_ids"]
            assert all(a.dtype == np.int64 for a in got.values())
            if not batch:
                assert got["input_ids"].shape == (0, 128 if fields["pad_to_max"] else 0)
                continue
            assert got["input_ids"].tolist() == [e.ids for e in enc], name
            assert got["mask"].tolist() == [e.attention_mask for e in enc], name
            assert got["token_type_ids"].tolist() == [e.type_ids for e in enc], name
    one = WordPiece(vocab, fields | {"mask_input": None}).batch(["a"])
    assert list(one) == ["input_ids"]


def test_every_code_point_goes_through_each_step_as_in_tokenizers():
    """clean_text, CJK spacing, strip_accents (with canonical reordering around a kept mark),
    lowercase and the pre-tokenizer's splits, on every code point of planes 0-3 and 14 and the ends
    of the others: tokenizers' own tables (Unicode 8.0 categories, Unicode 12 decompositions,
    Unicode 16 lowercasing), not Python's Unicode 14."""
    points = cw.probe_points()
    want, got = cw.tokenizers_signature(points), cw.python_signature(points)
    assert got == want, cw.signature_diff(want, got)
    # what a port on Python's Unicode data would get wrong is in there
    assert _output(want, "clean", 0x890) == "=" and _output(want, "clean", 0x600) == ""  # Cf of Unicode 14 / 8.0
    assert _output(want, "words", 0x2E43) == "61,=,62" and _output(want, "words", 0x2E42) == "61|=|62"
    assert _output(want, "lower", 0x1C89) == "1c8a" and _output(want, "strip", 0x11938) == "="
    assert _output(want, "strip>", 0x898) == "=,1d165" and _output(want, "strip>", 0x1D16D) == "1d165,="


def _output(sig: str, name: str, c: int) -> str:
    """What a signature says ``name`` makes of the code point ``c``."""
    for line in sig.splitlines():
        comp, span, *out = line.split(" ")
        first, last = (int(x, 16) for x in span.split("-"))
        if comp == name and first <= c <= last:
            return out[0] if out else ""
    raise KeyError((name, c))


def test_the_differences_from_python_unicode_are_handled():
    """The characters where Python's own Unicode data (14.0) and str.lower differ from tokenizers."""
    wp = WordPiece(cw.SPECIALS, {"lowercase": True, "strip_accents": False})
    assert wp.normalize("ΟΔΟΣ") == "οδοσ"  # char by char: no final sigma (str.lower gives "οδος")
    assert wp.normalize("İ") == "i\u0307" and "İ".lower() == "i\u0307"
    assert wp.normalize("\u1c89\ua7cb") == "\u1c8a\u0264"  # Unicode 16 lowercase, unknown to Python 3.11
    assert wp.normalize("a\u0890b\u200bc") == "a\u0890bc"  # U+0890: Cf since Unicode 14, not for tokenizers
    assert wp.pre_tokenize("a\u2e43b") == ["a\u2e43b"]  # punctuation since Unicode 10, not for tokenizers
    strip = WordPiece(cw.SPECIALS, {"lowercase": False, "strip_accents": True})
    assert strip.normalize("\U00011938") == "\U00011938"  # decomposed since Unicode 13, not by tokenizers
    assert strip.normalize("\u0898\U0001D165") == "\u0898\U0001D165"  # not reordered (U+0898: Unicode 14)
    assert strip.normalize("\U0001D16D\U0001D165") == "\U0001D165\U0001D16D"  # reordered (both old)
    assert strip.normalize("Ελληνικά Ǆ") == "Ελληνικα Ǆ"


def test_python_encodes_500_sentences_in_well_under_a_second(cases):
    _, vocab, fields = cases["BERT uncased"]
    wp = WordPiece(vocab, fields)  # a cold cache
    t0 = time.perf_counter()
    for s in cw.sentences(500):
        wp.encode(s)
    assert time.perf_counter() - t0 < 1.0


def test_the_vocab_txt_lines_are_read_as_tokenizers_reads_them(tmp_path):
    """Lines at "\\n", the last without one, trailing White_Space trimmed (CR, NBSP; not \\x1c), a
    blank line a token, a token twice keeping its last id; a BOM dropped (tokenizers keeps it)."""
    from tokenizers.models import WordPiece as HfWordPiece

    text = "[PAD]\n[UNK] \r\n[CLS]\x1c\n\n[SEP]\u00a0\t\nword\nword\n##s\u3000\nlast"
    path = tmp_path / "vocab.txt"
    path.write_bytes(text.encode("utf-8"))
    vocab = read_vocabulary(text)
    assert vocab == ["[PAD]", "[UNK]", "[CLS]\x1c", "", "[SEP]", "word", "word", "##s", "last"]
    assert {t: i for i, t in enumerate(vocab)} == HfWordPiece.read_file(str(path))
    assert read_vocabulary(text + "\n") == vocab and read_vocabulary("") == [] and read_vocabulary("\n") == [""]
    assert read_vocabulary("\ufeff" + text) == vocab
    assert WordPiece(list(cw.SPECIALS) + ["[UNK]"]).unk == 5  # the last id of a token listed twice
    assert read_vocabulary(vocabulary_text(vocab)) == vocab


def test_read_tokenizer_takes_a_tokenizer_json_a_vocab_txt_or_a_folder(cases, tmp_path):
    from tokenizers import Tokenizer

    made, vocab, fields = cases["BERT uncased"]
    tok = Tokenizer.from_str(made.to_str())  # a copy: the cases are the module's
    assert fields == {"tokenizer": "wordpiece", "vocabulary_sha256": vocabulary_sha256(vocab), "unk_token": "[UNK]",
                      "max_chars_per_word": 100, "clean_text": True, "chinese_chars": True, "strip_accents": None,
                      "lowercase": True, "cls_token": "[CLS]", "sep_token": "[SEP]", "max_length": 128,
                      "pad_to_max": True, "pad_token": "[PAD]"}
    Embedding(**fields)  # the record takes them
    import hashlib

    assert fields["vocabulary_sha256"] == hashlib.sha256(("\n".join(vocab) + "\n").encode()).hexdigest()
    (tmp_path / "vocab.txt").write_text(vocabulary_text(vocab), encoding="utf-8")
    v2, f2 = read_tokenizer(tmp_path / "vocab.txt")
    assert v2 == vocab and f2 == {"tokenizer": "wordpiece", "vocabulary_sha256": fields["vocabulary_sha256"]}
    assert read_tokenizer(tmp_path) == (v2, f2)  # a folder with a vocab.txt
    tok.save(str(tmp_path / "tokenizer.json"))
    assert read_tokenizer(tmp_path) == (vocab, fields)  # tokenizer.json first
    # the same tokens from the vocab.txt: the record's defaults are BERT uncased's
    assert WordPiece(v2, f2).encode("Héllo, wörld [MASK]!") == WordPiece(vocab, fields).encode("Héllo, wörld [MASK]!")
    # a tokenizer without padding or truncation: the record's defaults stay
    tok.no_padding()
    tok.no_truncation()
    tok.save(str(tmp_path / "tokenizer.json"))
    _, f3 = read_tokenizer(tmp_path / "tokenizer.json")
    assert "max_length" not in f3 and "pad_to_max" not in f3 and "pad_token" not in f3


def _doc(cases) -> dict:  # noqa: ANN001
    return json.loads(cases["BERT uncased"][0].to_str())


@pytest.mark.parametrize("change, error, words", [
    (lambda d: d["model"].update(type="BPE"), UnsupportedError, "model.type 'BPE'"),
    (lambda d: d["model"]["vocab"].update({"extra": 3}), FormatError, "model.vocab['extra'] = 3: also the id of"),
    (lambda d: d["model"]["vocab"].update({"extra": 99999}), FormatError, "outside 0.."),
    (lambda d: d["model"]["vocab"].update({"extra": "7"}), FormatError, "not an integer"),
    (lambda d: d["model"].update(continuing_subword_prefix="@@"), UnsupportedError, "continuing_subword_prefix '@@'"),
    (lambda d: d["model"].update(unk_token="<unk>"), FormatError, "model.unk_token '<unk>' is not in model.vocab"),
    (lambda d: d["model"].pop("vocab"), FormatError, "no vocab"),
    (lambda d: d.update(normalizer={"type": "Sequence", "normalizers": []}), UnsupportedError, "normalizer 'Sequence'"),
    (lambda d: d["normalizer"].update(lowercase="yes"), FormatError, "lowercase is a string, not bool"),
    (lambda d: d.update(pre_tokenizer={"type": "Whitespace"}), UnsupportedError, "pre_tokenizer 'Whitespace'"),
    (lambda d: d.update(pre_tokenizer=None), UnsupportedError, "pre_tokenizer none"),
    (lambda d: d.update(post_processor=None), UnsupportedError, "post_processor none"),
    (lambda d: d.update(post_processor={"type": "RobertaProcessing"}), UnsupportedError, "post_processor 'RobertaProcessing'"),
    (lambda d: d["post_processor"]["single"].pop(0), UnsupportedError, "single is not [CLS] $A [SEP]"),
    (lambda d: d["post_processor"]["special_tokens"]["[CLS]"].update(ids=[7]), UnsupportedError, "the vocabulary's id is"),
    (lambda d: d["truncation"].update(direction="Left"), UnsupportedError, "truncation.direction 'Left'"),
    (lambda d: d["padding"].update(direction="Left"), UnsupportedError, "padding.direction 'Left'"),
    (lambda d: d["padding"].update(strategy={"Fixed": 64}), UnsupportedError, "pads to 64 tokens, truncates to 128"),
    (lambda d: d["padding"].update(pad_to_multiple_of=8), UnsupportedError, "pad_to_multiple_of 8"),
    (lambda d: d["padding"].update(pad_id=5), UnsupportedError, "padding: token '[PAD]' with ids [5]"),
    (lambda d: d["added_tokens"][0].update(lstrip=True), UnsupportedError, "'[PAD]' is lstrip"),
    (lambda d: d["added_tokens"][0].update(normalized=True), UnsupportedError, "is normalized"),
    (lambda d: d["added_tokens"].append({"id": 99999, "content": "<new>"}), UnsupportedError, "added_tokens[5]: token '<new>'"),
    (lambda d: d["model"]["vocab"].update({"two\nlines": len(d["model"]["vocab"])}), UnsupportedError, "a vocab.txt line cannot hold it"),
    (lambda d: d.update(model=[1]), FormatError, "model is list, not an object"),
])
def test_read_tokenizer_refuses_what_it_does_not_reproduce_naming_the_field(cases, tmp_path, change, error, words):
    doc = _doc(cases)
    change(doc)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(error) as e:
        read_tokenizer(path)
    assert words in str(e.value) and str(path) in str(e.value), str(e.value)


def test_read_tokenizer_refuses_files_that_are_not_one(tmp_path):
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    for name, error, words in (("bad.json", FormatError, "not valid JSON"), ("list.json", FormatError, "not a JSON object"),
                               ("empty.txt", FormatError, "is empty"), ("latin1.txt", FormatError, "not UTF-8"),
                               ("missing.json", InputError, "no such tokenizer")):
        with pytest.raises(error, match=words):
            read_tokenizer(tmp_path / name)
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match="no tokenizer.json or vocab.txt"):
        read_tokenizer(tmp_path / "dir")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="FIFO"):
        read_tokenizer(fifo)


def test_the_tokenizer_refuses_what_is_not_text_or_not_its_vocabulary(cases):
    _, vocab, fields = cases["BERT uncased"]
    wp = WordPiece(vocab, fields)
    with pytest.raises(InputError, match="lone surrogate at 1"):
        wp.encode("a\ud800b")
    with pytest.raises(InputError, match="not bytes"):
        wp.encode(b"abc")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="a list of texts"):
        wp.batch("abc")  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="no '<cls>' .the record's cls_token"):
        WordPiece(vocab, fields | {"cls_token": "<cls>"})
    with pytest.raises(FormatError, match="no '<m>' .the record's added_tokens"):
        WordPiece(vocab, fields | {"added_tokens": ["<m>"]})
    with pytest.raises(InputError, match="max_length 2"):
        WordPiece(vocab, {"max_length": 2})
    no_pad = WordPiece([t for t in vocab if t != "[PAD]"], fields | {"pad_to_max": False})
    # a word that is one token of this vocabulary (the vocabulary is built from docstrings, which vary with
    # what the process imported: "same" was two pieces on one worker)
    word = next(t for t in vocab if t.isascii() and t.isalpha() and t.islower() and len(t) > 3)
    assert no_pad.batch([word, word])["input_ids"].shape == (2, 3)  # nothing to pad
    with pytest.raises(FormatError, match="to pad with"):
        no_pad.batch(["a", "a b"])


def test_the_record_defaults_are_the_tokenizer_defaults():
    """tasks/text.py reads a record given as a dict with the Embedding record's defaults."""
    record = Embedding().model_dump(mode="json")
    assert {k: v for k, v in DEFAULTS.items() if k in record} == {k: record[k] for k in DEFAULTS if k in record}
    assert set(DEFAULTS) - set(record) <= {"added_tokens"}  # a field the record may not have yet
    assert WordPiece(cw.SPECIALS, Embedding(max_length=9)).task.max_length == 9  # the pydantic record too


def test_the_tokenizer_module_runs_without_pydantic_or_tokenizers():
    """The light runtime copies it: numpy and the standard library (and edgeship's errors and readers)."""
    code = ("import sys, edgeship.tasks.text as t; t.WordPiece(['[PAD]','[UNK]','[CLS]','[SEP]','a']).encode('a b'); "
            "print(sorted(m for m in ('pydantic', 'tokenizers', 'jinja2', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert out.stdout.strip() == "[]"


def test_the_app_code_is_rendered_from_the_record_and_parses(tmp_path):
    """Hostile token names are escaped (JavaScript: JSON; Kotlin: no templates, \\u escapes), the
    Kotlin parses, a record without the wordpiece tokenizer is refused."""
    import tree_sitter_kotlin
    from tree_sitter import Language, Parser

    from edgeship.bundle.embed_app import WORDPIECE_KOTLIN, WORDPIECE_SCRIPT, write_wordpiece_code
    from edgeship.bundle.integration import kt_str

    hostile = 'u"n$k ${x} \\n é 😀 */'
    task = Embedding(tokenizer="wordpiece", unk_token=hostile, vocabulary_sha256="ab" * 32, type_input="tt")
    written = write_wordpiece_code(tmp_path, task)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [WORDPIECE_SCRIPT, WORDPIECE_KOTLIN]
    js, kt = (p.read_text(encoding="utf-8") for p in written)
    assert json.dumps(hostile, ensure_ascii=True) in js and '"vocab.txt"' in js and "ab" * 32 in js
    assert f"unkToken = {kt_str(hostile)}," in kt and '\\"n\\$k \\${x} \\\\n \\u00e9 \\ud83d\\ude00 */' in kt
    tree = Parser(Language(tree_sitter_kotlin.language())).parse(written[1].read_bytes())
    assert not tree.root_node.has_error
    with pytest.raises(FormatError, match="not an embedding with the wordpiece tokenizer"):
        write_wordpiece_code(tmp_path, {"kind": "embedding"})
    with pytest.raises(FormatError, match="max_length"):
        write_wordpiece_code(tmp_path, {"tokenizer": "wordpiece", "max_length": 1})
