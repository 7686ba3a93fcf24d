"""A text model's tokenizer: an HF ``tokenizer.json`` (BERT's WordPiece) or a ``vocab.txt``.

:func:`read_tokenizer` returns the token list (the id of a token its index) and the fields of the
``embedding`` task record (:class:`edgeship.tasks.Embedding`) that make
:class:`edgeship.tasks.text.WordPiece` tokenize as HF ``tokenizers`` runs that file. It takes what a
BERT tokenizer is made of and refuses anything else with an :class:`UnsupportedError` naming the
part (``model.type``, ``normalizer.type``, ...): the WordPiece model with the ``##`` prefix, the
BertNormalizer (or none), the BertPreTokenizer, the ``[CLS] $A [SEP]`` post-processor
(TemplateProcessing or BertProcessing), right-hand truncation and padding, and added tokens
matched in the raw text (``normalized`` false, no ``lstrip``/``rstrip``/``single_word``).

:func:`read_vocabulary` is the one definition of a vocab.txt's lines (HF tokenizers'
``WordPiece::read_file``), and :func:`vocabulary_text` what edgeship writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import FormatError, InputError, UnsupportedError
from . import read_json, read_text

__all__ = ["read_tokenizer", "read_vocabulary", "vocabulary_text", "vocabulary_sha256", "TOKENIZER_LIMIT",
           "DEFAULT_ADDED_TOKENS"]

#: the largest tokenizer.json or vocab.txt read (BERT's is 0.7 MB, a 250k-token multilingual one ~20 MB)
TOKENIZER_LIMIT = 64 << 20
#: Rust's ``char::is_whitespace`` (Unicode White_Space): what ``str::trim_end`` trims off a vocab line
RUST_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
                  "\u2028\u2029\u202f\u205f\u3000"
#: the added tokens a BERT tokenizer made from a vocab.txt has (transformers' BertTokenizer): the
#: record's unk, cls, sep and pad tokens and this one
MASK_TOKEN = "[MASK]"
DEFAULT_ADDED_TOKENS = ("unk_token", "cls_token", "sep_token", "pad_token")


def read_vocabulary(text: str) -> list[str]:
    """A vocab.txt's tokens, one per line, the id of a token its line number (from 0): HF
    tokenizers' ``WordPiece::read_file``. Lines end at ``"\\n"`` (the last one may lack it), each
    trimmed of trailing whitespace as Rust's ``str::trim_end`` does (White_Space: ``"\\r"`` of a
    CRLF file too, not ``\\x1c``-``\\x1f``, which Python's ``str.rstrip()`` would trim); a byte
    order mark at the start is dropped (tokenizers would keep it in the first token). A blank
    line is a token (the empty string, which no word ever matches); a token listed twice keeps the
    id of its last line, as tokenizers' map does (:class:`edgeship.tasks.text.WordPiece` looks
    tokens up the same way)."""
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip(RUST_WHITESPACE) for line in lines]


def vocabulary_text(vocab: Sequence[str]) -> str:
    """The vocab.txt edgeship writes: each token then ``"\\n"``, UTF-8."""
    return "".join(t + "\n" for t in vocab)


def vocabulary_sha256(vocab: Sequence[str]) -> str:
    """The record's ``vocabulary_sha256``: the digest of :func:`vocabulary_text`'s UTF-8 bytes."""
    return hashlib.sha256(vocabulary_text(vocab).encode("utf-8")).hexdigest()


def read_tokenizer(path: str | Path) -> tuple[list[str], dict[str, Any]]:
    """``(vocab, fields)`` of a tokenizer.json, a vocab.txt, or a folder holding one (tokenizer.json
    first): the token list and the embedding record's fields (``tokenizer``, ``vocabulary_sha256``
    and, from a tokenizer.json, the normalizer's switches, ``max_length``, ``pad_to_max``,
    ``max_chars_per_word``, the special tokens; a vocab.txt says none of those: the record's
    defaults, BERT uncased's, apply). ``added_tokens`` is among the fields only when the file's
    added tokens are not the default ones (the unk, cls, sep, pad tokens and ``[MASK]`` that are in
    the vocabulary).

    Not represented, so not taken from the file: a tokenizer.json without truncation (the record's
    ``max_length`` still truncates: a model has a fixed number of positions) and one without padding
    (the record's ``pad_to_max`` applies)."""
    p = Path(path)
    if p.is_dir():
        found = next((p / n for n in ("tokenizer.json", "vocab.txt") if (p / n).exists()), None)
        if found is None:
            raise InputError(f"no tokenizer.json or vocab.txt in {p}", hint="give the tokenizer's file")
        p = found
    if p.suffix.lower() == ".txt":
        vocab = read_vocabulary(read_text(p, "vocabulary", max_bytes=TOKENIZER_LIMIT))
        if not vocab:
            raise FormatError(f"vocabulary {p} is empty", hint="a vocab.txt has one token per line")
        _writable(vocab, str(p))
        return vocab, {"tokenizer": "wordpiece", "vocabulary_sha256": vocabulary_sha256(vocab)}
    doc = read_json(p, "tokenizer", max_bytes=TOKENIZER_LIMIT)
    return _from_json(doc, f"tokenizer {p}")


def _from_json(doc: Any, where: str) -> tuple[list[str], dict[str, Any]]:
    if not isinstance(doc, dict):
        raise FormatError(f"{where}: not a JSON object", hint="an HF tokenizer.json (tokenizer.save(path))")
    vocab, model = _model(_obj(doc, "model", where, required=True), where)
    ids = {t: i for i, t in enumerate(vocab)}
    fields: dict[str, Any] = {"tokenizer": "wordpiece", "vocabulary_sha256": vocabulary_sha256(vocab)}
    fields |= model
    fields |= _normalizer(doc.get("normalizer"), where)
    pre = _obj(doc, "pre_tokenizer", where)
    if pre is None or pre.get("type") != "BertPreTokenizer":
        kind = "none" if pre is None else repr(pre.get("type"))
        raise UnsupportedError(f"{where}: pre_tokenizer {kind}: edgeship's WordPiece splits words as BertPreTokenizer does",
                               hint="a BERT tokenizer (BertPreTokenizer) is read; other pre-tokenizers are not ported")
    fields |= _post_processor(_obj(doc, "post_processor", where), ids, where)
    fields |= _truncation_padding(doc, ids, where)
    for name in ("unk_token", "cls_token", "sep_token", "pad_token"):
        if name in fields and fields[name] not in ids:
            raise FormatError(f"{where}: the {name} {fields[name]!r} is not in model.vocab",
                              hint="the special tokens are tokens of the vocabulary")
    added = _added_tokens(doc.get("added_tokens"), ids, where)
    default = [t for t in [fields.get(n, d) for n, d in zip(DEFAULT_ADDED_TOKENS, ("[UNK]", "[CLS]", "[SEP]", "[PAD]"))]
               + [MASK_TOKEN] if t in ids]
    if set(added) != set(default):
        fields["added_tokens"] = tuple(added)
    return vocab, fields


def _obj(doc: dict[str, Any], key: str, where: str, required: bool = False) -> dict[str, Any] | None:
    v = doc.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, dict):
        raise FormatError(f"{where}: {key} is {'missing' if v is None else type(v).__name__}, not an object",
                          hint="an HF tokenizer.json (tokenizer.save(path))")
    return v


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    """``obj[key]`` of type ``kind`` (a bool is not an int here); ``default`` when absent."""
    if key not in obj or obj[key] is None and default is None:
        if default is ...:
            raise FormatError(f"{where}: no {key}", hint="an HF tokenizer.json (tokenizer.save(path))")
        return default
    v = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
        raise FormatError(f"{where}: {key} is {json_type(v)}, not {' or '.join(k.__name__ for k in kinds)}",
                          hint="an HF tokenizer.json (tokenizer.save(path))")
    return v


