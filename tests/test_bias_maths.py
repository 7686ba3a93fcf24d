"""The bias-correction maths, written once (edgeship.quant.bias) for every int8 backend: the mean
output error of a layer's weight rounding equals the layer applied to the mean input, for
convolutions of every rank with groups, strides, dilations and uneven padding, and for linear
layers with any leading shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeship.quant.bias import Conv, mean_output_error, same_pads


@pytest.mark.parametrize("k, groups, stride, dilation, pads", [
    (1, 1, [2], [1], [(1, 2)]),
    (2, 4, [1, 2], [2, 1], [(0, 1), (2, 1)]),   # grouped
    (2, 8, [2, 2], [1, 1], [(1, 1), (1, 1)]),   # depthwise
    (3, 2, [1, 1, 2], [1, 1, 1], [(1, 0), (0, 1), (1, 1)]),
])
def test_conv_error_is_the_conv_of_the_mean_input(k, groups, stride, dilation, pads):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(64, 8, *([7] * k)))
    dw = rng.normal(0, 0.01, size=(8, 8 // groups, *([3] * k)))
    flat_pads = [p for b, e in reversed(pads) for p in (b, e)]
    op = (F.conv1d, F.conv2d, F.conv3d)[k - 1]
    y = op(F.pad(torch.from_numpy(x), flat_pads), torch.from_numpy(dw), stride=stride, dilation=dilation, groups=groups)
    brute = y.mean(dim=tuple(i for i in range(y.ndim) if i != 1)).numpy()
    got = mean_output_error(x.mean(0), dw, Conv(stride=stride, pads=pads, dilation=dilation, groups=groups))
    np.testing.assert_allclose(got, brute, rtol=1e-9, atol=1e-12)


def test_linear_error_averages_every_leading_axis():
    rng = np.random.default_rng(1)
    x = rng.normal(0.5, 1.0, size=(16, 5, 12))  # batch, tokens, features
    dw = rng.normal(0, 0.01, size=(6, 12))
    brute = (x @ dw.T).reshape(-1, 6).mean(0)
    np.testing.assert_allclose(mean_output_error(x.mean(0), dw), brute, rtol=1e-9)
    np.testing.assert_allclose(mean_output_error(x.reshape(-1, 12).mean(0), dw), brute, rtol=1e-9)


def test_a_mean_input_of_the_wrong_rank_is_refused():
    with pytest.raises(ValueError, match="channels, \\*spatial"):
        mean_output_error(np.zeros((1, 8, 7, 7)), np.zeros((8, 8, 3, 3)), Conv([1, 1], [(0, 0)] * 2, [1, 1]))


def test_same_pads_match_tensorflow():
    assert same_pads(224, 3, 2, 1) == (0, 1)   # even input, stride 2: the extra pixel goes at the end
    assert same_pads(7, 3, 1, 1) == (1, 1)
    assert same_pads(7, 5, 1, 2) == (4, 4)
