"""The web page of a voice-activity (stream) bundle: ``integration/web/vad.html`` and its two modules.

::

    integration/web/vad.html                pick or drop an audio file: read at the model's rate (a
                                            PCM or float WAV at that rate as readers.audio reads it,
                                            bit for bit; anything else decoded and resampled by the
                                            browser), mixed to mono, streamed through the model chunk
                                            by chunk with its state carried; the probability of each
                                            chunk drawn over time, the speech segments listed;
                                            ``window.edgeshipVad(urlOrBlob)`` answers {probs, segments
                                            (samples), seconds, servedBy, skipped, chunkMs, ...}
    integration/web/edgeship-vad.js         the stream glue of edgeship.tasks.vad ported line for line
                                            to plain JavaScript (an ES module, no build step, no browser
                                            API): Chunker, StreamRunner over an onnxruntime-web
                                            session, speechSegments (silero-vad's
                                            get_speech_timestamps_from_probs), chunkFlags; the
                                            bundle's task record rendered in as its default
    integration/web/edgeship-vad-bundle.js  the bundle's model on onnxruntime-web (wasm), from the web
                                            artifacts' vendored runtime; which serves, and why

The page reaches everything as the classifier and OCR pages do, relative to the bundle root
(``../../`` from ``integration/web/``): ``bundle.json`` (each artifact's format, folder, model
file, inputs, task record and session config), ``golden/golden.json`` (each artifact's golden
stream, checked before it serves) and, per web artifact, ``artifacts/<id>/model.onnx`` and
``artifacts/<id>/ort/``. What serves follows bundle.json's ``fallback_order``: the first web
artifact that loads here, takes the task's stream and passes its golden stream (every chunk's
probability within ``prob_max_abs`` of the golden one, the chunks' speech flags agreeing on at
least ``flags_min``: edgeship.runtime's rule); the others are skipped, each with its reason. An
artifact whose golden record says none could be made (``skipped``) serves unchecked, as the
runtime serves it, and the page says so.

Why the page reads WAV itself: Chromium's decodeAudioData scales positive 16-bit samples by
1/32767 and negative ones by 1/32768, half a quantisation step off the x / 32768 every other
reader uses, which moves a model's probabilities by more than its own rounding does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FormatError
from .integration import INTEGRATION_DIR, _env

__all__ = ["write_vad_web", "vad_task", "VAD_PAGE", "VAD_SCRIPT", "VAD_BUNDLE_SCRIPT"]

VAD_PAGE = f"{INTEGRATION_DIR}/web/vad.html"
VAD_SCRIPT = f"{INTEGRATION_DIR}/web/edgeship-vad.js"
VAD_BUNDLE_SCRIPT = f"{INTEGRATION_DIR}/web/edgeship-vad-bundle.js"


def _web_entries(bundle_doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The web artifacts in the fallback order (what the page tries, first to last)."""
    entries = {a.get("id"): a for a in bundle_doc.get("artifacts") or [] if isinstance(a, dict)}
    return [entries[i] for i in bundle_doc.get("fallback_order") or [] if (entries.get(i) or {}).get("format") == "web"]


def vad_task(bundle_doc: dict[str, Any]) -> dict[str, Any]:
    """The bundle's voice_activity task record: bundle.json's ``task``, else its first web
    artifact's; checked by the stream glue's rules (``tasks.vad.params``), as JSON."""
    from ..tasks.vad import params

    web = _web_entries(bundle_doc)
    task = bundle_doc.get("task") or (web[0].get("task") if web else None)
    if not isinstance(task, dict):
        raise FormatError("bundle.json: no task record (the voice-activity page reads a voice_activity task)",
                          hint="make the bundle from a model whose task is voice_activity")
    if task.get("kind") != "voice_activity":
        raise FormatError(f"bundle.json: task kind {task.get('kind')!r}, the voice-activity page reads "
                          "'voice_activity' tasks", hint="write the page for a voice-activity bundle only")
    params(task)  # a FormatError naming the field when the glue could not run it
    return dict(task)


def write_vad_web(bundle_folder: Path, bundle_doc: dict[str, Any]) -> list[Path]:
    """Write ``integration/web/vad.html``, ``edgeship-vad.js`` and ``edgeship-vad-bundle.js`` into
    ``bundle_folder`` (the artifacts already under ``artifacts/``); return the files written.
    Nothing is written (an empty list) when the fallback order has no web artifact: no browser
    could run the model. A task that is not a voice_activity one is a FormatError."""
    from .._version import __version__

    if not _web_entries(bundle_doc):
        return []
    task = vad_task(bundle_doc)
    name = bundle_doc.get("name") or "voice activity"
    version = bundle_doc.get("version")
    ctx = {"edgeship_version": __version__, "title": f"{name} {version}" if version else str(name), "task": task}
    env = _env()
    written = []
    for rel, template in ((VAD_SCRIPT, "edgeship-vad.js.j2"), (VAD_BUNDLE_SCRIPT, "edgeship-vad-bundle.js.j2"),
                          (VAD_PAGE, "vad.html.j2")):
        path = Path(bundle_folder) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(ctx), encoding="utf-8")
        written.append(path)
    return written
