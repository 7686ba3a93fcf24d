"""Model sources, detected by content rather than by file extension.

``load_source(spec)`` accepts:

* ``efficientnet-lite0`` — the embedded default (pretrained, with preprocessing and labels);
* ``package.module:callable`` or ``path/to/file.py:callable`` — a factory returning an
  ``nn.Module``, a ``(module, example_inputs)`` pair, or a :class:`TorchModel`;
* a ``torch.export`` program (``.pt2`` archive);
* an ONNX file (external data only from inside the model's own folder);
* a ``.tflite`` flatbuffer (recognised; conversion from it is not offered);
* a torch checkpoint: a full pickled module only with ``allow_pickle``; a bare state_dict
  needs its architecture as a factory (``--weights``).

By concern: :mod:`.model` (the Source), :mod:`.sniff` (what a file is), :mod:`.load`
(``load_source``), :mod:`.torch` (factories, checkpoints), :mod:`.pt2` (torch.export programs),
:mod:`.onnx` (ONNX files), :mod:`.ranges` (input values), :mod:`.preprocess` and :mod:`.labels`
(what the user states), :mod:`.bridge` (ONNX -> torch), :mod:`.default` (the built-in model).
"""

from __future__ import annotations

from .labels import read_labels
from .load import BUILTIN_MODELS, load_source
from .model import Source, TorchModel, flatten_outputs
from .onnx import ONNX_METADATA_PREFIX, load_onnx_model, onnx_metadata
from .preprocess import parse_preprocess
from .sniff import sniff_format
from .torch import module_digest

__all__ = ["TorchModel", "Source", "load_source", "sniff_format", "module_digest", "BUILTIN_MODELS",
           # used by the targets, analysis, the bridge and the CLI's options
           "flatten_outputs", "load_onnx_model", "onnx_metadata", "ONNX_METADATA_PREFIX", "parse_preprocess",
           "read_labels"]
