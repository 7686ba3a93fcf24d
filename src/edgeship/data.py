"""Real inputs: the sample photos shipped by scikit-image, image preprocessing, and the
calibration/evaluation data every quantiser and verification reads (one sampler).

Preprocessing follows an artifact's :class:`~edgeship.artifact.Preprocess` spec exactly, so the
Python classifier, verification and (later) the generated app code agree on one definition.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import InputError, UsageError
from .readers import read_bytes, read_text
from .readers.arrays import read_arrays
from .readers.images import IMAGE_LIMIT, decode_image, to_rgb

if TYPE_CHECKING:
    from .artifact import Preprocess, TensorSpec
    from .config import DeployConfig


class SourceLike(Protocol):
    """What the data functions read of a model (:class:`edgeship.sources.Source` is one): its
    inputs and outputs, preprocessing, labels, own sample inputs and tokenizer, and its default
    calibration and evaluation inputs."""

    @property
    def inputs(self) -> Sequence[TensorSpec]: ...
    @property
    def outputs(self) -> Sequence[TensorSpec]: ...
    @property
    def preprocess(self) -> Preprocess | None: ...
    @property
    def labels(self) -> Sequence[str] | None: ...
    @property
    def sample_inputs(self) -> Sequence[Sequence[np.ndarray]] | None: ...
    @property
    def tokenize(self) -> Callable[[list[str]], Any] | None: ...
    @property
    def task(self) -> Any: ...
    def calibration_inputs(self, limit: int = 64) -> list[tuple[np.ndarray, ...]]: ...
    def evaluation_inputs(self, limit: int = 64) -> list[tuple[np.ndarray, ...]]: ...
    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]: ...

# Colour photos that scikit-image ships inside its wheel (no download needed): what verification
# runs on, and what the default evaluation (the int8 budget, every choice between recipes) is cut from.
SAMPLE_PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "motorcycle")
#: what the default calibration is cut from: the wheel's other images, whole, so calibration (and
#: anything learned from it, like AdaRound's rounding) is never judged on a photo it saw
CALIBRATION_PHOTOS = ("camera", "coins", "moon", "clock", "hubble_deep_field", "immunohistochemistry", "retina", "brick",
                      "grass", "gravel", "cell", "page")


def sample_photos(names: tuple[str, ...] = SAMPLE_PHOTOS) -> dict[str, np.ndarray]:
    """name -> HxWx3 uint8 RGB photo, from scikit-image's bundled data (grey ones as RGB)."""
    try:
        import skimage.data as d
    except ImportError as e:  # pragma: no cover - core dependency
        raise InputError("scikit-image is needed for the sample photos",
                         hint="pip install scikit-image") from e
    out = {}
    for name in names:
        out[name] = load_image(d.stereo_motorcycle()[0] if name == "motorcycle" else getattr(d, name)())
    return out


