"""The one artifact type that flows through every stage.

An :class:`Artifact` is frozen: a stage that changes a model returns a new artifact whose
provenance names its parent's digest. On disk an artifact is a folder holding its model files
and ``artifact.json`` (this record without the labels, which live in ``labels.txt``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, model_validator
from pydantic_core import PydanticCustomError, core_schema

from ._util import MAX_DIM, MAX_EXAMPLE_BYTES, confined, example_bytes
from .errors import FormatError, InputError, strip_escapes
from .tasks.records import Task

__all__ = [
    "Format",
    "register_format",
    "TensorSpec",
    "Preprocess",
    "FileEntry",
    "Provenance",
    "OutputCheck",
    "Verification",
    "VerificationStatus",
    "verification_status",
    "Artifact",
    "check_shapes",
    "clean_labels",
    "sha256_file",
    "read_artifact",
    "validation_detail",
]

ARTIFACT_JSON = "artifact.json"
LABELS_TXT = "labels.txt"


class _Formats(type):
    """Format's type: iterating ``Format`` gives every registered format, in registration order."""

    def __iter__(cls) -> Iterator[Format]:
        return iter(tuple(_FORMATS.values()))

    def __len__(cls) -> int:
        return len(_FORMATS)


class Format(str, metaclass=_Formats):
    """An on-disk model format: a name registered by the target that writes it
    (:func:`register_format`), so a runtime with a new file format is one module. Those edgeship
    ships are class attributes (``Format.onnx``). A format is its plain name (equal to it, written
    as it in JSON; ``.value`` and ``.name`` say it too); ``Format("onnx")`` is the registered one,
    a ValueError for a name no target registered, and a record naming one is refused."""

    torch: ClassVar[Format]
    onnx: ClassVar[Format]
    ort: ClassVar[Format]
    tflite: ClassVar[Format]
    coreml: ClassVar[Format]
    pte: ClassVar[Format]
    openvino: ClassVar[Format]
    web: ClassVar[Format]  # an ONNX model with onnxruntime-web vendored beside it

    def __new__(cls, value: object) -> Format:
        known = _FORMATS.get(value) if isinstance(value, str) else None
        if known is None:
            raise ValueError(f"{value!r} is not a valid Format")
        return known

    @property
    def value(self) -> str:
        return str.__str__(self)

    @property
    def name(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"<Format.{self.value}: {self.value!r}>"

    def __reduce__(self) -> tuple[Any, tuple[str]]:  # another process knows it once unpickled
        return register_format, (self.value,)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_format, json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str.__str__, when_used="json"))


_FORMATS: dict[str, Format] = {}


def register_format(name: str) -> Format:
    """The format named ``name``, registered if new (a target's module calls this for the format it
    writes, or :func:`edgeship.register_target` for a target declaring a plain name)."""
    name = str.__str__(name)
    if not name or name != name.strip() or not name.isprintable():
        raise ValueError(f"{name!r} is not a format name")
    if name not in _FORMATS:
        fmt = str.__new__(Format, name)
        _FORMATS[name] = fmt
        if name.isidentifier() and not hasattr(Format, name):
            setattr(Format, name, fmt)
    return _FORMATS[name]


def _validate_format(value: Any) -> Format:
    """A record's format: a registered one, else the error the closed list gave ("Input should be
    'torch', 'onnx', ... or 'web'"), naming every registered format."""
    if isinstance(value, str) and value in _FORMATS:
        return _FORMATS[value]
    names = [repr(f.value) for f in Format]
    expected = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise PydanticCustomError("enum", "Input should be {expected}", {"expected": expected})