def json_type(v: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object",
            type(None): "null"}.get(type(v), type(v).__name__)


def _model(model: dict[str, Any], where: str) -> tuple[list[str], dict[str, Any]]:
    kind = model.get("type")
    if kind != "WordPiece":
        raise UnsupportedError(f"{where}: model.type {kind!r}: edgeship tokenizes with BERT's WordPiece only",
                               hint="a BERT-family tokenizer (WordPiece); BPE, Unigram and WordLevel are not ported")
    table = _field(model, "vocab", dict, f"{where}: model")
    n = len(table)
    vocab: list[str | None] = [None] * n
    for token, i in table.items():
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n or vocab[i] is not None:
            why = "not an integer" if not isinstance(i, int) or isinstance(i, bool) else \
                  f"outside 0..{n - 1}" if not 0 <= i < n else f"also the id of {vocab[i]!r}"
            raise FormatError(f"{where}: model.vocab[{token[:60]!r}] = {str(i)[:20]}: {why}",
                              hint="the ids of a vocabulary are 0..n-1, each once")
        vocab[i] = token
    if not vocab:
        raise FormatError(f"{where}: model.vocab is empty", hint="an HF tokenizer.json (tokenizer.save(path))")
    tokens: list[str] = vocab  # type: ignore[assignment] - every slot filled: a permutation of 0..n-1
    _writable(tokens, where)
    prefix = _field(model, "continuing_subword_prefix", str, f"{where}: model", "##")
    if prefix != "##":
        raise UnsupportedError(f"{where}: model.continuing_subword_prefix {prefix!r}: edgeship's WordPiece continues "
                               "words with '##' (BERT's)", hint="a BERT-family tokenizer")
    unk = _field(model, "unk_token", str, f"{where}: model", "[UNK]")
    if unk not in table:
        raise FormatError(f"{where}: model.unk_token {unk!r} is not in model.vocab", hint="the unknown token is a token")
    chars = _field(model, "max_input_chars_per_word", int, f"{where}: model", 100)
    if chars < 1:
        raise FormatError(f"{where}: model.max_input_chars_per_word is {chars}", hint="at least 1")
    return tokens, {"unk_token": unk, "max_chars_per_word": chars}


