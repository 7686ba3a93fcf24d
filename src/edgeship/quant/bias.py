"""Empirical bias correction, the maths once for every int8 backend.

Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias Correction" (2019): the
int8 weights of a layer add an error ``W_q - W`` whose mean effect on the output,
``E[layer(x, W_q - W)]``, is systematic (depthwise layers with folded batch norm suffer most).
Because convolution and matrix products are linear, that mean is the layer applied to the mean
input, exactly, padding included; subtracting it from the bias removes the shift.

Each backend (ONNX Runtime, ai-edge-quantizer, PT2E) reads its own int8 weights and records the
mean input of its layers, brings them into the one layout used here — channels first, weights
``[out, in / groups, *kernel]`` — and calls :func:`mean_output_error`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Conv:
    """A convolution's geometry per spatial axis; ``pads`` are (begin, end) pairs."""

    stride: Sequence[int]
    pads: Sequence[tuple[int, int]]
    dilation: Sequence[int]
    groups: int = 1


def mean_output_error(mean_input: np.ndarray, dweight: np.ndarray, conv: Conv | None = None) -> np.ndarray:
    """Per output channel, the mean error the weights' rounding ``dweight`` (``W_q - W``) adds to a
    layer's output, for inputs whose mean is ``mean_input``.

    * a linear layer (``conv`` None): ``mean_input`` has the features last (any leading shape is
      averaged away), ``dweight`` is ``[out, in]``;
    * a convolution: ``mean_input`` is ``[channels, *spatial]`` (1 to 3 spatial axes), ``dweight``
      ``[out, in / groups, *kernel]``; the output is averaged over its positions.
    """
    import torch
    import torch.nn.functional as F

    dw = torch.from_numpy(np.asarray(dweight, np.float64))
    x = torch.from_numpy(np.asarray(mean_input, np.float64))
    if conv is None:
        return (x.reshape(-1, dw.shape[1]).mean(0) @ dw.T).numpy()
    k = dw.ndim - 2
    if x.ndim != k + 1 or not 1 <= k <= 3:
        raise ValueError(f"a {k}-d convolution needs a [channels, *spatial] mean input, got shape {tuple(x.shape)}")
    pads = [p for begin, end in reversed(list(conv.pads)) for p in (begin, end)]  # F.pad: last axis first
    op = (F.conv1d, F.conv2d, F.conv3d)[k - 1]
    y = op(F.pad(x[None], pads), dw, stride=list(conv.stride), dilation=list(conv.dilation), groups=int(conv.groups))
    return y.mean(dim=tuple(i for i in range(y.ndim) if i != 1)).numpy()


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis: (begin, end)."""
    import math

    eff = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2