for _name in ("torch", "onnx", "ort", "tflite", "coreml", "pte", "openvino", "web"):
    register_format(_name)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Frozen):
    """One model input or output. A dimension is an int, or a name when it is dynamic."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"
    layout: str | None = Field(None, description="NCHW, NHWC, or None when not an image")

    @property
    def dynamic_axes(self) -> list[int]:
        return [i for i, d in enumerate(self.shape) if not isinstance(d, int)]

    def concrete_shape(self, batch: int = 1) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else batch for d in self.shape)

    def fits(self, shape: tuple[int, ...]) -> bool:
        if len(shape) != len(self.shape):
            return False
        return all(not isinstance(d, int) or d == s for d, s in zip(self.shape, shape))


_Finite = Annotated[float, Field(allow_inf_nan=False)]
_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Preprocess(_Frozen):
    """How a raw RGB image becomes the model's input tensor.

    ``x = (pixel - mean) / std`` with pixels in 0..255, after resizing the shorter side to
    ``size / crop_fraction`` and taking the centre ``size`` crop.
    """

    kind: Literal["image"] = "image"
    input: str = Field(description="the model input this preprocessing feeds")
    height: int = Field(gt=0, le=16384)
    width: int = Field(gt=0, le=16384)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[_Finite, _Finite, _Finite] = (127.0, 127.0, 127.0)
    std: tuple[_Positive, _Positive, _Positive] = (128.0, 128.0, 128.0)
    crop_fraction: float = Field(0.875, gt=0, le=1)
    resample: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    dtype: Literal["float32", "uint8"] = "float32"
    output: Literal["logits", "probabilities"] = "logits"


class FileEntry(_Frozen):
    path: str = Field(description="relative to the artifact folder")
    sha256: str
    size: int


class Provenance(_Frozen):
    stage: str
    parent_digest: str | None = None
    source: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    tool_versions: dict[str, str] = Field(default_factory=dict)


class OutputCheck(_Frozen):
    name: str
    max_abs: float
    max_rel: float = Field(description="max abs error divided by the largest |reference| value")
    mean_abs: float
    cosine: float = Field(1.0, description="cosine similarity of the flattened output with the reference")
    sqnr_db: float | None = Field(None, description="signal-to-quantisation-noise ratio, dB (None when exact)")
    passed: bool
    shape: tuple[int | str, ...] | None = Field(
        None, description="the shape the artifact returned (batch axis named 'batch' when it followed the batch), "
                          "recorded only when the declared shape does not fit it")


#: how an artifact's check ended: ``verified`` (outputs compared on real inputs, or an fp32 artifact
#: compared element-wise on any inputs), ``unverified`` (a reduced precision judged only on random
#: inputs: no verdict), ``failed``, ``structural`` (the file was checked, its outputs not computed)
VerificationStatus = Literal["verified", "unverified", "failed", "structural"]
STATUSES: tuple[str, ...] = ("verified", "unverified", "failed", "structural")


def verification_status(v: Any, precision: str | None = None) -> str:
    """The status of a verification record (a :class:`Verification` or its JSON dict, as a manifest
    holds it): its ``status`` when it has one, else derived as it would have been written, so older
    records read the same way: a failed check is ``failed``; one that computed no outputs
    (``samples`` 0, a ``structural`` reference) ``structural``; a reduced precision (``precision``,
    else a rule other than fp32's element-wise one) compared on random inputs ``unverified``."""
    if isinstance(v, BaseModel):
        v = v.model_dump(mode="json")
    if not isinstance(v, dict) or not v:
        return "unverified"
    status = v.get("status")
    if status in STATUSES:
        return str(status)
    if v.get("passed") is not True:
        return "failed"
    if str(v.get("reference") or "").startswith("structural") or v.get("samples") == 0:
        return "structural"
    exact = precision == "fp32" if precision else str(v.get("criterion") or "").startswith("|err|")
    said = str(v.get("inputs") or "").lower()
    random = v.get("real_inputs") is False or (v.get("real_inputs") is None and said.startswith(("seeded random", "random")))
    return "unverified" if random and not exact else "verified"


class Verification(_Frozen):
    """How an artifact compares with its source, and on what: ``status`` is the verdict.

    ``passed`` says the check's rule held (the artifact is written); ``status`` whether that verifies
    it. Random inputs find crashes and broken conversions; they never make a reduced-precision
    artifact verified (its ``status`` is then ``unverified``). A record without ``status``
    (written before it existed) gets it derived (:func:`verification_status`).
    """

    reference: str
    samples: int
    inputs: str | None = Field(None, description="what the compared inputs were (sample photos, --eval data, random...)")
    batch_sizes: tuple[int, ...]
    atol: float
    rtol: float
    outputs: tuple[OutputCheck, ...]
    top1_agreement: float | None = None
    top5_agreement: float | None = Field(None, description="share of samples whose reference top-1 is in the top-5")
    kl_divergence: float | None = Field(None, description="mean KL(softmax(ref) || softmax(artifact)), nats")
    criterion: str = Field("", description="the pass rule that was applied")
    passed: bool = Field(description="the check's rule held (the artifact was written); whether that verifies it is "
                                     "status")
    status: VerificationStatus = Field("verified", description="verified, unverified (a reduced precision judged only on "
                                                               "random inputs), failed, or structural (outputs not computed)")
    real_inputs: bool | None = Field(None, description="the compared inputs were real data (--eval, sample inputs or photos); "
                                                       "False: seeded random inputs; None: not said (structural, older records)")
    note: str | None = Field(None, description="why the status is not verified, and what would verify it")
    first_divergence: dict[str, Any] | None = Field(
        None, description="a failed fp32 check: the first node of the reference ONNX graph whose output differs "
                          "(node, op, module, tensor, max_abs, max_rel)")
    task: dict[str, Any] | None = Field(
        None, description="the task's own measure (edgeship.tasks): speech decisions per chunk of a stream, "
                          "nearest-neighbour agreement of embeddings")

    @model_validator(mode="before")
    @classmethod
    def _derive_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and "status" not in data:
            data = {**data, "status": verification_status(data)}
        return data

    @property
    def verified(self) -> bool:
        """Verified: outputs compared and within the rule, on inputs that count as evidence."""
        return self.status == "verified"

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    def record(self) -> dict[str, Any]:
        """The JSON-ready record. Keys an older reader does not know (it refuses unknown keys) are
        written only when they say something: a status other than verified, inputs that were not
        real, a note, a first divergence, an output's observed shape."""
        out = self.model_dump(mode="json")
        for key, quiet in (("first_divergence", (None,)), ("status", ("verified",)), ("real_inputs", (True, None)),
                           ("note", (None,))):
            if out.get(key) in quiet:
                out.pop(key, None)
        for o in out.get("outputs") or []:
            if o.get("shape") is None:
                o.pop("shape", None)
        return out


class Artifact(_Frozen):
    name: str
    target: str
    format: Format
    precision: str = "fp32"
    root: Path = Field(exclude=True, description="the artifact folder")
    files: tuple[FileEntry, ...]
    model_file: str = Field(description="the file a runtime loads, relative to root")
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocess: Preprocess | None = None
    #: what the inputs are made from and the outputs mean (edgeship.tasks); None: a classifier when
    #: there is an image preprocessing, else a plain model
    task: Task | None = None
    labels: tuple[str, ...] | None = Field(None, exclude=True)
    verification: Verification | None = None
    provenance: Provenance
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = Field(default_factory=dict, description="target-specific facts (quantisation summary, delegation, ...)")

    @property
    def location(self) -> Path:
        """What load_artifact takes to load this artifact again: its folder, or for a bare model
        file (no artifact.json beside it) the file itself."""
        return self.root if (self.root / ARTIFACT_JSON).is_file() else self.model_path

    @property
    def model_path(self) -> Path:
        return self.root / self.model_file

    @property
    def digest(self) -> str:
        """sha256 over the artifact's files (path and hash of each), stable across moves."""
        h = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.path):
            h.update(f"{f.path}\0{f.sha256}\n".encode())
        return h.hexdigest()

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def record(self) -> dict[str, Any]:
        """The JSON-ready record written to artifact.json and the manifest."""
        out = self.model_dump(mode="json")
        if out.get("task") is None:  # a record an older reader (which refuses unknown keys) still takes
            out.pop("task", None)
        if self.verification is not None:  # keys only some checks fill stay out: records readable by 0.1 readers
            out["verification"] = self.verification.record()
        out["digest"] = self.digest
        out["size_bytes"] = self.size_bytes
        out["labels_file"] = LABELS_TXT if self.labels else None
        out["labels_count"] = len(self.labels) if self.labels else 0
        return out

    def verify_files(self) -> None:
        """Raise FormatError if a file is missing or its hash changed."""
        for f in self.files:
            p = self.root / f.path
            if not p.is_file():
                raise FormatError(f"artifact file missing: {p}", hint="re-run edgeship deploy")
            if sha256_file(p) != f.sha256:
                raise FormatError(f"artifact file changed since it was written: {p}",
                                  hint="its sha256 does not match artifact.json; re-run edgeship deploy")