def _writable(vocab: list[str], where: str) -> None:
    """Refuse a vocabulary that vocab.txt cannot hold (a token with a newline or trailing
    whitespace reads back as another token)."""
    for i, t in enumerate(vocab):
        if "\n" in t or t != t.rstrip(RUST_WHITESPACE):
            raise UnsupportedError(f"{where}: token {i} {t[:60]!r} has a newline or trailing whitespace: a vocab.txt "
                                   "line cannot hold it", hint="a BERT vocabulary has no such token")


def _normalizer(norm: Any, where: str) -> dict[str, Any]:
    """The BertNormalizer's switches (tokenizers' defaults for absent keys); none: all off."""
    if norm is None:
        return {"clean_text": False, "chinese_chars": False, "strip_accents": False, "lowercase": False}
    if not isinstance(norm, dict) or norm.get("type") != "BertNormalizer":
        kind = norm.get("type") if isinstance(norm, dict) else json_type(norm)
        raise UnsupportedError(f"{where}: normalizer {kind!r}: edgeship's WordPiece normalizes as BertNormalizer does",
                               hint="a BERT tokenizer (BertNormalizer or none); other normalizers are not ported")
    w = f"{where}: normalizer"
    return {"clean_text": _field(norm, "clean_text", bool, w, True),
            "chinese_chars": _field(norm, "handle_chinese_chars", bool, w, True),
            "strip_accents": _field(norm, "strip_accents", bool, w, None),
            "lowercase": _field(norm, "lowercase", bool, w, True)}


def _post_processor(post: dict[str, Any] | None, ids: dict[str, int], where: str) -> dict[str, Any]:
    """The cls and sep tokens of a ``[CLS] $A [SEP]`` post-processor."""
    kind = None if post is None else post.get("type")
    w = f"{where}: post_processor"
    if kind == "BertProcessing":
        out = {}
        for key in ("cls", "sep"):
            pair = post.get(key)  # type: ignore[union-attr]
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], int)):
                raise FormatError(f"{w}.{key} is not a [token, id] pair", hint="an HF tokenizer.json")
            _same_id(pair[0], [pair[1]], ids, f"{w}.{key}")
            out[f"{key}_token"] = pair[0]
        return out
    if kind == "TemplateProcessing":
        single, specials = post.get("single"), post.get("special_tokens")  # type: ignore[union-attr]
        pieces = []  # (kind, id, type_id) of each piece of the single-sequence template
        for piece in single if isinstance(single, list) else []:
            inner = next(iter(piece.values())) if isinstance(piece, dict) and len(piece) == 1 else None
            pieces.append((next(iter(piece)), inner.get("id"), inner.get("type_id", 0)) if isinstance(inner, dict) else None)
        if [p and p[0] for p in pieces] != ["SpecialToken", "Sequence", "SpecialToken"] or pieces[1][1] != "A" \
                or any(p[2] != 0 for p in pieces):
            raise UnsupportedError(f"{w}.single is not [CLS] $A [SEP] with type ids 0",
                                   hint="edgeship's WordPiece wraps a text as BERT does: [CLS] text [SEP]")
        out = {}
        for key, (_, name, _) in (("cls", pieces[0]), ("sep", pieces[2])):
            spec = specials.get(name) if isinstance(specials, dict) and isinstance(name, str) else None
            if not isinstance(spec, dict) or not isinstance(spec.get("tokens"), list) or len(spec["tokens"]) != 1 \
                    or not isinstance(spec["tokens"][0], str):
                raise UnsupportedError(f"{w}.special_tokens[{str(name)[:40]!r}] is not one token",
                                       hint="edgeship's WordPiece wraps a text in one token on each side")
            _same_id(spec["tokens"][0], spec.get("ids"), ids, f"{w}.special_tokens[{name!r}]")
            out[f"{key}_token"] = spec["tokens"][0]
        return out
    raise UnsupportedError(f"{w} {'none' if post is None else repr(kind)}: edgeship's WordPiece wraps a text in "
                           "[CLS] ... [SEP] (TemplateProcessing or BertProcessing)", hint="a BERT tokenizer")


