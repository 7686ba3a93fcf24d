"""The web page of an embedding bundle (integration/web/embed.html + edgeship-embed.js) in headless
Chromium, on a bundle made by ``edgeship deploy`` (the tiny embedder of tinystream.py, targets
onnx and web, fp32 and int8: the web target's own export and its verification in Chromium): the
page's embeddings equal the light runtime's (``edgeship.runtime.Embedder``, native ONNX Runtime)
on the same model file to 1e-5, its token ids are WordPiece's and tokenizers' own, its nearest
neighbours are numpy's, and an artifact whose golden vectors it does not meet is skipped with the
reason Python gives, the next web artifact serving."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeship.bundle.embed_app import EMBED_PAGE, EMBED_SCRIPT, WORDPIECE_SCRIPT, write_embed_web
from edgeship.targets.web import _Browser, chromium_path, serve_folder
from tinystream import SENTENCES, embedder_model, wordpiece_tokenizer

CI = bool(os.environ.get("EDGESHIP_CI"))
needs_browser = pytest.mark.skipif(chromium_path() is None and not CI, reason="no Chromium here (CI installs it)")


class Tab:
    """A page of ``root`` on loopback in headless Chromium; every request outside its origin is
    blocked and remembered, every page error kept."""

    def __init__(self, root: Path, path: str) -> None:
        self.server = serve_folder(root, {}, isolated=False)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.ctx = _Browser.acquire().new_context()
        self.outside: list[str] = []
        self.errors: list[str] = []

        def route(r):  # noqa: ANN001
            if r.request.url.startswith(self.origin + "/"):
                return r.continue_()
            self.outside.append(r.request.url)
            return r.abort()

        self.ctx.route("**/*", route)
        self.page = self.ctx.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(self.origin + path)

    def ready(self) -> dict:
        self.page.wait_for_function("window.edgeshipReady", timeout=120_000)
        return self.page.evaluate("window.edgeshipReady")

    def __enter__(self) -> Tab:
        return self

    def __exit__(self, *exc: object) -> None:
        _Browser.release(self.ctx)
        self.server.shutdown()
        self.server.server_close()
        assert not self.outside, f"the page asked for {self.outside}"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``edgeship deploy emb.onnx --targets onnx,web --quantize int8`` with a WordPiece task record.
    Not isolated: in the limited child Chromium does not start and the web artifacts would not be
    verified."""
    from tokenizers import Tokenizer

    from edgeship import api

    root = tmp_path_factory.mktemp("embed-web")
    tok = wordpiece_tokenizer(root / "tokenizer.json")
    model = embedder_model(root / "emb.onnx", Tokenizer.from_file(str(tok)).get_vocab_size())
    ev = root / "eval.txt"
    ev.write_text("\n".join(SENTENCES[:12]) + "\n")
    task = {"kind": "embedding", "tokenizer": "wordpiece", "vocabulary": str(tok)}
    res = api.deploy(str(model), out=root / "out", targets=["onnx", "web"], quantize=["int8"],
                     task_record=json.dumps(task), eval=str(ev), isolate=False)
    bundle = next(p for p in (res.out / "release").iterdir() if p.is_dir())
    doc = json.loads((bundle / "bundle.json").read_text())
    assert (bundle / WORDPIECE_SCRIPT).is_file()  # the tokenizer module the page imports
    assert {EMBED_PAGE, EMBED_SCRIPT} <= {f["path"] for f in doc["files"]}  # written and signed with the release
    return {"bundle": bundle, "doc": doc, "tok": tok}


def _web(doc: dict) -> list[str]:
    formats = {a["id"]: a["format"] for a in doc["artifacts"]}
    return [i for i in doc["fallback_order"] if formats[i] == "web"]


def _same_model(bundle: Path, web_id: str, python_id: str) -> None:
    """The page's artifact and the one the light runtime serves hold the same model file."""
    assert (bundle / "artifacts" / web_id / "model.onnx").read_bytes() == \
        (bundle / "artifacts" / python_id / "model.onnx").read_bytes(), (web_id, python_id)


def _numpy_nearest(rows: np.ndarray, query: np.ndarray, k: int, exclude: int | None = None) -> list[int]:
    cos = rows.astype(np.float64) @ query.astype(np.float64) / (np.linalg.norm(rows, axis=1) * np.linalg.norm(query))
    order = sorted((i for i in range(len(rows)) if i != exclude), key=lambda i: (-cos[i], i))
    return order[:k]