def load_image(image: Any) -> np.ndarray:
    """A path, encoded bytes (as an app sends them), a PIL image or an HxWx{1,3,4} array -> HxWx3
    uint8 RGB."""
    from PIL import Image

    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(io.BytesIO(image), "the image bytes")
    if isinstance(image, (str, Path)):
        p = Path(image)
        data = read_bytes(p, "image", max_bytes=IMAGE_LIMIT, hint="give the path of a JPEG or PNG file")
        return decode_image(io.BytesIO(data), str(p))
    if isinstance(image, Image.Image):
        return to_rgb(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InputError(f"an image array must be HxW or HxWxC (C=1,3,4), got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def preprocess_image(image: Any, spec: Preprocess) -> np.ndarray:
    """One image -> the model input tensor with a batch axis of 1, as ``spec`` says."""
    from PIL import Image

    rgb = load_image(image)
    im = Image.fromarray(rgb)
    w, h = im.size
    # resize so the centre crop of size (height, width) is crop_fraction of the shorter side
    scale = max(spec.height / (h * spec.crop_fraction), spec.width / (w * spec.crop_fraction))
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[spec.resample]
    nw, nh = max(spec.width, round(w * scale)), max(spec.height, round(h * scale))
    im = im.resize((nw, nh), resample)
    left, top = (nw - spec.width) // 2, (nh - spec.height) // 2
    im = im.crop((left, top, left + spec.width, top + spec.height))
    x = np.asarray(im, dtype=np.float32)
    if spec.color == "BGR":
        x = x[..., ::-1]
    if spec.dtype == "uint8":
        x = x.astype(np.uint8)
    else:
        x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


def augmented_crops(spec: Preprocess, n: int, seed: int, names: tuple[str, ...] = SAMPLE_PHOTOS) -> list[np.ndarray]:
    """``n`` model inputs from random crops of the photos ``names`` (area 25–100 %, aspect 3:4–4:3,
    horizontal flips), preprocessed by ``spec``: evaluation crops :data:`SAMPLE_PHOTOS`,
    calibration :data:`CALIBRATION_PHOTOS` (no photo in both)."""
    photos = list(sample_photos(names).values())
    rng = np.random.default_rng(seed)
    full = spec.model_copy(update={"crop_fraction": 1.0})
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        area = rng.uniform(0.25, 1.0) * h * w
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch = int(min(h, round(np.sqrt(area / aspect))))
        cw = int(min(w, round(np.sqrt(area * aspect))))
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        crop = img[top:top + ch, left:left + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(preprocess_image(np.ascontiguousarray(crop), full))
    return out


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays from a .npy or .npz file (:func:`edgeship.readers.arrays.read_arrays`: never unpickling;
    numbers only, at least one axis, finite)."""
    return read_arrays(path)


# ---- calibration and evaluation data: an image folder, a .npy/.npz file, a text file, a callable --
# Each sample is a tuple of arrays with a batch axis of 1, in the order of the model's inputs.
# Images go through the model's own preprocessing; a text file (one sentence per line) through the
# model's own tokenizer, when its factory gives one (``TorchModel.tokenize``). Ground-truth labels
# come with the data when it has them, so label accuracy is measured beside agreement with fp32:
# an image folder whose sub-folders are named after the model's labels (``cat/1.jpg``), or, for a
# model without labels, one sub-folder per class taken in sorted order (torchvision's ImageFolder);
# an ``.npz`` with arrays ``x`` (inputs) and ``y`` (class indices); a callable yielding ``(x, y)``
# pairs (one-input models) or dicts with the inputs by name and ``y``.

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

Samples = list[tuple[np.ndarray, ...]]


def load_samples(spec: str | None, source: SourceLike, limit: int, purpose: str) -> tuple[Samples, list[int] | None]:
    """(samples, ground-truth label indices or None). ``spec`` None: the source's own defaults,
    kept apart (calibration: augmented crops with one seed; evaluation: photos + crops, another)."""
    if is_stream(source):
        return stream_samples(spec, source, limit, purpose), None
    if spec is None:
        s = source.calibration_inputs(limit) if purpose == "calibration" else source.evaluation_inputs(limit)
        return s, None
    p = Path(spec)
    if p.is_dir():
        return _image_folder(p, source, limit, purpose)
    if p.exists() and p.suffix.lower() == ".txt":
        return _text_file(p, source, limit, purpose), None
    if p.exists():  # a FIFO or a device is refused by the reader, before anything opens it
        arrays = load_arrays(p)
        labels = _labels_array(arrays, source, str(p))
        return _split_arrays(arrays, source, limit, str(p)), (labels[:limit] if labels is not None else None)
    if ":" in spec:
        return _callable(spec, source, limit)
    raise InputError(f"no such {purpose} data: {spec}",
                     hint="give an image folder, a .npy/.npz file, a .txt of sentences (text models), "
                          "or a callable 'package.module:function'")


TEXT_FILE_LIMIT = 64 << 20  # bytes of a sentences file read at most


def _text_file(path: Path, source: SourceLike, limit: int, purpose: str) -> Samples:
    """One sample per non-empty line of ``path``, through the factory's own tokenizer."""
    if source.tokenize is None:
        raise UsageError(f"a text file as {purpose} data ({path}) needs the model's tokenizer",
                         hint="return edgeship.TorchModel(..., tokenize=fn) from the factory (fn: list of strings -> "
                              "the model's inputs), or give token ids in a .npz named after the model's inputs")
    text = read_text(path, "text file of sentences", max_bytes=TEXT_FILE_LIMIT,
                     hint="give a few hundred sentences, one per line, as UTF-8")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()][:limit]
    if not lines:
        raise InputError(f"{path} holds no sentences", hint="write one sentence per line")
    try:
        made = source.tokenize(lines)
    except Exception as e:  # noqa: BLE001 - the user's tokenizer failed: say where
        raise InputError(f"the model's tokenizer failed on {path}: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
                         hint="check the factory's tokenize function on a few of these lines") from None
    names = [i.name for i in source.inputs]
    if isinstance(made, dict):
        arrays = {str(k): np.asarray(v) for k, v in made.items()}
    else:
        made = made if isinstance(made, (tuple, list)) else (made,)
        if len(made) != len(names):
            raise InputError(f"the model's tokenizer gave {len(made)} arrays for {path}; the model takes {len(names)} "
                             f"inputs ({', '.join(names)})", hint="return one array per model input, or a dict by input name")
        arrays = {n: np.asarray(a) for n, a in zip(names, made)}
    _same_tokens(source, lines, arrays, path)
    for n, a in arrays.items():
        if a.ndim == 0 or len(a) != len(lines):
            raise InputError(f"the model's tokenizer gave {n!r} with shape {a.shape} for {len(lines)} sentences",
                             hint="return arrays with one row per sentence")
    return _split_arrays(arrays, source, limit, f"{path} (tokenized)")


def _same_tokens(source: SourceLike, lines: list[str], arrays: dict[str, np.ndarray], path: Path) -> None:
    """A model whose task ships a WordPiece tokenizer (the release's, :mod:`edgeship.tasks.text`)
    and whose factory gives its own: both must give the same token ids on the data, or the release
    would tokenise otherwise than the model was made for."""
    task = getattr(source, "task", None)
    if getattr(task, "kind", None) != "embedding" or getattr(task, "tokenizer", None) != "wordpiece":
        return
    from .readers.tokenizer import read_tokenizer
    from .tasks.text import WordPiece

    ours = WordPiece(read_tokenizer(task.vocabulary)[0], task).batch(lines)
    theirs = arrays.get(task.ids_input)
    if theirs is None:
        return
    a, b = np.asarray(ours[task.ids_input]), np.asarray(theirs)
    for i in range(len(lines)):
        x, y = a[i].tolist(), b[i].tolist()
        if x != y:
            raise InputError(f"{path}: the release's WordPiece tokenizer and the model's own disagree on line {i + 1} "
                             f"({lines[i][:60]!r}): {x[:12]} vs {y[:12]}",
                             hint="check the task record's tokenizer fields (lowercase, strip_accents, max_length) "
                                  "against the model's tokenizer.json")


#: an evaluation cut from fewer distinct photos (or files) than this is called small where its figures are shown
SMALL_EVALUATION = 20


def small_evaluation(q: Any) -> str | None:
    """The caution for a quantisation record ``q`` (``details.quantization``) whose evaluation was
    cut from fewer than :data:`SMALL_EVALUATION` distinct images; None otherwise."""
    n = q.get("eval_sources") if isinstance(q, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n >= SMALL_EVALUATION:
        return None
    return (f"the evaluation holds {q.get('eval_samples')} inputs cut from only {n} distinct images: its figures are "
            "rough; give --eval with a few hundred of your own")


def distinct_sources(spec: str | None, source: SourceLike, purpose: str, used: int) -> int | None:
    """How many distinct source images (or files) ``used`` samples of ``purpose`` data come from:
    the default photos' count, an image folder's files; None when the data cannot say (arrays, a
    callable, random inputs)."""
    if spec is None:
        if source.sample_inputs or source.preprocess is None or len(source.inputs) != 1:
            return None
        return min(used, len(CALIBRATION_PHOTOS if purpose == "calibration" else SAMPLE_PHOTOS))
    p = Path(spec)
    return used if p.is_dir() else None


def calibration_samples(source: SourceLike, cfg: DeployConfig) -> Samples:
    """Static-quantisation inputs for any target: ``--calib`` data when given, else the source's own
    calibration inputs (augmented crops, kept apart from the evaluation inputs); ``--calib-samples``."""
    return load_samples(getattr(cfg, "calib", None), source, int(getattr(cfg, "calib_samples", 128)), "calibration")[0]


def _image_folder(folder: Path, source: SourceLike, limit: int, purpose: str) -> tuple[Samples, list[int] | None]:
    if source.preprocess is None or len(source.inputs) != 1:
        raise UsageError(f"an image folder as {purpose} data needs an image model with preprocessing",
                         hint="give a .npy/.npz file or a callable instead")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise InputError(f"{folder} holds no images", hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}")
    files = files[:limit]
    samples = [(preprocess_image(f, source.preprocess),) for f in files]
    labels = None
    if source.labels:
        index = {lab.lower(): i for i, lab in enumerate(source.labels)}
        for i, lab in enumerate(source.labels):  # 'tabby, tabby cat' also answers to 'tabby'
            for alias in lab.lower().split(","):
                index.setdefault(alias.strip(), i)
        found = [index.get(f.parent.name.lower(), index.get(f.parent.name.lower().replace("_", " "))) for f in files]
        if all(x is not None for x in found) and any(f.parent != folder for f in files):
            labels = [int(x) for x in found]  # type: ignore[arg-type]
    elif all(f.parent != folder for f in files):  # no labels to match: one sub-folder per class, sorted
        classes = sorted({f.parent.relative_to(folder).parts[0] for f in files})
        width = source.outputs[0].shape[-1] if source.outputs and source.outputs[0].shape else None
        if len(classes) > 1 and (not isinstance(width, int) or len(classes) <= width):
            labels = [classes.index(f.parent.relative_to(folder).parts[0]) for f in files]
    return samples, labels


def _labels_array(arrays: dict[str, np.ndarray], source: SourceLike, where: str) -> list[int] | None:
    """An ``.npz``'s ``y`` (class indices) when its inputs are ``x`` or named after the model's
    inputs; ``x`` is then the one input. Both are checked here: ``y`` one integer per sample."""
    names = [i.name for i in source.inputs]
    if "y" not in arrays or "y" in names:
        return None
    y = arrays.pop("y")
    if "x" in arrays and "x" not in names:
        if len(names) != 1:
            raise InputError(f"{where}: 'x' holds one input, the model takes {len(names)} ({', '.join(names)})",
                             hint="name each input array after a model input, beside 'y'")
        arrays[names[0]] = arrays.pop("x")
    n = len(next(iter(arrays.values()))) if arrays else 0
    if y.ndim != 1 or len(y) != n or not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)):
        raise InputError(f"{where}: 'y' must hold one integer class index per sample ({n}); it has shape {y.shape} "
                         f"and type {y.dtype}", hint="save y as integers: np.savez(path, x=x, y=y.astype(np.int64))")
    return [int(v) for v in y]


def _split_arrays(arrays: dict[str, np.ndarray], source: SourceLike, limit: int, where: str) -> Samples:
    names = [i.name for i in source.inputs]
    if len(arrays) == 1 and len(names) == 1:
        cols = [next(iter(arrays.values()))]
    else:
        missing = [n for n in names if n not in arrays]
        if missing:
            raise InputError(f"{where} has arrays {sorted(arrays)}, the model takes {names}",
                             hint="name each array in the .npz after a model input")
        cols = [arrays[n] for n in names]
    n = min(len(c) for c in cols)
    if any(len(c) != n for c in cols):
        raise InputError(f"{where}: the arrays hold different numbers of samples ({[len(c) for c in cols]})")
    whole = []  # per input: does one row hold a whole input tensor (a scalar, a state laid out (layers, batch, hidden))?
    for spec, c in zip(source.inputs, cols):
        if c.ndim == len(spec.shape) + 1 and spec.fits(tuple(c.shape[1:])):
            whole.append(True)
        elif c.ndim == len(spec.shape) and c.ndim and spec.fits((1, *c.shape[1:])):
            whole.append(False)
        else:
            raise InputError(f"{where}: samples of {spec.name!r} have shape {tuple(c.shape[1:])}, the model takes "
                             f"{list(spec.shape)}",
                             hint="the first axis counts samples; each row is one input tensor whole (a scalar: one "
                                  "value per row) or, for an input whose first axis is its batch, that input at batch 1")
    # np.array, not ascontiguousarray: that makes a 0-d row 1-d
    return [tuple(np.array(c[i] if w else c[i:i + 1], dtype=s.dtype, order="C") for c, s, w in zip(cols, source.inputs, whole))
            for i in range(min(n, limit))]


def _callable(ref: str, source: SourceLike, limit: int) -> tuple[Samples, list[int] | None]:
    mod, _, attr = ref.rpartition(":")
    try:
        fn = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise InputError(f"cannot load data callable {ref!r}: {e}") from None
    out: Samples = []
    labels: list[int] = []
    for item in fn():
        if len(out) >= limit:
            break
        label = None
        if isinstance(item, dict):
            label = item.get("y")
            item = tuple(item[i.name] for i in source.inputs)
        elif not isinstance(item, (tuple, list)):
            item = (item,)
        elif len(source.inputs) == 1 and len(item) == 2 and np.ndim(item[1]) == 0:  # (x, y)
            item, label = (item[0],), item[1]
        arrs = tuple(np.asarray(a) for a in item)
        arrs = tuple(a[None] if a.ndim == len(s.shape) - 1 else a for a, s in zip(arrs, source.inputs))
        out.append(arrs)
        if label is not None:
            labels.append(int(label))
    if not out:
        raise InputError(f"data callable {ref!r} yielded no samples")
    if labels and len(labels) != len(out):
        raise InputError(f"data callable {ref!r} gave a label (y) with {len(labels)} of its {len(out)} samples",
                         hint="yield (x, y) for every sample, or x alone for every sample")
    return out, (labels or None)


# ---- streams: audio in chunks through a model that carries its state ------------------------------
# A stream task (edgeship.tasks STREAM_KINDS: voice_activity) makes its data streams, not independent
# samples: .wav recordings (a folder, or one file) resampled to the model's rate, cut into chunks as
# the task declares. Each sample is one call of the model (one chunk) with the state the ORIGINAL
# model carries into it at that point of its stream (teacher forcing: what calibration needs, the
# states a deployed model meets), and the set knows where each stream starts, so verification and
# the int8 budget run every artifact as a stream with its OWN state carried (its errors accumulate
# as they would on a device): :func:`edgeship.verify.run_samples`.

WAV_SUFFIXES = {".wav", ".wave"}


class StreamSamples(list):  # type: ignore[type-arg]
    """Per-chunk model inputs of one or more streams (a list of sample tuples, as every sampler
    gives), with ``starts`` (the index of each stream's first chunk), ``lengths`` (each stream's
    samples before chunking), ``names`` (where each stream came from), ``origin`` (in words) and
    ``real`` (recordings, not synthesis)."""

    def __init__(self, feeds: list[tuple[np.ndarray, ...]], starts: Sequence[int], lengths: Sequence[int],
                 names: Sequence[str], origin: str, real: bool) -> None:
        super().__init__(feeds)
        self.starts, self.lengths, self.names = tuple(starts), tuple(lengths), tuple(names)
        self.origin, self.real = origin, real

    def streams(self) -> list[tuple[int, int]]:
        """(first, end) chunk index of each stream."""
        ends = [*self.starts[1:], len(self)]
        return list(zip(self.starts, ends))


def is_stream(source: Any) -> bool:
    """Whether ``source``'s task record is a stream's (its model carries a state between calls)."""
    from .tasks.records import STREAM_KINDS

    task = getattr(source, "task", None)
    return task is not None and getattr(task, "kind", None) in STREAM_KINDS


#: seconds of synthetic speech-like audio per default stream (a stream is long enough for its state to matter)
SYNTHETIC_STREAM_SECONDS = 12.0


def stream_audio(spec: str | None, rate: int, chunks: int, chunk: int, purpose: str) -> tuple[list[tuple[str, np.ndarray]], str, bool]:
    """The recordings of ``spec`` at ``rate`` (a folder of .wav files or one .wav file), enough for
    ``chunks`` chunks of ``chunk`` samples where the data has them; ``spec`` None: synthetic
    speech-like audio (:func:`speech_like`; not real data, said so). Returns (named audio,
    origin in words, real)."""
    from .readers.audio import read_audio_folder, read_wav, resample

    need = chunks * chunk
    if spec is None:
        seed = 2 if purpose == "calibration" else 1
        out, have, k = [], 0, 0
        while have < need:
            seconds = min(SYNTHETIC_STREAM_SECONDS, max(1.0, (need - have) / rate + 0.5))
            audio, _ = speech_like(seconds, seed * 1000 + k, rate)
            out.append((f"synthetic-{seed}-{k}", audio))
            have += len(audio)
            k += 1
        return out, ("synthetic speech-like audio (not real data: give --eval / --calib a folder of .wav "
                     "recordings)"), False
    p = Path(spec)
    if p.is_dir():
        return read_audio_folder(p, rate), f"recordings in {p}", True
    if p.exists() and p.suffix.lower() in WAV_SUFFIXES:
        audio, got = read_wav(p)
        return [(p.name, resample(audio, got, rate))], f"recording {p}", True
    if p.exists():
        raise UsageError(f"{spec}: a stream model's {purpose} data is audio",
                         hint="give a folder of .wav files (any rate, mono or stereo: resampled to the model's rate, "
                              "mixed to mono) or one .wav file")
    raise InputError(f"no such {purpose} data: {spec}", hint="give a folder of .wav files or one .wav file")


def stream_samples(spec: str | None, source: SourceLike, limit: int, purpose: str) -> StreamSamples:
    """``limit`` chunks of streams (:func:`stream_audio`), each a full model call with the state
    the source carries into it (run here, once)."""
    from .tasks.vad import chunk_inputs, params, run_stream

    task = source.task
    p = params(task)
    audio, origin, real = stream_audio(spec, p.sample_rate, limit, p.chunk, purpose)
    names = [i.name for i in source.inputs]
    specs = [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in source.inputs]
    out_names = [o.name for o in source.outputs]

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(out_names, source.run([feed[n] for n in names])))

    feeds: list[tuple[np.ndarray, ...]] = []
    starts, lengths, used = [], [], []
    for name, samples in audio:
        rows = chunk_inputs(samples, task)[: limit - len(feeds)]
        if not len(rows):
            continue
        calls: list[dict[str, np.ndarray]] = []
        run_stream(run, rows, task, specs, record=calls)
        starts.append(len(feeds))
        lengths.append(min(len(samples), len(rows) * p.chunk))
        used.append(name)
        feeds += [tuple(np.asarray(c[n]) for n in names) for c in calls]
        if len(feeds) >= limit:
            break
    if not feeds:
        raise InputError(f"{spec or 'the default audio'} holds no audio to stream",
                         hint=f"give .wav recordings of at least {p.chunk} samples at {p.sample_rate} Hz")
    return StreamSamples(feeds, starts, lengths, used, origin, real)