def _same_id(token: str, given: Any, ids: dict[str, int], where: str) -> None:
    if token not in ids or given != [ids[token]]:
        raise UnsupportedError(f"{where}: token {token[:40]!r} with ids {str(given)[:40]}, the vocabulary's id is "
                               f"{ids.get(token)}", hint="the post-processor's tokens are the vocabulary's")


def _truncation_padding(doc: dict[str, Any], ids: dict[str, int], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    trunc = _obj(doc, "truncation", where)
    if trunc is not None:
        w = f"{where}: truncation"
        if _field(trunc, "direction", str, w, "Right") != "Right":
            raise UnsupportedError(f"{w}.direction {trunc['direction']!r}: edgeship truncates on the right",
                                   hint="truncation direction Right")
        out["max_length"] = _field(trunc, "max_length", int, w)
    pad = _obj(doc, "padding", where)
    if pad is not None:
        w = f"{where}: padding"
        if _field(pad, "direction", str, w, "Right") != "Right":
            raise UnsupportedError(f"{w}.direction {pad['direction']!r}: edgeship pads on the right", hint="padding direction Right")
        if pad.get("pad_to_multiple_of") not in (None, 0):
            raise UnsupportedError(f"{w}.pad_to_multiple_of {pad['pad_to_multiple_of']!r}: not taken",
                                   hint="pad to a fixed length or to the longest of a batch")
        if _field(pad, "pad_type_id", int, w, 0) != 0:
            raise UnsupportedError(f"{w}.pad_type_id {pad['pad_type_id']}: edgeship's token type ids are 0",
                                   hint="pad_type_id 0")
        strategy = pad.get("strategy", "BatchLongest")
        if strategy == "BatchLongest":
            out["pad_to_max"] = False
        elif isinstance(strategy, dict) and isinstance(strategy.get("Fixed"), int) and not isinstance(strategy["Fixed"], bool):
            fixed = strategy["Fixed"]
            if "max_length" in out and out["max_length"] != fixed:
                raise UnsupportedError(f"{w}: pads to {fixed} tokens, truncates to {out['max_length']}: the record has "
                                       "one length", hint="pad and truncate to the same length")
            out["pad_to_max"], out["max_length"] = True, fixed
        else:
            raise FormatError(f"{w}.strategy {str(strategy)[:60]}: not BatchLongest or {{'Fixed': n}}", hint="an HF tokenizer.json")
        token = _field(pad, "pad_token", str, w, "[PAD]")
        _same_id(token, [_field(pad, "pad_id", int, w, 0)], ids, w)
        out["pad_token"] = token
    return out


def _added_tokens(added: Any, ids: dict[str, int], where: str) -> list[str]:
    """The added tokens, each matched whole in the raw text before anything else."""
    if added is None:
        return []
    if not isinstance(added, list):
        raise FormatError(f"{where}: added_tokens is {json_type(added)}, not a list", hint="an HF tokenizer.json")
    out = []
    for n, t in enumerate(added):
        w = f"{where}: added_tokens[{n}]"
        if not isinstance(t, dict):
            raise FormatError(f"{w} is {json_type(t)}, not an object", hint="an HF tokenizer.json")
        content = _field(t, "content", str, w)
        flags = {k: _field(t, k, bool, w, False) for k in ("single_word", "lstrip", "rstrip", "normalized")}
        if any(flags.values()):
            on = ", ".join(k for k, v in flags.items() if v)
            raise UnsupportedError(f"{w} {content[:40]!r} is {on}: edgeship matches added tokens whole in the raw text",
                                   hint="added tokens with normalized, lstrip, rstrip and single_word false (BERT's)")
        if content == "":
            raise FormatError(f"{w} is empty", hint="an added token has content")
        _same_id(content, [_field(t, "id", int, w)], ids, w)
        out.append(content)
    return out
