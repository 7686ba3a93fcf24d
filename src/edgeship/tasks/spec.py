"""A pipeline file: several models and the glue between them, as ``edgeship deploy`` takes it.

::

    # pipeline.yaml
    name: ppocr-v4
    kind: ocr                      # the glue: ocr (detection -> [direction] -> recognition)
    models:
      det: {model: ch_PP-OCRv4_det_infer.onnx, task: {kind: text_detection}}
      cls: {model: ch_ppocr_mobile_v2.0_cls_infer.onnx, task: {kind: text_direction}}
      rec:
        model: ch_PP-OCRv4_rec_infer.onnx
        task: {kind: text_recognition}
        characters: keys.txt       # optional: else the model's metadata "character" (PaddleOCR's)

Model paths are relative to the file. Each stage's task record fills in RapidOCR's defaults for
what it does not say. The file is read by the one reader of structured files, every value
checked; nothing in it runs (a model is a file, never ``pkg.mod:fn``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import FormatError, InputError
from .records import TextDetection, TextDirection, TextRecognition, parse_task

__all__ = ["PipelineSpec", "StageSpec", "read_pipeline", "is_pipeline_file", "KINDS", "STAGES"]

KINDS = ("ocr",)
#: the stages of each kind, in order, and the task each takes
STAGES = {"ocr": {"det": TextDetection, "cls": TextDirection, "rec": TextRecognition}}
REQUIRED = {"ocr": ("det", "rec")}
_SUFFIXES = (".yaml", ".yml", ".json")


@dataclasses.dataclass(frozen=True)
class StageSpec:
    name: str
    model: Path
    task: Any
    characters: Path | None = None


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    path: Path
    name: str
    kind: str
    stages: tuple[StageSpec, ...]

    def stage(self, name: str) -> StageSpec | None:
        return next((s for s in self.stages if s.name == name), None)

    def record(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.name, "kind": self.kind,
                "stages": {s.name: {"model": str(s.model), "task": s.task.model_dump(mode="json"),
                                    **({"characters": str(s.characters)} if s.characters else {})}
                           for s in self.stages}}


def is_pipeline_file(model: str | Path) -> bool:
    """Whether deploy's model argument names a pipeline file (a YAML/JSON mapping with
    ``models``), not a model."""
    p = Path(str(model))
    if p.suffix.lower() not in _SUFFIXES or not p.is_file():
        return False
    try:
        head = p.open("rb").read(1 << 16).decode("utf-8", "replace")
    except OSError:
        return False
    return any(line.split("#", 1)[0].strip().startswith(("models:", '"models"')) for line in head.splitlines()) \
        or '"models"' in head


def read_pipeline(path: str | Path) -> PipelineSpec:
    """The pipeline file at ``path``, checked: a FormatError naming the file and the key for
    anything it cannot take, an InputError for a model file that is not there."""
    from ..readers import read_structured

    path = Path(path)
    doc = read_structured(path, "pipeline file", hint="a YAML mapping: name, kind: ocr, models: {det: {model: FILE}}")
    if not isinstance(doc, dict):
        raise FormatError(f"{path}: a pipeline file is a mapping (name, kind, models)")
    extra = sorted(set(doc) - {"name", "kind", "models"})
    if extra:
        raise FormatError(f"{path}: unknown key {extra[0]!r}", hint="a pipeline file holds name, kind and models "
                          "(deploy options go on the command line)")
    kind = doc.get("kind", "ocr")
    if kind not in KINDS:
        raise FormatError(f"{path}: kind {kind!r} is not one edgeship has glue for", hint=f"kinds: {', '.join(KINDS)}")
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise FormatError(f"{path}: name must be a short text")
    models = doc.get("models")
    if not isinstance(models, dict) or not models:
        raise FormatError(f"{path}: models must map stage names ({', '.join(STAGES[kind])}) to {{model: FILE}}")
    allowed = STAGES[kind]
    stages = []
    for key, entry in models.items():
        where = f"{path}: models.{key}"
        if key not in allowed:
            raise FormatError(f"{where}: {kind} has no stage {key!r}", hint=f"its stages: {', '.join(allowed)}")
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise FormatError(f"{where}: give the model file as model: FILE")
        bad = sorted(set(entry) - {"model", "task", "characters"})
        if bad:
            raise FormatError(f"{where}: unknown key {bad[0]!r}", hint="a stage holds model, task and characters")
        model = (path.parent / entry["model"]).resolve()
        if not model.is_file():
            raise InputError(f"{where}: no model file at {model}", hint="paths are relative to the pipeline file")
        task = parse_task({"kind": allowed[key]().kind, **(entry.get("task") or {})}, where)
        if not isinstance(task, allowed[key]):
            raise FormatError(f"{where}: the {key} stage takes a {allowed[key]().kind} task, not {task.kind}")
        chars = entry.get("characters")
        if chars is not None:
            if key != "rec" or not isinstance(chars, str):
                raise FormatError(f"{where}: characters is the recogniser's character list file")
            chars = (path.parent / chars).resolve()
            if not chars.is_file():
                raise InputError(f"{where}: no character list at {chars}")
        stages.append(StageSpec(name=key, model=model, task=task, characters=chars))
    missing = [s for s in REQUIRED[kind] if s not in models]
    if missing:
        raise FormatError(f"{path}: an {kind} pipeline needs a {missing[0]} model", hint=f"models: {', '.join(allowed)}")
    order = list(allowed)
    return PipelineSpec(path=path, name=name.strip(), kind=kind,
                        stages=tuple(sorted(stages, key=lambda s: order.index(s.name))))
