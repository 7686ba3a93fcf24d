"""The app code of a stream or an embedding release bundle (:mod:`edgeship.tasks`): the Python
script on the light runtime (``integration/python/stream.py`` or ``embed.py``), the task's web page
(:mod:`.stream_web`, :mod:`.embed_app`) and Android code (:mod:`.stream_app`, :mod:`.embed_app`),
and the integration README. A classifier's is :func:`edgeship.bundle.integration.write_integration`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._version import __version__
from .embed_app import write_embed_web, write_embedder_kotlin, write_wordpiece_code
from .integration import INTEGRATION_DIR, _env
from .light import requirements, write_light_runtime
from .stream_app import write_vad_app_code
from .stream_web import write_vad_web

__all__ = ["TASK_APPS", "write_task_integration"]

#: tasks whose bundle gets its own app code: (Python script, what it does)
TASK_APPS = {"voice_activity": ("stream.py", "speech segments of a recording or a live stream"),
             "embedding": ("embed.py", "sentence embeddings, nearest sentences")}


def write_task_integration(root: Path, doc: dict[str, Any]) -> list[str]:
    """``root/integration/`` of a stream or embedding bundle (``doc``: bundle.json without its
    file list): the Python script on the light runtime, the task's web page and Android (Kotlin)
    code, and a README saying what each is; the paths written, relative to ``root``."""
    kind = doc["task"]["kind"]
    out = root / INTEGRATION_DIR
    written: list[str] = []

    def put(rel: str, text: str) -> None:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text, encoding="utf-8")
        written.append(f"{INTEGRATION_DIR}/{rel}")

    env = _env()
    task = doc["task"]
    script, what = TASK_APPS[kind]
    ctx = {"edgeship_version": __version__, "bundle_name": doc["name"], "version": doc["version"],
           "rate": task.get("sample_rate"), "chunk": task.get("chunk")}
    put(f"python/{script}", env.get_template(script + ".j2").render(ctx))
    for rel in write_light_runtime(root / INTEGRATION_DIR / "python"):
        written.append(f"{INTEGRATION_DIR}/python/{rel}")
    put("python/requirements.txt", env.get_template("requirements.txt.j2").render(ctx, script=script,
                                                                                   requirements=requirements(doc)))
    made: list[Path] = []
    notes: list[str] = []
    if kind == "voice_activity":
        made += write_vad_web(root, doc)
        made += write_vad_app_code(root, task, doc)
        if not any(p.name.endswith(".html") for p in made):
            notes.append("no web page: the bundle has no web artifact")
    else:
        made += write_wordpiece_code(root, task)
        made += write_embed_web(root, doc)
        made += write_embedder_kotlin(root, task, doc)
        if not any(p.name.endswith(".html") for p in made):
            notes.append("no web page: the bundle has no web artifact")
    written += [str(p.relative_to(root)) for p in made]
    lines = [f"# Integration: {doc['name']} {doc['version']} ({kind.replace('_', ' ')})", "",
             f"- `python/{script}`: {what}, on the light runtime carried in `python/edgeship_light/` "
             "(`pip install -r integration/python/requirements.txt`)."]
    lines += [f"- `{p.relative_to(root / INTEGRATION_DIR)}`" for p in made]
    lines += [f"- {n}" for n in notes]
    lines += ["", "Every artifact is checked against `golden/golden.json` before it serves"
              + (" (a stream's golden vectors are audio: the chunk probabilities and speech segments it must give)."
                 if kind == "voice_activity" else " (its sentences must tokenise to the golden token ids).")]
    put("README.md", "\n".join(lines) + "\n")
    return written
