"""BERT's WordPiece tokenizer, as HF ``tokenizers`` 0.23 runs a BERT ``tokenizer.json``: text in,
the ids a BERT-family model (all-MiniLM-L6-v2, bert-base-uncased) takes out.

Numpy and the standard library only: the light runtime on a device runs it, and it is the one
source the generated JavaScript (``edgeship-wordpiece.js``) and Kotlin (``EdgeshipWordPiece.kt``)
follow step by step (``bundle/embed_app.py``). The steps, each reproduced from tokenizers' Rust:

1. **added tokens** (``AddedVocabulary``): the record's ``added_tokens`` (default: its unk, cls,
   sep and pad tokens and ``[MASK]``, those in the vocabulary) are found in the raw text, leftmost
   first and the longest of those starting there (aho-corasick's LeftmostLongest), and become
   their ids whole: ``"a [MASK] b"`` holds the mask token, ``"[mask]"`` does not; the text
   between them goes through the next steps piece by piece;
2. **BertNormalizer**, in its order: ``clean_text`` drops NUL, U+FFFD and the control
   characters (``is_control``: general categories Cc, Cf and Co, ``\\t \\n \\r`` excepted) and
   turns every whitespace character (``\\t \\n \\r`` and Rust's ``char::is_whitespace``) into one
   space; ``chinese_chars`` puts a space on each side of a CJK ideograph (the Rust code's eight
   ranges); ``strip_accents`` (None: as ``lowercase``) decomposes (NFD) and drops the nonspacing
   marks (Mn); ``lowercase`` lowers each character on its own (Rust's ``char::to_lowercase``);
3. **BertPreTokenizer**: words split at whitespace (dropped) and at each punctuation character
   (a word of its own: ASCII punctuation and general category P);
4. **WordPiece**: a word of more than ``max_chars_per_word`` characters is the unknown token; else
   greedy longest match first, the pieces after the first looked up with ``##`` in front; a word
   with a part no token matches is the unknown token whole;
5. **TemplateProcessing** ``[CLS] $A [SEP]``: the ids cut to ``max_length - 2`` (a word may be
   cut between its pieces, as tokenizers truncates), then wrapped; a batch padded with the pad
   token to ``max_length`` (``pad_to_max``) or to its longest row, the attention mask 1 on
   tokens and 0 on padding, token type ids 0.

**The character tables are tokenizers' own, not a Unicode version's.** tokenizers classifies with
the ``unicode_categories`` crate (Unicode 8.0 tables: Cf, Mn and P as they were in 2015) and
decomposes with ``unicode-normalization-alignments`` (Unicode 12 tables), while it lowercases and
splits whitespace with Rust's standard library (Unicode 16). Python's ``unicodedata`` (14.0 in
Python 3.11), a browser's ICU and a phone's Java each know another version, and differ from
tokenizers on hundreds of code points (U+0890, an Arabic format character of Unicode 14, is kept
by tokenizers and would be dropped as Cf; U+2E43, punctuation since Unicode 10, is no word of its
own for tokenizers; Python leaves the 55 letters Unicode 16 gave a lowercase as they are). So the
tables below are measured from tokenizers itself on every code point
(``benchmarks/check_wordpiece.py --tables`` writes them) and the three languages read the same
tables: ``CONTROL`` (what clean_text drops), ``WHITESPACE``, ``PUNCTUATION``, ``CJK``, ``MARKS``
(what strip_accents drops after NFD), ``LOWER`` (runs ``first-last/step:delta``: each code point
of the run lowered to itself + delta; ``U+0130`` lowers to ``i`` + U+0307, the one two-character
lowering) and ``NFD_KEEP``: code points a current Unicode (17) decomposes or gives a combining
class that tokenizers' Unicode 12 tables do not; NFD runs on the text between them, which stay as
they are, as tokenizers leaves them. The tests put every code point of planes 0 to 3 and 14 (and
the ends of the others) through each step, against tokenizers, in Python, in Chromium and on a JVM.

What stays of the platform's Unicode: NFD itself (``unicodedata.normalize``,
``String.prototype.normalize``, ``java.text.Normalizer``), stable for every character encoded
before the platform's version: a platform older than Unicode 12 (Android 10 and older) does not
decompose the few characters Unicode 12 added with a decomposition, and one newer than Unicode 17
would decompose what a later Unicode adds until ``NFD_KEEP`` lists it.

Two more differences from the Python binding of tokenizers, both on input it refuses or cannot
hold: a text with a lone surrogate (which ``Tokenizer.encode`` refuses with a TypeError) is an
InputError here; a vocab.txt's byte order mark is dropped (:func:`read_vocabulary` reads UTF-8 as
edgeship's readers do; tokenizers would keep it in the first token).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import FormatError, InputError
from ..readers.tokenizer import MASK_TOKEN, read_vocabulary, vocabulary_sha256, vocabulary_text

__all__ = ["WordPiece", "read_vocabulary", "vocabulary_text", "vocabulary_sha256", "params", "TABLES", "DEFAULTS"]

#: the embedding record's tokenizer fields and their defaults (edgeship.tasks.Embedding's: a
#: record given as a dict may leave any of them out)
DEFAULTS: dict[str, Any] = {"lowercase": True, "strip_accents": None, "chinese_chars": True, "clean_text": True,
                            "max_length": 128, "pad_to_max": True, "max_chars_per_word": 100, "unk_token": "[UNK]",
                            "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "ids_input": "input_ids",
                            "mask_input": "attention_mask", "type_input": None, "added_tokens": None}
#: how many words' ids a tokenizer keeps (a text repeats its words; the cache is emptied when full)
CACHE_WORDS = 1 << 16


def params(task: Any) -> SimpleNamespace:
    """An embedding record (pydantic, or its JSON as a dict) as attributes, the tokenizer fields it
    lacks at their defaults."""
    if task is None:
        d: dict[str, Any] = {}
    elif isinstance(task, SimpleNamespace):
        d = vars(task)
    elif isinstance(task, dict):
        d = task
    else:
        d = task.model_dump(mode="json")
    return SimpleNamespace(**(DEFAULTS | dict(d)))


class WordPiece:
    """The tokenizer of ``vocab`` (the token list: a token's id is its index) as the embedding
    record ``task`` sets it (its dict, the pydantic record, or None for the defaults).

    ``encode(text)``: the ids of one text, [CLS] and [SEP] included, at most ``max_length``;
    ``batch(texts)``: the model's int64 inputs; ``tokens(text)``: the tokens encode's ids are;
    ``normalize`` and ``pre_tokenize``: steps 2 and 3 alone."""

    def __init__(self, vocab: Sequence[str], task: Any = None) -> None:
        p = params(task)
        if p.max_length < 3:
            raise InputError(f"max_length {p.max_length}: [CLS] and [SEP] leave no room for a token", hint="at least 3")
        self.task = p
        self.vocab = list(vocab)
        # a token listed twice keeps its last id, as tokenizers' vocabulary map does
        self.ids = {t: i for i, t in enumerate(self.vocab)}
        self.unk, self.cls, self.sep = (self._id(p.unk_token, "unk_token"), self._id(p.cls_token, "cls_token"),
                                        self._id(p.sep_token, "sep_token"))
        self.pad = self.ids.get(p.pad_token)
        self.strip = p.lowercase if p.strip_accents is None else p.strip_accents
        added = p.added_tokens
        if added is None:
            added = [t for t in (p.unk_token, p.cls_token, p.sep_token, p.pad_token, MASK_TOKEN) if t in self.ids]
        for t in added:
            self._id(t, "added_tokens")
        # the longest first: a regex alternation takes the first alternative that matches
        self.added = re.compile("|".join(re.escape(t) for t in sorted(set(added), key=len, reverse=True))) \
            if added else None
        self.longest = max((len(t) for t in self.vocab), default=0)
        self.cache: dict[str, list[int]] = {}

    def _id(self, token: str, field: str) -> int:
        if token not in self.ids:
            raise FormatError(f"the vocabulary has no {token!r} (the record's {field})",
                              hint="the record's special tokens are tokens of its vocabulary")
        return self.ids[token]

    # ---- step 2: BertNormalizer
    def normalize(self, text: str) -> str:
        p = self.task
        if p.clean_text:
            text = _WHITESPACE_RE.sub(" ", _CONTROL_RE.sub("", text))
        if p.chinese_chars:
            text = _CJK_RE.sub(r" \g<0> ", text)
        if self.strip:
            text = _MARKS_RE.sub("", nfd(text))
        if p.lowercase:
            text = text.lower() if text.isascii() else text.translate(_LOWER_MAP)
        return text

    # ---- step 3: BertPreTokenizer
    def pre_tokenize(self, text: str) -> list[str]:
        return _WORDS_RE.findall(text)

    # ---- step 4: WordPiece
    def word(self, word: str) -> list[int]:
        """The ids of one word: greedy longest match first, ``##`` before every piece after the
        first; the unknown token for a word longer than ``max_chars_per_word`` or with a part no
        token matches."""
        hit = self.cache.get(word)
        if hit is not None:
            return hit
        n = len(word)
        ids: list[int] = []
        start = 0
        while start < n and n <= self.task.max_chars_per_word:
            end = min(n, start + self.longest)  # no token is longer: the same match, found sooner
            while end > start:
                i = self.ids.get(word[start:end] if start == 0 else "##" + word[start:end])
                if i is not None:
                    break
                end -= 1
            if end == start:
                break
            ids.append(i)
            start = end
        if start < n or n > self.task.max_chars_per_word:
            ids = [self.unk]
        if len(self.cache) >= CACHE_WORDS:
            self.cache.clear()
        self.cache[word] = ids
        return ids

    # ---- steps 1 to 5
    def content(self, text: str) -> list[int]:
        """The ids of a text before truncation and [CLS]/[SEP] (steps 1 to 4)."""
        _check(text)
        ids: list[int] = []
        start = 0
        for m in self.added.finditer(text) if self.added is not None else ():
            self._plain(text[start:m.start()], ids)
            ids.append(self.ids[m.group()])
            start = m.end()
        self._plain(text[start:], ids)
        return ids

    def _plain(self, text: str, ids: list[int]) -> None:
        if text:
            for w in self.pre_tokenize(self.normalize(text)):
                ids.extend(self.word(w))

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``: ``[CLS]``, at most ``max_length - 2`` ids of the text, ``[SEP]``."""
        return [self.cls] + self.content(text)[:self.task.max_length - 2] + [self.sep]

    def tokens(self, text: str) -> list[str]:
        """The tokens :meth:`encode` gives the ids of (to read what a text became)."""
        return [self.vocab[i] for i in self.encode(text)]

    def batch(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """The model's inputs for ``texts``: int64 ``[len(texts), width]`` arrays named by the
        record's ``ids_input``, ``mask_input`` and ``type_input`` (those not None), ``width``
        ``max_length`` when ``pad_to_max``, else the longest row's."""
        if isinstance(texts, str):
            raise InputError("batch() takes a list of texts, not one text", hint="batch([text]), or encode(text)")
        rows = [self.encode(t) for t in texts]
        width = self.task.max_length if self.task.pad_to_max else max((len(r) for r in rows), default=0)
        if self.pad is None and any(len(r) < width for r in rows):
            raise FormatError(f"the vocabulary has no {self.task.pad_token!r} (the record's pad_token) to pad with",
                              hint="the record's special tokens are tokens of its vocabulary")
        ids = np.full((len(rows), width), self.pad or 0, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for k, r in enumerate(rows):
            ids[k, :len(r)] = r
            mask[k, :len(r)] = 1
        out = {self.task.ids_input: ids}
        if self.task.mask_input is not None:
            out[self.task.mask_input] = mask
        if self.task.type_input is not None:
            out[self.task.type_input] = np.zeros((len(rows), width), np.int64)
        return out


def _check(text: Any) -> None:
    if not isinstance(text, str):
        raise InputError(f"a text to tokenize is a str, not {type(text).__name__}", hint="give the text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"the text holds a lone surrogate at {e.start} ({text[e.start]!r}): not Unicode text",
                         hint="decode the text from its bytes with errors='replace'") from None


def nfd(text: str) -> str:
    """NFD as tokenizers' tables do it: the :data:`NFD_KEEP` code points left as they are (neither
    decomposed nor reordered), the text between them decomposed."""
    if text.isascii():
        return text
    if _NFD_KEEP_RE.search(text) is None:
        return unicodedata.normalize("NFD", text)
    parts = _NFD_KEEP_RE.split(text)  # the kept code points at the odd places
    return "".join(s if k % 2 else unicodedata.normalize("NFD", s) for k, s in enumerate(parts))


# ---- the tables, measured from tokenizers 0.23.3 on every code point (benchmarks/check_wordpiece.py --tables)
# ranges of hexadecimal code points: "first-last" or one code point, separated by spaces
_CONTROL = ("0-8 b-c e-1f 7f-9f ad 600-605 61c 6dd 70f 180e 200b-200f 202a-202e 2060-2064 2066-206f e000-f8ff feff fff9-fffb fffd "
    "110bd 1bca0-1bca3 1d173-1d17a e0001 e0020-e007f f0000-ffffd 100000-10fffd")
_WHITESPACE = ("9-d 20 85 a0 1680 2000-200a 2028-2029 202f 205f 3000")
_PUNCTUATION = ("21-2f 3a-40 5b-60 7b-7e a1 a7 ab b6-b7 bb bf 37e 387 55a-55f 589-58a 5be 5c0 5c3 5c6 5f3-5f4 609-60a 60c-60d 61b "
    "61e-61f 66a-66d 6d4 700-70d 7f7-7f9 830-83e 85e 964-965 970 af0 df4 e4f e5a-e5b f04-f12 f14 f3a-f3d f85 fd0-fd4 "
    "fd9-fda 104a-104f 10fb 1360-1368 1400 166d-166e 169b-169c 16eb-16ed 1735-1736 17d4-17d6 17d8-17da 1800-180a 1944-1945 "
    "1a1e-1a1f 1aa0-1aa6 1aa8-1aad 1b5a-1b60 1bfc-1bff 1c3b-1c3f 1c7e-1c7f 1cc0-1cc7 1cd3 2010-2027 2030-2043 2045-2051 "
    "2053-205e 207d-207e 208d-208e 2308-230b 2329-232a 2768-2775 27c5-27c6 27e6-27ef 2983-2998 29d8-29db 29fc-29fd "
    "2cf9-2cfc 2cfe-2cff 2d70 2e00-2e2e 2e30-2e42 3001-3003 3008-3011 3014-301f 3030 303d 30a0 30fb a4fe-a4ff a60d-a60f "
    "a673 a67e a6f2-a6f7 a874-a877 a8ce-a8cf a8f8-a8fa a8fc a92e-a92f a95f a9c1-a9cd a9de-a9df aa5c-aa5f aade-aadf "
    "aaf0-aaf1 abeb fd3e-fd3f fe10-fe19 fe30-fe52 fe54-fe61 fe63 fe68 fe6a-fe6b ff01-ff03 ff05-ff0a ff0c-ff0f ff1a-ff1b "
    "ff1f-ff20 ff3b-ff3d ff3f ff5b ff5d ff5f-ff65 10100-10102 1039f 103d0 1056f 10857 1091f 1093f 10a50-10a58 10a7f "
    "10af0-10af6 10b39-10b3f 10b99-10b9c 11047-1104d 110bb-110bc 110be-110c1 11140-11143 11174-11175 111c5-111c9 111cd "
    "111db 111dd-111df 11238-1123d 112a9 114c6 115c1-115d7 11641-11643 1173c-1173e 12470-12474 16a6e-16a6f 16af5 "
    "16b37-16b3b 16b44 1bc9f 1da87-1da8b")
_CJK = ("3400-4dbf 4e00-9fff f900-faff 20000-2a6df 2a700-2b81f 2b920-2ceaf 2f800-2fa1f")
_MARKS = ("300-36f 483-487 591-5bd 5bf 5c1-5c2 5c4-5c5 5c7 610-61a 64b-65f 670 6d6-6dc 6df-6e4 6e7-6e8 6ea-6ed 711 730-74a "
    "7a6-7b0 7eb-7f3 816-819 81b-823 825-827 829-82d 859-85b 8e3-902 93a 93c 941-948 94d 951-957 962-963 981 9bc 9c1-9c4 "
    "9cd 9e2-9e3 a01-a02 a3c a41-a42 a47-a48 a4b-a4d a51 a70-a71 a75 a81-a82 abc ac1-ac5 ac7-ac8 acd ae2-ae3 b01 b3c b3f "
    "b41-b44 b4d b56 b62-b63 b82 bc0 bcd c00 c3e-c40 c46-c48 c4a-c4d c55-c56 c62-c63 c81 cbc cbf cc6 ccc-ccd ce2-ce3 d01 "
    "d41-d44 d4d d62-d63 dca dd2-dd4 dd6 e31 e34-e3a e47-e4e eb1 eb4-eb9 ebb-ebc ec8-ecd f18-f19 f35 f37 f39 f71-f7e "
    "f80-f84 f86-f87 f8d-f97 f99-fbc fc6 102d-1030 1032-1037 1039-103a 103d-103e 1058-1059 105e-1060 1071-1074 1082 "
    "1085-1086 108d 109d 135d-135f 1712-1714 1732-1734 1752-1753 1772-1773 17b4-17b5 17b7-17bd 17c6 17c9-17d3 17dd "
    "180b-180d 18a9 1920-1922 1927-1928 1932 1939-193b 1a17-1a18 1a1b 1a56 1a58-1a5e 1a60 1a62 1a65-1a6c 1a73-1a7c 1a7f "
    "1ab0-1abd 1b00-1b03 1b34 1b36-1b3a 1b3c 1b42 1b6b-1b73 1b80-1b81 1ba2-1ba5 1ba8-1ba9 1bab-1bad 1be6 1be8-1be9 1bed "
    "1bef-1bf1 1c2c-1c33 1c36-1c37 1cd0-1cd2 1cd4-1ce0 1ce2-1ce8 1ced 1cf4 1cf8-1cf9 1dc0-1df5 1dfc-1dff 20d0-20dc 20e1 "
    "20e5-20f0 2cef-2cf1 2d7f 2de0-2dff 302a-302d 3099-309a a66f a674-a67d a69e-a69f a6f0-a6f1 a802 a806 a80b a825-a826 "
    "a8c4 a8e0-a8f1 a926-a92d a947-a951 a980-a982 a9b3 a9b6-a9b9 a9bc a9e5 aa29-aa2e aa31-aa32 aa35-aa36 aa43 aa4c aa7c "
    "aab0 aab2-aab4 aab7-aab8 aabe-aabf aac1 aaec-aaed aaf6 abe5 abe8 abed fb1e fe00-fe0f fe20-fe2f 101fd 102e0 10376-1037a "
    "10a01-10a03 10a05-10a06 10a0c-10a0f 10a38-10a3a 10a3f 10ae5-10ae6 11001 11038-11046 1107f-11081 110b3-110b6 "
    "110b9-110ba 11100-11102 11127-1112b 1112d-11134 11173 11180-11181 111b6-111be 111ca-111cc 1122f-11231 11234 "
    "11236-11237 112df 112e3-112ea 11300-11301 1133c 11340 11366-1136c 11370-11374 114b3-114b8 114ba 114bf-114c0 "
    "114c2-114c3 115b2-115b5 115bc-115bd 115bf-115c0 115dc-115dd 11633-1163a 1163d 1163f-11640 116ab 116ad 116b0-116b5 "
    "116b7 1171d-1171f 11722-11725 11727-1172b 16af0-16af4 16b30-16b36 16f8f-16f92 1bc9d-1bc9e 1d167-1d169 1d17b-1d182 "
    "1d185-1d18b 1d1aa-1d1ad 1d242-1d244 1da00-1da36 1da3b-1da6c 1da75 1da84 1da9b-1da9f 1daa1-1daaf 1e8d0-1e8d6 "
    "e0100-e01ef")
_NFD_KEEP = ("7fd 897-89f 8ca-8d3 9fe c3c d3b-d3c eba 1715 1abf-1add 1ae0-1aeb 1df6-1dfa a82c 105c9 105e4 10d24-10d27 10d69-10d6d "
    "10eab-10eac 10efa-10efb 10efd-10eff 10f46-10f50 10f82-10f85 11070 1133b 11383 11385 1138e 11391 113c5 113c7-113c8 "
    "113ce-113d0 1145e 11839-1183a 11938 1193d-1193e 11943 119e0 11a34 11a47 11a99 11d42 11d44-11d45 11d97 11f41-11f42 "
    "16121-16128 1612f 16d68-16d6a 16ff0-16ff1 1e08f 1e130-1e136 1e2ae 1e2ec-1e2ef 1e4ec-1e4ef 1e5ee-1e5ef 1e6e3 1e6e6 "
    "1e6ee-1e6ef 1e6f5")
_LOWER = ("41-5a/1:+20 c0-d6/1:+20 d8-de/1:+20 100-12e/2:+1 132-136/2:+1 139-147/2:+1 14a-176/2:+1 178:-79 179-17d/2:+1 181:+d2 "
    "182-184/2:+1 186:+ce 187:+1 189-18a/1:+cd 18b:+1 18e:+4f 18f:+ca 190:+cb 191:+1 193:+cd 194:+cf 196:+d3 197:+d1 198:+1 "
    "19c:+d3 19d:+d5 19f:+d6 1a0-1a4/2:+1 1a6:+da 1a7:+1 1a9:+da 1ac:+1 1ae:+da 1af:+1 1b1-1b2/1:+d9 1b3-1b5/2:+1 1b7:+db "
    "1b8:+1 1bc:+1 1c4:+2 1c5:+1 1c7:+2 1c8:+1 1ca:+2 1cb-1db/2:+1 1de-1ee/2:+1 1f1:+2 1f2-1f4/2:+1 1f6:-61 1f7:-38 "
    "1f8-21e/2:+1 220:-82 222-232/2:+1 23a:+2a2b 23b:+1 23d:-a3 23e:+2a28 241:+1 243:-c3 244:+45 245:+47 246-24e/2:+1 "
    "370-372/2:+1 376:+1 37f:+74 386:+26 388-38a/1:+25 38c:+40 38e-38f/1:+3f 391-3a1/1:+20 3a3-3ab/1:+20 3cf:+8 "
    "3d8-3ee/2:+1 3f4:-3c 3f7:+1 3f9:-7 3fa:+1 3fd-3ff/1:-82 400-40f/1:+50 410-42f/1:+20 460-480/2:+1 48a-4be/2:+1 4c0:+f "
    "4c1-4cd/2:+1 4d0-52e/2:+1 531-556/1:+30 10a0-10c5/1:+1c60 10c7:+1c60 10cd:+1c60 13a0-13ef/1:+97d0 13f0-13f5/1:+8 "
    "1c89:+1 1c90-1cba/1:-bc0 1cbd-1cbf/1:-bc0 1e00-1e94/2:+1 1e9e:-1dbf 1ea0-1efe/2:+1 1f08-1f0f/1:-8 1f18-1f1d/1:-8 "
    "1f28-1f2f/1:-8 1f38-1f3f/1:-8 1f48-1f4d/1:-8 1f59-1f5f/2:-8 1f68-1f6f/1:-8 1f88-1f8f/1:-8 1f98-1f9f/1:-8 "
    "1fa8-1faf/1:-8 1fb8-1fb9/1:-8 1fba-1fbb/1:-4a 1fbc:-9 1fc8-1fcb/1:-56 1fcc:-9 1fd8-1fd9/1:-8 1fda-1fdb/1:-64 "
    "1fe8-1fe9/1:-8 1fea-1feb/1:-70 1fec:-7 1ff8-1ff9/1:-80 1ffa-1ffb/1:-7e 1ffc:-9 2126:-1d5d 212a:-20bf 212b:-2046 "
    "2132:+1c 2160-216f/1:+10 2183:+1 24b6-24cf/1:+1a 2c00-2c2f/1:+30 2c60:+1 2c62:-29f7 2c63:-ee6 2c64:-29e7 "
    "2c67-2c6b/2:+1 2c6d:-2a1c 2c6e:-29fd 2c6f:-2a1f 2c70:-2a1e 2c72:+1 2c75:+1 2c7e-2c7f/1:-2a3f 2c80-2ce2/2:+1 "
    "2ceb-2ced/2:+1 2cf2:+1 a640-a66c/2:+1 a680-a69a/2:+1 a722-a72e/2:+1 a732-a76e/2:+1 a779-a77b/2:+1 a77d:-8a04 "
    "a77e-a786/2:+1 a78b:+1 a78d:-a528 a790-a792/2:+1 a796-a7a8/2:+1 a7aa:-a544 a7ab:-a54f a7ac:-a54b a7ad:-a541 a7ae:-a544 "
    "a7b0:-a512 a7b1:-a52a a7b2:-a515 a7b3:+3a0 a7b4-a7c2/2:+1 a7c4:-30 a7c5:-a543 a7c6:-8a38 a7c7-a7c9/2:+1 a7cb:-a567 "
    "a7cc-a7da/2:+1 a7dc:-a641 a7f5:+1 ff21-ff3a/1:+20 10400-10427/1:+28 104b0-104d3/1:+28 10570-1057a/1:+27 "
    "1057c-1058a/1:+27 1058c-10592/1:+27 10594-10595/1:+27 10c80-10cb2/1:+40 10d50-10d65/1:+20 118a0-118bf/1:+20 "
    "16e40-16e5f/1:+20 16ea0-16eb8/1:+1b 1e900-1e921/1:+22")



#: the tables the JavaScript and Kotlin ports are rendered with
TABLES = {"CONTROL": _CONTROL, "WHITESPACE": _WHITESPACE, "PUNCTUATION": _PUNCTUATION, "CJK": _CJK, "MARKS": _MARKS,
          "NFD_KEEP": _NFD_KEEP, "LOWER": _LOWER}


def ranges(spec: str) -> list[tuple[int, int]]:
    """``"41-5a 5f"`` -> ``[(0x41, 0x5a), (0x5f, 0x5f)]``."""
    out = []
    for item in spec.split():
        first, _, last = item.partition("-")
        out.append((int(first, 16), int(last or first, 16)))
    return out


def lower_map(spec: str) -> dict[int, str]:
    """The ``LOWER`` runs (``first-last/step:delta`` or ``first:delta``) as a ``str.translate``
    table, with U+0130's two characters."""
    out = {0x130: "i\u0307"}
    for item in spec.split():
        span, _, delta = item.partition(":")
        first, _, rest = span.partition("-")
        last, _, step = rest.partition("/")
        a = int(first, 16)
        for c in range(a, int(last or first, 16) + 1, int(step or "1", 16)):
            out[c] = chr(c + int(delta, 16))
    return out


def _class(spec: str) -> str:
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges(spec))


_CONTROL_RE = re.compile(f"[{_class(_CONTROL)}]+")
_WHITESPACE_RE = re.compile(f"[{_class(_WHITESPACE)}]")
_CJK_RE = re.compile(f"[{_class(_CJK)}]")
_MARKS_RE = re.compile(f"[{_class(_MARKS)}]+")
_NFD_KEEP_RE = re.compile(f"([{_class(_NFD_KEEP)}])")
#: a punctuation character, or a run of characters neither punctuation nor whitespace
_WORDS_RE = re.compile(f"[{_class(_PUNCTUATION)}]|[^{_class(_PUNCTUATION)}{_class(_WHITESPACE)}]+")
_LOWER_MAP = lower_map(_LOWER)