def clean_labels(labels: Sequence[str] | None) -> tuple[str, ...] | None:
    """Labels as single printable lines (labels.txt has one per line; generated code quotes them):
    made so wherever labels are read, a model's metadata, a user's file or an artifact's labels.txt."""
    if labels is None:
        return None
    out = []
    for lab in labels:
        text = " ".join(strip_escapes(lab).split())  # escape sequences whole; newlines, tabs, spaces -> one space
        text = "".join(ch for ch in text if ch.isprintable())
        out.append(text[:256])
    return tuple(out)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entries(root: Path, names: list[str]) -> tuple[FileEntry, ...]:
    return tuple(
        FileEntry(path=n, sha256=sha256_file(root / n), size=(root / n).stat().st_size)
        for n in sorted(names)
    )


def validation_detail(e: Exception) -> str:
    """The fields a validation error names ("preprocess.height: Input should be greater than 0")."""
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(p) for p in x['loc'])}: {x['msg']}" for x in errors()[:3])[:500]
        except (TypeError, KeyError):
            pass
    return (str(e).splitlines() or [""])[0]


def _check_record(art: Artifact, meta: Path) -> None:
    """What a valid record can still get wrong, refused naming the field: a file path leaving the
    artifact's folder (the same confinement as every path read from a manifest), a dimension below 1
    or absurdly large."""
    confined(art.root, art.model_file, f"{meta}: model_file")
    for f in art.files:
        confined(art.root, f.path, f"{meta}: files")
    check_shapes(art, str(meta), "re-run edgeship deploy to rewrite it")