@pytest.mark.browser
@needs_browser
def test_the_page_embeds_as_the_light_runtime_does_and_finds_the_nearest(deployed: dict) -> None:
    from tokenizers import Tokenizer

    from edgeship.runtime import Embedder
    from edgeship.tasks.text import WordPiece, read_vocabulary

    bundle, doc = deployed["bundle"], deployed["doc"]
    web = _web(doc)
    assert web == ["web-int8", "web-fp32"], doc["fallback_order"]
    texts = list(SENTENCES)
    with Tab(bundle, "/" + EMBED_PAGE) as tab:
        ready = tab.ready()
        assert ready == {"servedBy": web[0], "skipped": []}, ready
        one = tab.page.evaluate("t => window.edgeshipEmbed(t)", texts)
        batched = tab.page.evaluate("t => window.edgeshipEmbed(t, {batchSize: 8})", texts)
        # the page itself: sentences and a query typed in, the neighbours it lists
        tab.page.fill("#sentences", "\n".join(texts[:10]))
        tab.page.fill("#query", texts[12])
        tab.page.click("#go")
        tab.page.wait_for_function("window.edgeshipResult", timeout=60_000)
        shown = tab.page.evaluate("window.edgeshipResult")
        ranking_cells = tab.page.eval_on_selector_all("#ranking tr td:nth-child(2)", "tds => tds.map(t => t.textContent)")
        assert not tab.errors, tab.errors

    e = Embedder.from_bundle(bundle)
    assert e.served_by == "onnx-int8" and e.skipped == []
    _same_model(bundle, one["servedBy"], e.served_by)
    want = e.embed(texts)
    got = np.asarray(one["embeddings"], np.float32)
    assert got.shape == want.shape == (20, 24)
    diff = float(np.abs(got - want).max())
    assert diff <= 1e-5, diff
    assert float(np.abs(np.asarray(batched["embeddings"], np.float32) - want).max()) <= 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # the ids: WordPiece's (Python) and tokenizers' own, unpadded
    wp = WordPiece(read_vocabulary((bundle / "vocab.txt").read_text(encoding="utf-8")), doc["task"])
    ref = Tokenizer.from_file(str(deployed["tok"]))
    assert one["ids"] == [wp.encode(t) for t in texts] == batched["ids"]
    assert one["ids"] == [[i for i, m in zip(ref.encode(t).ids, ref.encode(t).attention_mask) if m] for t in texts]
    # the neighbours on the page are numpy's on the light runtime's embeddings
    rows, query = want[:10], e.embed([texts[12]])[0]
    assert shown["servedBy"] == web[0] and shown["sentences"] == texts[:10]
    assert [r["index"] for r in shown["ranking"]] == _numpy_nearest(rows, query, 10)
    assert ranking_cells == [texts[i] for i in _numpy_nearest(rows, query, 10)]
    assert [n["nearest"] for n in shown["neighbours"]] == [_numpy_nearest(rows, rows[i], 1, i)[0] for i in range(10)]
    np.testing.assert_allclose([r["cosine"] for r in shown["ranking"]],
                               np.sort(rows.astype(np.float64) @ query)[::-1], atol=1e-5)
    print(f"page vs Embedder ({one['servedBy']} / {e.served_by}): max |diff| {diff:.2e}")


def _tamper_outputs(bundle: Path, ids: list[str]) -> None:
    """The golden embeddings of ``ids`` replaced by their negatives (cosine -1), in new files."""
    path = bundle / "golden" / "golden.json"
    golden = json.loads(path.read_text())
    for aid in ids:
        rec = golden["artifacts"][aid]
        for name, files in rec["outputs"].items():
            rel = f"golden/t/tampered-{aid}-{name}.npy"
            buf = io.BytesIO()
            np.save(buf, -np.load(bundle / files[0]))
            (bundle / rel).write_bytes(buf.getvalue())
            rec["outputs"][name] = [rel, *files[1:]]
    path.write_text(json.dumps(golden, indent=1))


