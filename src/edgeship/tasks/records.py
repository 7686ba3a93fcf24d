"""The task records (see :mod:`edgeship.tasks`): pydantic models, read by the full edgeship; the
light runtime reads the same JSON with ``json``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import FormatError, UsageError

__all__ = ["ClassScores", "TextDetection", "TextDirection", "TextRecognition", "Embedding", "Task", "TASK_KINDS",
           "parse_task", "task_dict"]


class _TaskModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassScores(_TaskModel):
    kind: Literal["class_scores"] = "class_scores"


Float3 = tuple[Annotated[float, Field(ge=-1e6, le=1e6)], ...]


class TextDetection(_TaskModel):
    """A page through the DB text detector (PaddleOCR): BGR, the short side scaled to
    ``limit_side_len`` (``limit_type`` min) or the long side capped (max), both sides a multiple of
    32, ``(x / 255 - mean) / std``, NCHW; the map above ``thresh`` (dilated 2x2) gives regions, a
    region's min-area rectangle kept when its mean score is at least ``box_thresh``, then grown by
    ``area * unclip_ratio / perimeter``."""
    kind: Literal["text_detection"] = "text_detection"
    input: str | None = Field(None, description="the image input's name (None: the model's only input)")
    limit_side_len: int = Field(736, ge=32, le=8192)
    limit_type: Literal["min", "max"] = "min"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    thresh: float = Field(0.3, gt=0, lt=1)
    box_thresh: float = Field(0.5, ge=0, le=1)
    max_candidates: int = Field(1000, ge=1, le=100000)
    unclip_ratio: float = Field(1.6, ge=0, le=10)
    use_dilation: bool = True
    min_size: int = Field(3, ge=0, le=1000)
    #: the page before detection (RapidOCR's Global): long side at most, short side at least,
    #: pages lower than min_height or wider than width_height_ratio x height padded top and bottom
    max_side_len: int = Field(2000, ge=32, le=16384)
    min_side_len: int = Field(30, ge=1, le=4096)
    min_height: int = Field(30, ge=1, le=4096)
    width_height_ratio: float = Field(8.0, description="-1: never pad")


class TextDirection(_TaskModel):
    """A text-line crop through a direction classifier: resized to ``height``, at most ``width``
    wide (zero-padded on the right), ``(x / 255 - 0.5) / 0.5``; turned by 180 degrees when the
    label containing "180" scores above ``thresh``."""
    kind: Literal["text_direction"] = "text_direction"
    input: str | None = None
    height: int = Field(48, ge=8, le=1024)
    width: int = Field(192, ge=8, le=8192)
    labels: tuple[str, ...] = ("0", "180")
    thresh: float = Field(0.9, ge=0, le=1)
    batch: int = Field(6, ge=1, le=1024)


class TextRecognition(_TaskModel):
    """A text-line crop through a CTC recogniser: resized to ``height``, a batch as wide as
    ``height x max(width / height, its widest crop's ratio)`` (crops sorted by ratio, ``batch`` at a
    time, zero-padded), ``(x / 255 - 0.5) / 0.5``; greedy CTC over ``characters`` (one per line,
    blank first and a space last added), text kept when its mean score is at least
    ``text_score``."""
    kind: Literal["text_recognition"] = "text_recognition"
    input: str | None = None
    height: int = Field(48, ge=8, le=1024)
    width: int = Field(320, ge=8, le=8192)
    batch: int = Field(6, ge=1, le=1024)
    characters: str = Field("characters.txt", description="the character list's file, beside the model")
    text_score: float = Field(0.5, ge=0, le=1)


class Embedding(_TaskModel):
    kind: Literal["embedding"] = "embedding"
    normalize: bool = True


Task = Annotated[ClassScores | TextDetection | TextDirection | TextRecognition | Embedding,
                 Field(discriminator="kind")]
TASK_KINDS = ("class_scores", "text_detection", "text_direction", "text_recognition", "embedding")


def parse_task(value: Any, where: str) -> Any:
    """A task record from a dict (or a JSON text): a FormatError naming ``where`` and the field
    when it is not one."""
    from pydantic import TypeAdapter, ValidationError

    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError as e:
            raise UsageError(f"{where}: not JSON: {e}", hint='write it like {"kind": "text_recognition"}') from None
    try:
        return TypeAdapter(Task).validate_python(value)
    except ValidationError as e:
        first = e.errors()[0]
        loc = [str(x) for x in first.get("loc", ())]
        kind = loc.pop(0) if loc and loc[0] in TASK_KINDS else None
        raise FormatError(f"{where}: task {'.'.join(loc) or 'record'}: {first.get('msg')}",
                          hint=f"see the fields of a {kind} task in edgeship.tasks" if kind else
                               f"a task's kind is one of {', '.join(TASK_KINDS)}") from None


def task_dict(task: Any) -> dict[str, Any] | None:
    return None if task is None else task.model_dump(mode="json")
