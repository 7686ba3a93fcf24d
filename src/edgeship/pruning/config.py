"""The typed options of ``edgeship compress`` (the CLI flags are generated from these fields)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from ..config import SourceConfig, split_commas
from ..errors import UsageError

__all__ = ["CompressConfig"]


class CompressConfig(SourceConfig):
    command: ClassVar[str] = "compress"
    prune: list[float] = Field(..., description="share of each layer's channels to remove (channel), or of the weights "
                                               "to zero (magnitude), strictly between 0 and 1, e.g. 0.5; several, comma "
                                               "separated, make a sweep (0.25,0.5,0.75)")
    method: Literal["channel", "magnitude"] = Field(
        "channel", description="channel: structural pruning with torch-pruning (coupled channels removed together; "
                               "smaller and faster on every runtime); magnitude: unstructured sparsity (zeros only: "
                               "smaller when compressed, no faster on most edge runtimes)")
    importance: Literal["magnitude", "taylor"] = Field(
        "magnitude", description="which channels go: magnitude (L2 of each coupled group's weights, batch norm scales "
                                 "included) or taylor (first-order Taylor of the loss on the training or calibration "
                                 "inputs: |weight x gradient|, Molchanov et al. 2019; labels when the data has them)")
    round_to: int = Field(8, ge=1, le=256, description="keep each pruned layer's channels a multiple of N, the "
                                                       "nearest to the ratio (a layer narrower than N is kept whole): "
                                                       "runtime kernels work on blocks of 8 or 16 channels, and an odd "
                                                       "count can make the pruned model slower than the original; 1: "
                                                       "the ratio exactly")
    train_data: str | None = Field(None, description="fine-tune the pruned model on this data: an image folder (one "
                                                     "sub-folder per class), an .npz with x (and labels y), or a "
                                                     "callable pkg.mod:fn yielding x or (x, y)")
    eval_data: str | None = Field(None, description="measure accuracy (with labels) or fidelity to the original on this "
                                                    "data, same forms as --train-data (default: the model's own "
                                                    "evaluation inputs)")
    epochs: int = Field(5, ge=1, le=10000, description="fine-tuning epochs over --train-data")
    distill: bool = Field(True, description="fine-tune with knowledge distillation from the original model (soft "
                                            "targets at --temperature, plus the labels when the data has them); "
                                            "--no-distill: the labels alone")
    temperature: float = Field(4.0, gt=0, le=100, description="distillation temperature")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the label loss beside the teacher's, when there are "
                                                      "labels")
    lr: float = Field(1e-3, gt=0, le=1, description="fine-tuning learning rate (Adam, cosine decay); 1e-4 for a large "
                                                   "pretrained model (EfficientNet-Lite0 lost everything at 1e-3)")
    batch_size: int = Field(32, ge=1, le=4096, description="fine-tuning batch size")
    train_samples: int = Field(100000, ge=1, description="training samples read at most")
    eval_samples: int = Field(256, ge=1, le=65536, description="inputs the pruned model's fidelity to the original is "
                                                               "measured on")
    latency: list[str] = Field(default_factory=lambda: ["onnx", "tflite"],
                               description="runtimes the original and the pruned model are converted for and timed on "
                                           "(1 thread, side by side in one run); 'none' to skip")
    bench_runs: int = Field(200, ge=10, description="timed calls per model and runtime for the latency")
    seed: int = Field(0, description="random seed of the fine-tuning (pruning itself is deterministic)")
    out: Path = Field(Path("edgeship-compressed"), description="output folder (model.pt2 and compress.json)")
    overwrite: bool = Field(False, description="replace an existing output folder")

    @field_validator("prune", mode="before")
    @classmethod
    def _ratios(cls, v: Any) -> Any:
        items = split_commas(v) if isinstance(v, (str, list, tuple)) else [v]
        if not items:
            raise UsageError("--prune needs a ratio", hint="give the share to remove, e.g. --prune 0.5")
        out = []
        for item in items:
            try:
                r = float(item)
            except (TypeError, ValueError):
                raise UsageError(f"--prune {item!r} is not a number",
                                 hint="give the share to remove, e.g. --prune 0.5 (or 0.25,0.5,0.75 for a sweep)") from None
            if not 0.0 < r < 1.0:
                raise UsageError(f"--prune {r:g} is outside (0, 1)",
                                 hint="give the share of channels (or weights) to remove, strictly between 0 and 1, "
                                      "e.g. 0.5")
            if r in out:
                raise UsageError(f"--prune {r:g} is given twice", hint="give each ratio once")
            out.append(r)
        return out

    @field_validator("latency", mode="before")
    @classmethod
    def _latency(cls, v: Any) -> Any:
        items = [x.lower() for x in split_commas(v)]
        return [] if items in (["none"], ["off"]) else items
