"""Text embeddings (issue 38): the model's WordPiece tokenizer travels with it (task record ->
artifact -> release ``vocab.txt``); text files are data for an ONNX embedder too; the verification
reports nearest-neighbour agreement beside cosine; the light runtime's Embedder tokenises as the
model's tokenizer does and returns L2-normalised rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeship import api
from edgeship.errors import EdgeshipError, FormatError
from tinystream import SENTENCES, embedder_model, wordpiece_tokenizer


@pytest.fixture(scope="module")
def emb_deploy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from tokenizers import Tokenizer

    root = tmp_path_factory.mktemp("emb")
    tok = wordpiece_tokenizer(root / "tokenizer.json")
    model = embedder_model(root / "emb.onnx", Tokenizer.from_file(str(tok)).get_vocab_size())
    ev = root / "eval.txt"
    ev.write_text("\n".join(SENTENCES[:12]) + "\n")
    ca = root / "calib.txt"
    ca.write_text("\n".join(SENTENCES[12:]) + "\n")
    task = {"kind": "embedding", "tokenizer": "wordpiece", "vocabulary": str(tok)}
    res = api.deploy(str(model), out=root / "out", targets=["onnx"], quantize=["int8"], task_record=json.dumps(task),
                     eval=str(ev), calib=str(ca), isolate=False)
    return {"root": root, "tok": tok, "model": model, "out": res.out, "task": task}


def test_the_tokenizer_rules_come_from_tokenizer_json_and_match_it(emb_deploy: dict) -> None:
    from tokenizers import Tokenizer

    from edgeship.readers.tokenizer import read_tokenizer
    from edgeship.tasks.text import WordPiece

    m = json.loads((emb_deploy["out"] / "manifest.json").read_text())
    task = m["source"]["task"]
    assert task["max_length"] == 16 and task["lowercase"] is True and task["vocabulary_sha256"]
    ref = Tokenizer.from_file(str(emb_deploy["tok"]))
    wp = WordPiece(read_tokenizer(emb_deploy["tok"])[0], task)
    for s in SENTENCES:
        assert wp.encode(s) == [i for i, a in zip(ref.encode(s).ids, ref.encode(s).attention_mask) if a], s


def test_embeddings_are_judged_by_their_nearest_neighbours(emb_deploy: dict) -> None:
    m = json.loads((emb_deploy["out"] / "manifest.json").read_text())
    recs = {r["precision"]: r for r in m["artifacts"]}
    for prec, n in (("fp32", 8), ("int8", 12)):  # fp32: its first --samples (8); a reduced precision: the whole set
        t = recs[prec]["verification"]["task"]
        assert t["measure"] == "nearest neighbour" and t["inputs"] == n
        assert 0.0 <= t["nn_agreement"] <= 1.0 and t["mean_cosine"] > 0.9
    assert recs["fp32"]["verification"]["task"]["nn_agreement"] == 1.0
    assert "nearest-neighbour agreement" in recs["int8"]["verification"]["criterion"]
    html = (emb_deploy["out"] / "report.html").read_text()
    assert "Embeddings, judged by their neighbours" in html


def test_the_release_ships_the_vocabulary_and_the_light_embedder_matches_the_model(emb_deploy: dict) -> None:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from edgeship.runtime import Embedder

    folder = next(p for p in (emb_deploy["out"] / "release").iterdir() if p.is_dir())
    doc = json.loads((folder / "bundle.json").read_text())
    assert doc["task"]["vocabulary"] == "vocab.txt" and (folder / "vocab.txt").is_file()
    assert all(e["task"]["vocabulary"] == "vocab.txt" for e in doc["artifacts"])
    golden = json.loads((folder / "golden" / "golden.json").read_text())
    assert all(rec.get("texts") for rec in golden["artifacts"].values())
    e = Embedder.from_bundle(folder)
    got = e.embed(list(SENTENCES[:5]))
    assert got.shape == (5, 24) and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    if e.served_by.endswith("fp32"):
        ref = Tokenizer.from_file(str(emb_deploy["tok"]))
        s = ort.InferenceSession(str(emb_deploy["model"]))
        for i, text in enumerate(SENTENCES[:5]):
            enc = ref.encode(text)
            v = s.run(None, {"input_ids": np.array([enc.ids]), "attention_mask": np.array([enc.attention_mask])})[0][0]
            assert np.allclose(got[i], v / np.linalg.norm(v), atol=1e-5)


def test_a_vocabulary_changed_after_the_deploy_is_not_released(emb_deploy: dict, tmp_path: Path) -> None:
    from edgeship.bundle import write_vocabulary

    m = json.loads((emb_deploy["out"] / "manifest.json").read_text())
    task = m["source"]["task"]
    changed = tmp_path / "tokenizer.json"
    doc = json.loads(emb_deploy["tok"].read_text())
    doc["model"]["vocab"]["zebra"] = len(doc["model"]["vocab"])
    changed.write_text(json.dumps(doc))
    write_vocabulary(tmp_path, task)  # the recorded one still matches its digest
    assert (tmp_path / "vocab.txt").read_text().splitlines()[0] == "[PAD]"
    with pytest.raises(EdgeshipError, match="changed since the deploy"):
        write_vocabulary(tmp_path, {**task, "vocabulary": str(changed)})


def test_a_tokenizer_that_is_not_wordpiece_is_refused_by_name(tmp_path: Path) -> None:
    from edgeship.readers.tokenizer import read_tokenizer

    bpe = {"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(bpe))
    with pytest.raises(EdgeshipError, match="BPE"):
        read_tokenizer(p)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(FormatError, match="garbage.json"):
        read_tokenizer(garbage)
