"""The task records (see :mod:`edgeship.tasks`): pydantic models, read by the full edgeship; the
light runtime reads the same JSON with ``json``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import FormatError, UsageError

__all__ = ["ClassScores", "TextDetection", "TextDirection", "TextRecognition", "Embedding", "VoiceActivity", "Task",
           "TASK_KINDS", "STREAM_KINDS",
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
    """Text (or any input) to one embedding vector, L2-normalised when ``normalize``. With
    ``tokenizer`` "wordpiece", a sentence becomes the model's inputs as BERT's WordPiece tokenizer
    (HF tokenizers' BertNormalizer, BertPreTokenizer, WordPiece, the [CLS] $A [SEP] template) does
    it: ``vocabulary`` the token list (one per line, the id its line number; at deploy a
    ``tokenizer.json`` or ``vocab.txt`` path, in a release ``vocab.txt`` beside bundle.json)."""
    kind: Literal["embedding"] = "embedding"
    normalize: bool = True
    tokenizer: Literal["wordpiece"] | None = None
    vocabulary: str = Field("vocab.txt", description="the token list's file")
    vocabulary_sha256: str | None = Field(None, description="the token list's digest (one token per line, UTF-8)")
    lowercase: bool = True
    strip_accents: bool | None = Field(None, description="None: as lowercase")
    chinese_chars: bool = True
    clean_text: bool = True
    max_length: int = Field(128, ge=3, le=65536, description="tokens per input, [CLS] and [SEP] included")
    pad_to_max: bool = Field(True, description="pad every input to max_length (False: to the longest of a batch)")
    max_chars_per_word: int = Field(100, ge=1, le=100000)
    unk_token: str = "[UNK]"
    cls_token: str = "[CLS]"
    sep_token: str = "[SEP]"
    pad_token: str = "[PAD]"
    ids_input: str = "input_ids"
    mask_input: str | None = "attention_mask"
    type_input: str | None = Field(None, description="the token type ids' input (all 0), when the model takes one")
    added_tokens: tuple[str, ...] | None = Field(None, description="tokens matched whole in the raw text before anything "
                                                 "else (HF's added tokens); None: the unk, cls, sep, pad tokens and "
                                                 "[MASK], those in the vocabulary")


class VoiceActivity(_TaskModel):
    """Audio in chunks through a model that carries a state from one call to the next (Silero
    VAD): a speech probability per chunk, speech segments by the package's hysteresis rule.

    The stream: mono float32 samples at ``sample_rate``, cut into ``chunk`` samples with the
    ``context`` samples before them in front (zeros before the first), the last chunk
    zero-padded; each call takes the chunk as ``audio_input`` ([1, context + chunk]), the rate
    as ``rate_input`` (an int64 scalar, when the model has one) and, per ``carry`` entry
    (output -> input), what that output gave on the previous call (zeros on the first).
    ``probability`` is the output read as the chunk's speech probability.

    The segments (silero-vad's get_speech_timestamps): speech starts at a chunk scoring
    >= ``threshold`` and ends after ``min_silence_ms`` below ``neg_threshold`` (None:
    ``max(threshold - 0.15, 0.01)``); segments shorter than ``min_speech_ms`` dropped, longer than
    ``max_speech_s`` split, each padded by ``speech_pad_ms``."""
    kind: Literal["voice_activity"] = "voice_activity"
    audio_input: str = "input"
    rate_input: str | None = "sr"
    sample_rate: int = Field(16000, ge=1000, le=192000)
    chunk: int = Field(512, ge=1, le=1 << 20)
    context: int = Field(64, ge=0, le=1 << 20)
    carry: dict[str, str] = Field(default_factory=lambda: {"stateN": "state"},
                                  description="output -> input fed with it on the next call")
    probability: str | None = Field(None, description="the speech probability's output (None: the first)")
    threshold: float = Field(0.5, gt=0, lt=1)
    neg_threshold: float | None = Field(None, ge=0, lt=1)
    min_speech_ms: int = Field(250, ge=0, le=600000)
    min_silence_ms: int = Field(100, ge=0, le=600000)
    speech_pad_ms: int = Field(30, ge=0, le=600000)
    max_speech_s: float | None = Field(None, gt=0, description="None: no limit")
    min_silence_at_max_speech_ms: int = Field(98, ge=0, le=600000)
    use_max_poss_sil_at_max_speech: bool = True
    min_agreement: float = Field(0.98, ge=0, le=1, description="a reduced precision passes when its speech segments "
                                 "cover the same chunks as the original's in at least this share of chunks")


Task = Annotated[ClassScores | TextDetection | TextDirection | TextRecognition | Embedding | VoiceActivity,
                 Field(discriminator="kind")]
TASK_KINDS = ("class_scores", "text_detection", "text_direction", "text_recognition", "embedding", "voice_activity")
#: kinds whose model is called on a stream, its state carried from one call to the next
STREAM_KINDS = ("voice_activity",)


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