def run_streams(run: Callable[[list[np.ndarray]], list[np.ndarray]], samples: StreamSamples, task: Any,
                inputs: Sequence[TensorSpec], outputs: Sequence[str]) -> list[list[np.ndarray]]:
    """A model's outputs on ``samples``, stream after stream, call after call, with its OWN carried
    outputs fed back (zeros at each stream's start), so the errors that build up in its state
    count. ``run`` takes the inputs in ``inputs``' order and gives the outputs in ``outputs``' order
    (the model under test: an artifact's runner, an ONNX Runtime session, the source)."""
    from .tasks.vad import run_stream

    names = [i.name for i in inputs]
    specs = [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in inputs]
    audio = names.index(getattr(task, "audio_input", names[0]))

    def call(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(outputs, run([feed[n] for n in names])))

    got: list[list[np.ndarray]] = []
    for first, end in samples.streams():
        rows = np.concatenate([np.asarray(samples[i][audio]) for i in range(first, end)])
        _, outs = run_stream(call, rows, task, specs)
        got += [[np.asarray(o[n]) for n in outputs] for o in outs]
    return got


def speech_like(seconds: float, seed: int, rate: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """(audio float32 in [-1, 1] at ``rate``, per-sample truth: 1 inside a voiced segment).
    Synthetic, not real speech: voiced segments are a glottal-like harmonic series on a gliding f0
    (90-260 Hz, jitter and vibrato) shaped by three formant resonances that move from syllable to
    syllable (a vowel every 120-250 ms, short noise bursts for consonants) under a syllabic
    envelope; between them 0.3-1.2 s of silence with low room noise and mains hum."""
    rng = np.random.default_rng(seed)
    sr = rate
    n = int(seconds * sr)
    audio = np.zeros(n, dtype=np.float64)
    truth = np.zeros(n, dtype=np.int8)
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410),
              (440, 1020, 2240), (660, 1720, 2410), (490, 1350, 1690)]
    t = int(rng.uniform(0.2, 0.6) * sr)
    while t < n - sr // 2:
        seg = int(rng.uniform(0.6, 2.2) * sr)
        seg = min(seg, n - t - sr // 4)
        f0 = np.linspace(rng.uniform(90, 260), rng.uniform(90, 260), seg) * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * np.arange(seg) / sr))
        f0 *= 1 + 0.01 * rng.standard_normal(seg).cumsum() / np.sqrt(np.arange(1, seg + 1))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        syl, q = [], 0
        while q < seg:
            syl.append(q)
            q += int(rng.uniform(0.12, 0.25) * sr)
        syl.append(seg)
        fm = np.zeros((3, seg))
        env = np.zeros(seg)
        for a, b in zip(syl[:-1], syl[1:]):
            v = np.array(vowels[rng.integers(len(vowels))]) * rng.uniform(0.9, 1.15)
            fm[:, a:b] = v[:, None]
            env[a:b] = np.sin(np.pi * np.linspace(0, 1, b - a)) ** 0.6 * rng.uniform(0.5, 1.0)
        k = int(0.03 * sr)
        for i in range(3):
            fm[i] = np.convolve(np.pad(fm[i], (k, k), mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), "valid")[:seg]
        voice = np.zeros(seg)
        for h in range(1, 40):
            fh = h * f0
            alive = fh < sr / 2 - 200
            if not alive.any():
                break
            gain = np.zeros(seg)
            for i, bw in enumerate((80, 100, 140)):
                gain += (1.0 / (1 + ((fh - fm[i]) / bw) ** 2)) * (0.9 ** i)
            voice += alive * gain * np.sin(h * phase + rng.uniform(0, 2 * np.pi)) / h ** 0.7
        for a in syl[:-1]:  # consonant bursts at some syllable starts
            if rng.random() < 0.4:
                length = int(rng.uniform(0.03, 0.07) * sr)
                burst = rng.standard_normal(min(length, seg - a))
                burst = np.diff(burst, prepend=0) * np.hanning(len(burst))
                voice[a:a + len(burst)] += 0.3 * burst
        voice *= env
        voice /= np.abs(voice).max() + 1e-9
        audio[t:t + seg] += voice * rng.uniform(0.25, 0.7)
        truth[t:t + seg] = 1
        t += seg + int(rng.uniform(0.3, 1.2) * sr)
    noise = np.convolve(rng.standard_normal(n), np.ones(8) / 8, "same")  # room noise, low-passed
    audio += noise * rng.uniform(0.002, 0.01) + 0.003 * np.sin(2 * np.pi * 50 * np.arange(n) / sr)
    return np.clip(audio, -1, 1).astype(np.float32), truth
