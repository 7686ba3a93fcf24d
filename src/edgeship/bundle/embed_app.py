"""App code for a text embedding bundle: its WordPiece tokenizer in JavaScript and Kotlin.

::

    integration/web/edgeship-wordpiece.js      the tokenizer as an ES module (no build step, no
                                               dependency): new WordPiece(vocab).batch(texts) ->
                                               {shape, inputs: {input_ids: BigInt64Array, ...}}
    integration/android/EdgeshipWordPiece.kt   the tokenizer in plain Kotlin (no android.*: tested
                                               on a JVM): EdgeshipWordPiece(vocab).batch(texts)

Both are :mod:`edgeship.tasks.text` ported line for line (HF tokenizers' BERT pipeline) and read
the same character tables (``tasks.text.TABLES``, tokenizers' own), rendered in with the embedding
record the bundle's model was verified with (its ``task``); the token list is read at run time
from the file the record names (``vocab.txt`` beside bundle.json), as a classifier's labels are.
``tests/test_wordpiece_web.py`` and ``tests/test_wordpiece_kotlin.py`` check them token for token
against tokenizers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..readers.tokenizer import MASK_TOKEN, RUST_WHITESPACE
from ..tasks import parse_task, task_dict
from ..tasks.text import CACHE_WORDS, DEFAULTS, TABLES
from .integration import INTEGRATION_DIR, KOTLIN_PACKAGE, _env, kt_str

__all__ = ["write_wordpiece_code", "WORDPIECE_SCRIPT", "WORDPIECE_KOTLIN"]

WORDPIECE_SCRIPT = f"{INTEGRATION_DIR}/web/edgeship-wordpiece.js"
WORDPIECE_KOTLIN = f"{INTEGRATION_DIR}/android/EdgeshipWordPiece.kt"


def _kt_bool(v: Any) -> str:
    return "null" if v is None else "true" if v else "false"


def _kt_opt_str(v: Any) -> str:
    return "null" if v is None else kt_str(v)


def _kt_opt_list(v: Any) -> str:
    return "null" if v is None else "listOf(" + ", ".join(kt_str(s) for s in v) + ")"


def write_wordpiece_code(bundle_folder: Path, task: Any) -> list[Path]:
    """Write ``integration/web/edgeship-wordpiece.js`` and ``integration/android/EdgeshipWordPiece.kt``
    under ``bundle_folder`` for the embedding record ``task`` (its dict or the pydantic record;
    ``tokenizer`` "wordpiece"); return the files written."""
    from .._version import __version__

    where = f"{bundle_folder}/bundle.json"
    record = task if isinstance(task, dict) else task_dict(task)
    record = task_dict(parse_task({"kind": "embedding", **(record or {})}, f"{where} task"))
    if record["kind"] != "embedding" or record.get("tokenizer") != "wordpiece":
        raise FormatError(f"{where}: the task is a {record['kind']} with tokenizer {record.get('tokenizer')!r}, "
                          "not an embedding with the wordpiece tokenizer",
                          hint='an embedding record with "tokenizer": "wordpiece"')
    record = DEFAULTS | record  # the fields the record does not have yet (added_tokens) at their defaults
    ctx = {"edgeship_version": __version__, "kotlin_package": KOTLIN_PACKAGE, "task": record, "defaults": DEFAULTS,
           "tables": TABLES, "mask_token": MASK_TOKEN, "rust_whitespace": RUST_WHITESPACE, "cache_words": CACHE_WORDS}
    env = _env()
    env.filters.update(kt_bool=_kt_bool, kt_opt_str=_kt_opt_str, kt_opt_list=_kt_opt_list)
    written = []
    for rel, template in ((WORDPIECE_SCRIPT, "edgeship-wordpiece.js.j2"), (WORDPIECE_KOTLIN, "EdgeshipWordPiece.kt.j2")):
        path = Path(bundle_folder) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(ctx), encoding="utf-8")
        written.append(path)
    return written