@pytest.mark.browser
@needs_browser
def test_an_artifact_that_misses_its_golden_sentences_is_skipped_with_the_reason_python_gives(
        deployed: dict, tmp_path: Path) -> None:
    from edgeship.errors import EdgeshipError
    from edgeship.runtime import Embedder

    bundle = tmp_path / "bundle"
    shutil.copytree(deployed["bundle"], bundle)
    _tamper_outputs(bundle, ["web-int8", "onnx-int8"])
    texts = list(SENTENCES)
    with Tab(bundle, "/" + EMBED_PAGE) as tab:
        ready = tab.ready()
        got = tab.page.evaluate("t => window.edgeshipEmbed(t)", texts)
        skipped_shown = tab.page.eval_on_selector_all("#skipped li", "lis => lis.map(l => l.textContent)")
        assert not tab.errors, tab.errors
    e = Embedder.from_bundle(bundle)
    assert ready["servedBy"] == "web-fp32" and e.served_by == "onnx-fp32"
    assert [s["artifact"] for s in ready["skipped"]] == ["web-int8"]
    assert [s["artifact"] for s in e.skipped] == ["onnx-int8", "web-int8"]  # Python walks every format
    reason = ready["skipped"][0]["reason"]
    assert reason.startswith("fails its golden vectors: sentence-0 output 0: cosine -1.00000 < 0.99"), reason
    assert reason == e.skipped[1]["reason"]  # the same artifact, the same rule, the same words
    assert skipped_shown == [f"skipped web-int8: {reason}"]
    _same_model(bundle, "web-fp32", "onnx-fp32")
    diff = float(np.abs(np.asarray(got["embeddings"], np.float32) - e.embed(texts)).max())
    assert diff <= 1e-5, diff
    print(f"page vs Embedder (web-fp32 / onnx-fp32): max |diff| {diff:.2e}")

    # a golden sentence whose ids the tokenizer does not give: the last web artifact fails too
    path = bundle / "golden" / "golden.json"
    golden = json.loads(path.read_text())
    golden["artifacts"]["web-fp32"]["texts"]["sentence-1"] = "a sentence the golden ids are not of"
    path.write_text(json.dumps(golden, indent=1))
    with Tab(bundle, "/" + EMBED_PAGE) as tab:
        ready = tab.ready()
        with pytest.raises(Exception, match="no artifact of this bundle serves here"):
            tab.page.evaluate("t => window.edgeshipEmbed(t)", texts[:2])
        status = tab.page.text_content("#status")
        assert not tab.errors, tab.errors
    assert [s["artifact"] for s in ready["skipped"]] == ["web-int8", "web-fp32"]
    assert ready["skipped"][1]["reason"] == ("fails its golden vectors: sentence-1: the tokenizer gives other inputs "
                                             "than the golden ones for 'a sentence the golden ids are not of'"
                                             .replace("'", '"'))
    assert ready["error"].startswith("no artifact of this bundle serves here: web-int8 fails its golden vectors")
    assert ready["error"] in status
    golden["artifacts"]["onnx-fp32"]["texts"]["sentence-1"] = "a sentence the golden ids are not of"
    path.write_text(json.dumps(golden, indent=1))
    with pytest.raises(EdgeshipError, match="sentence-1: the tokenizer gives other inputs"):  # Python agrees
        Embedder.from_bundle(bundle)

    # golden.json saying why an artifact has none (it could not run when the bundle was made): it
    # serves unchecked, as Embedder lets it, and the page says so
    golden["artifacts"]["web-int8"] = {"skipped": "no Chromium where the bundle was made"}
    path.write_text(json.dumps(golden, indent=1))
    with Tab(bundle, "/" + EMBED_PAGE) as tab:
        ready = tab.ready()
        served = tab.page.text_content("#served")
        assert not tab.errors, tab.errors
    assert ready == {"servedBy": "web-int8", "skipped": [], "unchecked": "no Chromium where the bundle was made"}
    assert served.endswith("not checked against golden vectors: no Chromium where the bundle was made")


def test_no_page_for_a_bundle_a_browser_cannot_run(tmp_path: Path) -> None:
    task = {"kind": "embedding", "tokenizer": "wordpiece"}
    doc = {"name": "e", "task": task, "fallback_order": ["onnx-fp32", "web-fp32"],
           "artifacts": [{"id": "onnx-fp32", "format": "onnx", "task": task},
                         {"id": "web-fp32", "format": "web", "task": {"kind": "embedding", "tokenizer": None}}]}
    assert write_embed_web(tmp_path, doc) == []  # the web artifact has no tokenizer the page has
    assert write_embed_web(tmp_path, {**doc, "artifacts": doc["artifacts"][:1]}) == []
    assert not (tmp_path / "integration").exists()
    doc["artifacts"][1]["task"] = task
    written = write_embed_web(tmp_path, doc)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [EMBED_SCRIPT, EMBED_PAGE]
    assert "<title>e: sentence embeddings</title>" in written[1].read_text()

