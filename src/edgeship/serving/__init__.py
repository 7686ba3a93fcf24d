"""``edgeship serve ARTIFACT``: an artifact, or a release bundle, behind HTTP, as a cloud
deployment of it would run.

starlette + uvicorn. Routes:

``POST /v1/classify``  the image's bytes as an app sends them (``image/jpeg``, ``image/png``, ...),
                      or a form upload (``multipart/form-data``, ``curl -F file=@photo.jpg``: the
                      part named ``file`` or ``image``, else the first file part): the artifact's
                      own preprocessing, top-k labels back (JSON)
``POST /v1/infer``     tensors: JSON ``{"inputs": {NAME: nested lists}}`` (or a list in the model's
                      input order), or one ``.npy`` (``application/x-npy``) for a single-input model;
                      the outputs back as JSON lists
``POST /v1/ocr``       a pipeline's release bundle: a page's image, taken as ``/v1/classify`` takes
                      one; every text line back, ``{"lines": [{"box", "text", "score", "turned"}],
                      "text", "served_by", "ms"}`` (what ``Pipeline.read`` gives)
``POST /v1/stream``    a voice-activity release bundle (``PUT`` too, as ``curl -T -`` sends): the
                      audio read as it arrives (``audio/wav`` whole; ``audio/L16;rate=N`` raw 16-bit,
                      ``audio/x-float32;rate=N`` or ``application/octet-stream`` raw float32,
                      little-endian, decoded and resampled as they arrive), NDJSON back as its chunks
                      run: ``{"chunk", "t", "p"}`` per chunk, ``{"segment": {"start", "end",
                      "samples"}}`` once a segment is settled, last ``{"done", "segments", "chunks",
                      "seconds", "rtf", "served_by"}`` (``Stream.run``'s segments); each request a
                      stream with its own state; an error after the first line is an ``{"error",
                      "status"}`` line
``POST /v1/embed``     an embedding release bundle: ``{"texts": [...]}`` -> ``{"embeddings", "dim",
                      "tokens", "served_by"}`` (``Embedder.embed``'s float32 values, exact in JSON)
``GET /healthz``       200 once the model is loaded: what is served (``task``, the artifact or, from
                      a bundle, ``served_by`` and ``skipped``) and its ``routes``
``GET /metrics``       Prometheus text: requests by route and status, latency, queue wait, batch
                      sizes, requests in flight and queued

A route that does not fit what is served (``/v1/classify`` on a pipeline, ``/v1/ocr`` on one
model, ``/v1/embed`` on a stream) is a 404 naming the route that does. A classifier's release bundle serves the artifact its
fallback order takes here (the first that loads and passes its golden vectors); a pipeline's, the
first measured artifact set that does (:class:`edgeship.runtime.Pipeline`).

Bad uploads are 4xx with a reason, never a 500: a body over the size limit (413), a content type
the route does not take (415), bytes that are not an image, JSON that is not JSON (400), a tensor
of the wrong shape or type (422); an upload that is not an image is named by what arrived (its
file name, size and content type). The model runs on one worker thread; with ``max_batch`` > 1,
requests that arrive within ``max_wait_ms`` of the first are stacked along the batch axis and run
as one call (when every input's first axis is dynamic; a pipeline reads one page at a time).
A stream's chunk groups and an embedding's texts run on the same worker thread, one call at a
time. uvicorn stops on SIGINT/SIGTERM after the requests in flight are answered.

Multipart bodies are parsed with python-multipart (the parser starlette's own forms use) when it is
installed, else with the standard library's MIME parser; either way only after the whole body is
read within ``max_body_bytes``, in memory, with no temporary files.
"""

from .app import ServeConfig, bind, make_app, run_on, serve, url_of
from .inputs import IMAGE_TYPES

__all__ = ["ServeConfig", "make_app", "serve", "bind", "url_of", "run_on", "IMAGE_TYPES"]