def check_shapes(art: Artifact, where: str, fix: str) -> None:
    """Refuse, naming ``where`` and the tensor, an input or output declaring a dimension below 1 or
    above :data:`MAX_DIM`, or an input one example of which takes more than
    :data:`~edgeship._util.MAX_EXAMPLE_BYTES` (every reader of a record or a bare model file calls
    this, so no runner allocates it)."""
    import numpy as np

    for kind, specs in (("input", art.inputs), ("output", art.outputs)):
        for s in specs:
            if any(isinstance(d, int) and not 1 <= d <= MAX_DIM for d in s.shape):
                raise FormatError(f"{where}: {kind} {s.name!r} declares the shape {list(s.shape)}",
                                  hint=f"a dimension is between 1 and {MAX_DIM}; {fix}")
            try:
                itemsize = np.dtype(s.dtype).itemsize
            except TypeError:
                itemsize = 1
            if kind == "input" and example_bytes(s.shape, itemsize) > MAX_EXAMPLE_BYTES:
                raise FormatError(f"{where}: input {s.name!r} declares the shape {list(s.shape)} of {s.dtype}: "
                                  f"more than {MAX_EXAMPLE_BYTES >> 30} GB for one example", hint=fix)


def read_artifact(path: str | Path) -> Artifact:
    """An artifact's record from its folder, its artifact.json, or its model file beside one.

    JSON only: a bare model file with no artifact.json beside it is loaded by
    :func:`edgeship.load_artifact`, which asks the target of its format (``Target.artifact_from_file``).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such artifact: {p}", hint="give the artifact folder written by edgeship deploy")
    if p.is_dir():
        meta = p / ARTIFACT_JSON
    elif p.name == ARTIFACT_JSON:
        meta = p
    else:
        meta = p.parent / ARTIFACT_JSON
    if not meta.exists() and not meta.is_symlink():
        raise InputError(
            f"{p} is not an edgeship artifact (no {ARTIFACT_JSON} beside it)",
            hint="give a folder written by edgeship deploy, e.g. edgeship-out/onnx-fp32",
        )
    from .readers import RECORD_LIMIT, read_json, read_text

    hint = "re-run edgeship deploy to rewrite it"
    data = read_json(meta, "artifact record", max_bytes=RECORD_LIMIT, links=False, hint=hint)
    if not isinstance(data, dict):
        raise FormatError(f"{meta} is not a valid artifact record: it holds a {type(data).__name__}, not an object",
                          hint=hint)
    root = meta.parent
    labels_path = root / LABELS_TXT
    labels = (clean_labels(read_text(labels_path, "labels file", links=False, hint=hint).splitlines())
              if labels_path.exists() or labels_path.is_symlink() else None)
    try:
        for k in ("digest", "size_bytes", "labels_file", "labels_count"):
            data.pop(k, None)
        art = Artifact(root=root, labels=labels, **data)
    except (ValueError, TypeError, RecursionError) as e:
        raise FormatError(f"{meta} is not a valid artifact record: {validation_detail(e)}",
                          hint="re-run edgeship deploy to rewrite it") from None
    _check_record(art, meta)
    if p.is_file() and p.name != ARTIFACT_JSON and p.resolve() != art.model_path.resolve():
        raise InputError(f"{p} is not the model file of the artifact in {root}",
                         hint=f"its model file is {art.model_file}")
    return art
