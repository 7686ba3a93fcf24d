"""Learned rounding (edgeship.quant.rounding.learn_rounding) on one layer: a grouped layer's loss
over all rows goes through each group's Gram matrix and reaches what minibatches reach (its speed
is measured by benchmarks/bench_rounding.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeship.quant.rounding import grid_scale, learn_rounding


@pytest.mark.parametrize("groups,per_group", [(32, 1), (4, 2)])  # depthwise; grouped, 2 outputs a group
def test_a_grouped_layer_rounds_through_its_gram_matrices(groups, per_group):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((groups * per_group, 1, 3, 3)) * 0.1).astype(np.float32)
    x = np.maximum(rng.standard_normal((1024, groups, 9)), 0).astype(np.float32)
    exact_w, exact = learn_rounding(w, x, iters=200)
    _, mini = learn_rounding(w, x, iters=200, exact=False)
    assert exact["loss"] == "all rows (Gram)" and mini["loss"] == "minibatch of 512"
    steps = exact_w.reshape(len(w), -1) / grid_scale(w)[:, None]
    assert np.allclose(steps, np.round(steps), atol=1e-4) and np.abs(np.round(steps)).max() <= 127  # on the int8 grid
    assert exact["kept"] == "learned" and exact["mse_learned"] < 0.9 * exact["mse_nearest"]
    assert exact["mse_learned"] <= 1.05 * mini["mse_learned"]  # within 5%: neither way always wins


def test_a_dense_layer_keeps_minibatches():
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((16, 64)) * 0.1).astype(np.float32)
    x = rng.standard_normal((1024, 1, 64)).astype(np.float32)
    _, st = learn_rounding(w, x, iters=50)
    assert st["loss"] == "minibatch of 512" and st["mse_learned"] <= st["mse_nearest"]
