"""Learned rounding of int8 weights (AdaRound), the maths once for every int8 backend.

Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization" (ICML 2020): rounding
each weight to its nearest int8 level is not what keeps a layer's *output* closest to float.
Per layer, a continuous variable ``V`` per weight chooses down (0) or up (1) through a rectified
sigmoid ``h(V)``; the loss is the layer's output error on calibration inputs plus a regulariser
that pushes every ``h`` to 0 or 1 (its exponent annealed from 20 to 2); at the end each weight is
rounded the way its ``h`` settled.

The result is written back as *float* weights that lie exactly on their int8 grid: the grid is
per output channel, symmetric, ``scale = max|w| / 127`` with levels -127..127, the same grid every
backend here computes from those weights (ONNX Runtime, ai-edge-quantizer, PT2E/XNNPACK, NNCF:
per-channel symmetric). Their own round-to-nearest then lands on the learned levels, so each
backend writes the result in its own int8 format with no change to its quantiser. Batch-norm
folding scales a channel's weights and its grid alike, so weights snapped before folding stay on
the folded grid.

A layer's calibration inputs come in as *patches*: rows ``[N, groups, in/groups·k…]`` of what each
output position sees (:func:`conv_patches`), so convolutions, depthwise and grouped ones, and dense
layers are one matrix product here. Each backend gathers them its own way and calls
:func:`learn_rounding`; a layer whose learned rounding does not lower its output error on the
calibration rows keeps nearest rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import cache

__all__ = ["QMAX", "grid_scale", "conv_patches", "dense_patches", "learn_rounding", "weight_sqnr", "folded_gain",
           "round_torch_module", "rounding_key", "rounded_source", "choice"]

QMAX = 127
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (the paper's values)


def grid_scale(w: np.ndarray) -> np.ndarray:
    """Per output channel (axis 0) the symmetric int8 scale ``max|w| / 127`` (1 for an all-zero channel)."""
    m = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float64)
    return np.where(m > 0, m / QMAX, 1.0)


def conv_patches(x: np.ndarray, kernel: Sequence[int], stride: Sequence[int], pads: Sequence[tuple[int, int]],
                 dilation: Sequence[int], groups: int, positions: int, rng: np.random.Generator) -> np.ndarray:
    """Rows ``[N·positions, groups, in/groups·kh·kw]`` of a 2-d convolution's input ``x``
    ``[N, C, H, W]``: what ``positions`` random output positions per sample see."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = F.pad(t, [pads[1][0], pads[1][1], pads[0][0], pads[0][1]])
    cols = F.unfold(t, kernel_size=tuple(kernel), dilation=tuple(dilation), stride=tuple(stride))  # [N, C·k, L]
    n, d, length = cols.shape
    take = min(positions, length)
    idx = torch.from_numpy(np.stack([rng.choice(length, take, replace=False) for _ in range(n)]))
    picked = torch.gather(cols, 2, idx[:, None, :].expand(n, d, take))  # [N, C·k, take]
    return picked.permute(0, 2, 1).reshape(n * take, groups, d // groups).numpy()


def dense_patches(x: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Rows ``[M, 1, in]`` of a dense layer's input (features last; at most ``rows`` of them)."""
    flat = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
    if len(flat) > rows:
        flat = flat[rng.choice(len(flat), rows, replace=False)]
    return flat[:, None, :]


def learn_rounding(weight: np.ndarray, patches: np.ndarray, *, iters: int = 300, batch: int = 512,
                   reg: float = 0.01, lr: float = 1e-2, seed: int = 0,
                   exact: bool | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """AdaRound one layer: ``weight`` ``[out, in/groups, *kernel]`` (or ``[out, in]``) and its input
    ``patches`` ``[N, groups, in/groups·k…]``. Returns the weights snapped to their grid the learned
    way (or the nearest way when that is no better) and the figures: output MSE with nearest and
    with learned rounding on all rows, the share of weights rounded the other way, which was kept.
    ``exact``: the loss over all rows through the Gram matrices, or minibatches of ``batch`` rows
    (None: exact for a grouped layer whose rows are shorter than the minibatch)."""
    import torch

    torch.manual_seed(seed)
    out = weight.shape[0]
    groups = patches.shape[1]
    d = patches.shape[2]
    if weight.size != out * d or out % groups:
        raise ValueError(f"weight {weight.shape} does not match patches {patches.shape}")
    s = torch.from_numpy(grid_scale(weight)).float()[:, None]  # [out, 1]
    w = torch.from_numpy(np.array(weight, np.float32).reshape(out, d))  # a copy: ONNX arrays are read-only
    base = torch.floor(w / s)
    rest = (w / s - base).clamp(0.0, 1.0)
    # h(V) = rest at the start: nearest and learned begin from the float weights themselves
    v = torch.log((rest - GAMMA) / (ZETA - rest)).clamp(-8.0, 8.0).requires_grad_(True)
    x = torch.from_numpy(np.ascontiguousarray(patches, np.float32))  # [N, G, d]
    n = len(x)

    def output(wq: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ngd,god->ngo", rows, wq.reshape(groups, out // groups, d))

    def soft(v_: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(v_) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def quantised(h: torch.Tensor) -> torch.Tensor:
        return (base + h).clamp(-QMAX, QMAX) * s

    with torch.no_grad():
        y_all = output(w, x)

    def mse(wq: torch.Tensor) -> float:
        with torch.no_grad():
            return float(((output(wq, x) - y_all) ** 2).mean())

    nearest = quantised(torch.round(rest))
    # The reconstruction error summed over a row's outputs, averaged over rows (as BRECQ's AdaRound).
    # It is quadratic in the weights' change D: over all rows it is sum_g D_g A_g D_g^T with A_g each
    # group's Gram matrix of the rows, X_g^T X_g / n. For a grouped (depthwise) layer that exact form
    # is a 25x25 Gram per channel: a step 30x cheaper than the minibatch einsum, which was most of
    # Lite0's rounding time. Dense layers keep minibatches: exact there lowered each layer's own
    # error but Lite0's top-1 agreement fell (98.4% -> 96.5% on 256 inputs), for a 1.5x step at best.
    exact = (groups > 1 and d < min(batch, n)) if exact is None else exact
    if exact:
        xd = x.double()
        gram = torch.einsum("ngd,nge->gde", xd, xd).div_(n).float()  # [G, d, d]
        del xd
    opt = torch.optim.Adam([v], lr=lr)
    warm = int(0.2 * iters)
    gen = torch.Generator().manual_seed(seed)
    for it in range(iters):
        h = soft(v)
        if exact:
            dlt = (quantised(h) - w).reshape(groups, out // groups, d)
            loss = (torch.bmm(dlt, gram) * dlt).sum()
        else:
            rows = torch.randint(0, n, (min(batch, n),), generator=gen)
            loss = ((output(quantised(h), x[rows]) - y_all[rows]) ** 2).sum(dim=(1, 2)).mean()
        if it >= warm:  # anneal the regulariser's exponent from 20 to 2 after a warm-up
            beta = 2 + 18 * (1 + math.cos(math.pi * (it - warm) / max(1, iters - warm))) / 2
            loss = loss + reg * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        learned = quantised((v >= 0).float())
        e_near, e_learn = mse(nearest), mse(learned)
        flipped = float((torch.round(rest) != (v >= 0).float()).float().mean())
    keep = e_learn < e_near
    chosen = learned if keep else nearest
    snapped = chosen.reshape(weight.shape).numpy().astype(weight.dtype)
    stats = {"mse_nearest": e_near, "mse_learned": e_learn, "flipped": round(flipped, 4), "kept": "learned" if keep else "nearest",
             "rows": n, "iters": iters, "loss": "all rows (Gram)" if exact else f"minibatch of {min(batch, n)}",
             **weight_sqnr(weight, snapped, nearest.reshape(weight.shape).numpy())}
    return snapped, stats


def weight_sqnr(original: np.ndarray, snapped: np.ndarray, nearest: np.ndarray | None = None,
                gain: np.ndarray | None = None) -> dict[str, float]:
    """The SQNR (dB, :func:`edgeship.fidelity.db_from_sums`) of a layer's ``snapped`` weights against
    its ``original`` float weights (``weight_sqnr_db``), and of nearest rounding's (``weight_sqnr_db_nearest``)
    when given: what an int8 that ships those weights keeps of the original, whatever backend writes
    them. ``gain`` (per output channel) scales both first: a batch norm after the layer, folded into
    it as every backend quantises it."""
    from ..fidelity import db_from_sums

    w = np.asarray(original, np.float64)
    g = np.ones(w.shape[0]) if gain is None else np.asarray(gain, np.float64)
    g = g.reshape(-1, *[1] * (w.ndim - 1))

    def db(q: np.ndarray) -> float:
        return round(db_from_sums(float(np.sum((g * w) ** 2)), float(np.sum((g * (np.asarray(q, np.float64) - w)) ** 2))), 3)

    out = {"weight_sqnr_db": db(snapped)}
    if nearest is not None:
        out["weight_sqnr_db_nearest"] = db(nearest)
    return out


def round_torch_module(module: Any, example_inputs: Sequence[np.ndarray], samples: Sequence[tuple[np.ndarray, ...]],
                       iters: int, bias_correction: bool = True, rows: int = 2048,
                       say: Any = None) -> tuple[Any, list[dict[str, Any]]]:
    """A copy of a torch ``module`` whose 2-d convolution and linear weights lie on their int8 grid,
    rounded the learned way from each layer's inputs on the calibration ``samples`` (its
    ``torch.export`` graph shows each layer's input after any explicit padding). The module itself
    is never changed: every int8 backend that starts from the torch model (LiteRT, ExecuTorch,
    OpenVINO) quantises the copy, and its own rounding lands on the learned levels. With
    ``bias_correction`` each snapped layer's mean output error against its original weights is
    taken out of its bias (or the next batch norm's running mean): the backends' own bias
    correction sees weights already on the grid and has nothing left to correct."""
    import copy

    import torch

    from .bias import Conv, mean_output_error
    from .pt2e import _attr, _ops, _per_axis

    say = say or (lambda _m: None)
    conv, linear = _ops()
    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in example_inputs)
    with torch.no_grad():
        gm = torch.export.export(module, args).module()
    rng = np.random.default_rng(0)
    per_sample = max(1, -(-rows // max(1, len(samples))))
    patches: dict[str, list[np.ndarray]] = {}
    weights: dict[str, str] = {}
    sums: dict[str, list[Any]] = {}  # per layer: sum of its inputs and how many (for bias correction)
    geometry: dict[str, Any] = {}

    class _Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            w = n.args[1] if n.op == "call_function" and len(n.args) > 1 else None
            if isinstance(w, torch.fx.Node) and w.op == "get_attr" and (n.target in conv or n.target in linear):
                x = self.env[n.args[0]] if isinstance(n.args[0], torch.fx.Node) else None
                wt = _attr(gm, w.target)
                if isinstance(x, torch.Tensor):
                    flat = x.detach().double()
                    flat = flat if n.target in conv else flat.reshape(-1, flat.shape[-1])
                    acc = sums.setdefault(n.name, [0, 0])
                    acc[0], acc[1] = acc[0] + flat.sum(0), acc[1] + flat.shape[0]
                if isinstance(x, torch.Tensor) and n.target in linear:
                    patches.setdefault(n.name, []).append(dense_patches(x.detach().numpy(), per_sample * max(1, x.shape[0]), rng))
                    weights[n.name] = w.target
                elif isinstance(x, torch.Tensor) and wt.ndim == 4:
                    stride, padding, dilation, groups = (list(n.args[3:7]) + [None] * 4)[:4]
                    if not isinstance(padding, str):
                        pads = [(p, p) for p in _per_axis(padding, 0, 2)]
                        patches.setdefault(n.name, []).append(conv_patches(
                            x.detach().numpy(), list(wt.shape[2:]), _per_axis(stride, 1, 2), pads,
                            _per_axis(dilation, 1, 2), int(groups or 1), per_sample, rng))
                        weights[n.name] = w.target
                        geometry[n.name] = Conv(stride=_per_axis(stride, 1, 2), pads=pads,
                                                dilation=_per_axis(dilation, 1, 2), groups=int(groups or 1))
            return super().run_node(n)

    with torch.no_grad():
        for smp in samples:
            _Recorder(gm).run(*[torch.from_numpy(np.ascontiguousarray(a)) for a in smp])
    out = copy.deepcopy(module)
    params = dict(out.named_parameters())
    buffers = dict(out.named_buffers())
    nodes = {n.name: n for n in gm.graph.nodes}

    def correct(name: str, dw: np.ndarray) -> str:
        """Bias correction of the snapped layer against its *original* weights (the backends' own
        would see weights already on the grid, and correct nothing): the layer's bias, or the
        running mean of the batch norm right after it, absorbs the mean output error."""
        total, count = sums[name]
        e = mean_output_error((total / count).numpy(), dw, geometry.get(name))
        n = nodes[name]
        bias = n.args[2] if len(n.args) > 2 else None
        with torch.no_grad():
            if isinstance(bias, torch.fx.Node) and bias.op == "get_attr" and bias.target in params:
                params[bias.target].sub_(torch.from_numpy(e).to(params[bias.target].dtype))
                return "bias"
            users = list(n.users)
            if len(users) == 1 and "batch_norm" in str(users[0].target) and len(users[0].args) > 3:
                rm = users[0].args[3]
                if isinstance(rm, torch.fx.Node) and rm.op == "get_attr" and rm.target in buffers:
                    buffers[rm.target].add_(torch.from_numpy(e).to(buffers[rm.target].dtype))
                    return "batch-norm mean"
        return "none"

    stats = []
    users: dict[str, int] = {}
    for target in weights.values():
        users[target] = users.get(target, 0) + 1
    todo = [(name, target) for name, target in weights.items() if users[target] == 1 and target in params]
    for k, (name, target) in enumerate(todo):
        say(f"learned rounding: layer {k + 1}/{len(todo)} ({target.rsplit('.', 1)[0]})")
        p = params[target]
        orig = p.detach().numpy().copy()
        snapped, st = learn_rounding(orig, np.concatenate(patches.pop(name)), iters=iters)
        gain = folded_gain(gm, nodes[name])
        if gain is not None:  # the figures as every backend quantises the layer: its batch norm folded in
            s = grid_scale(orig).reshape(-1, *[1] * (orig.ndim - 1))
            st.update(weight_sqnr(orig, snapped, np.clip(np.round(orig / s), -QMAX, QMAX) * s, gain), batch_norm_folded=True)
        with torch.no_grad():
            p.copy_(torch.from_numpy(snapped))
        corrected = correct(name, snapped.astype(np.float64) - orig) if bias_correction else "off"
        stats.append({"node": name, "module": target.rsplit(".", 1)[0], **st, "bias_corrected": corrected})
    return out, stats


def folded_gain(gm: Any, node: Any) -> np.ndarray | None:
    """Per output channel ``gamma / sqrt(var + eps)`` of the batch norm that alone reads ``node``'s
    output in the exported graph ``gm`` (what folding it multiplies the layer's weights by), or None."""
    import torch

    from .pt2e import _attr

    users = list(node.users)
    bn = users[0] if len(users) == 1 else None
    if bn is None or "batch_norm" not in str(bn.target) or len(bn.args) < 5:
        return None
    gamma, var = bn.args[1], bn.args[4]
    eps = bn.args[7] if len(bn.args) > 7 and isinstance(bn.args[7], float) else 1e-5
    if not (isinstance(var, torch.fx.Node) and var.op == "get_attr"):
        return None
    v = _attr(gm, var.target).detach().double().numpy()
    g = _attr(gm, gamma.target).detach().double().numpy() if isinstance(gamma, torch.fx.Node) and gamma.op == "get_attr" \
        else np.ones_like(v)
    return g / np.sqrt(v + eps)


#: one source at a time: a deploy's targets share it, the next model replaces it
_ROUNDED = cache.Memo("learned rounding")


def rounded_source(source: Any, cfg: Any, say: Any = None) -> tuple[Any, list[dict[str, Any]]]:
    """The torch ``source`` with its weights rounded the learned way (:func:`round_torch_module`) on
    the run's calibration data, and the per-layer figures; made once per source, options and
    process, so every int8 target of a deploy shares it."""
    import contextlib
    import dataclasses

    from ..data import calibration_samples

    key = (source.digest, id(source.module), cfg.rounding_iters, cfg.calib, cfg.calib_samples, bool(cfg.bias_correction))
    if key not in _ROUNDED:
        tell = say or (lambda _m: None)
        use = cache.enabled(getattr(cfg, "cache", True)) or cache.private()
        stored = _RoundingCache(source, cfg) if use else None
        with cache.single_flight(stored.key, lambda: tell("learned rounding: waiting for the worker that computes it"))\
                if stored is not None else contextlib.nullcontext():
            got = stored.fetch() if stored is not None else None
            if got is not None:
                tell("learned rounding: the weights learned once for every int8 target (cache)")
                module, stats = got
            else:
                samples = calibration_samples(source, cfg)
                tell(f"learned rounding (AdaRound, {cfg.rounding_iters} steps per layer) on "
                     f"{len(samples)} calibration samples, once for every int8 target")
                module, stats = round_torch_module(source.module, source.example_inputs, samples, cfg.rounding_iters,
                                                   bias_correction=bool(cfg.bias_correction), say=say)
                if stored is not None:
                    stored.keep(module, stats)
        _ROUNDED.put(key, (dataclasses.replace(source, module=module), stats))
    return _ROUNDED.get(key)


def rounding_key(source: Any, cfg: Any) -> str:
    """The cache key of the source's learned rounding: the module's weights themselves (an
    equalised copy has the source's digest but other weights), its code, the calibration data and
    the rounding options."""
    from ..sources import module_digest

    return cache.key("rounding", weights=module_digest(source.module), source=cache.source_key(source),
                     iters=cfg.rounding_iters, calib_samples=cfg.calib_samples, bias_correction=bool(cfg.bias_correction),
                     calib=cache.data_key(cfg.calib, source, cfg.calib_samples, "calibration"))


class _RoundingCache:
    """The learned weights in edgeship's cache (:mod:`edgeship.cache`, :func:`rounding_key`): the
    targets of a deploy, its worker processes and the next run share one AdaRound (minutes on a
    CNN); loaded with ``weights_only``."""

    def __init__(self, source: Any, cfg: Any) -> None:
        self.cache, self.module = cache, source.module
        self.key = rounding_key(source, cfg)

    def fetch(self) -> tuple[Any, list[dict[str, Any]]] | None:
        import copy
        import json
        import tempfile
        from pathlib import Path

        import torch

        with tempfile.TemporaryDirectory(prefix="edgeship-rounding-") as tmp:
            folder = Path(tmp) / "r"
            meta, _ = self.cache.fetch_dir(self.key, folder)
            if meta is None:
                return None
            module = copy.deepcopy(self.module)
            module.load_state_dict(torch.load(folder / "state.pt", weights_only=True))
            return module, json.loads((folder / "stats.json").read_text())

    def keep(self, module: Any, stats: list[dict[str, Any]]) -> None:
        import json
        import tempfile
        from pathlib import Path

        import torch

        with tempfile.TemporaryDirectory(prefix="edgeship-rounding-") as tmp:
            torch.save(module.state_dict(), Path(tmp) / "state.pt")
            (Path(tmp) / "stats.json").write_text(json.dumps(stats, default=float))
            self.cache.store_dir(self.key, Path(tmp), {"kind": "rounding"})


def choice(cfg: Any, learned: dict[str, Any], nearest: dict[str, Any], layers: list[dict[str, Any]],
           t0: float) -> tuple[bool, dict[str, Any]]:
    """Whether to keep learned rounding (``--rounding adaround``, or ``auto`` when its budget step
    ``learned`` came out closer to fp32 than ``nearest``), and the record every int8 flow writes
    of it (``details.quantization.rounding``): the choice and why, the time since ``t0``, and each
    layer's output error both ways and its weights' SQNR against the float weights before rounding
    (``weight_sqnr_db``, and nearest rounding's ``weight_sqnr_db_nearest``)."""
    import time

    from .flow import closer

    keep = cfg.rounding == "adaround" or closer(learned, nearest)
    return keep, {
        "method": "adaround", "asked": cfg.rounding, "iters": cfg.rounding_iters,
        "seconds": round(time.perf_counter() - t0, 1),
        "layers_learned": sum(1 for r in layers if r["kept"] == "learned"), "layers": len(layers),
        "chosen": "adaround" if keep else "nearest",
        "why": ("asked for (--rounding adaround)" if cfg.rounding == "adaround" else
                "closer to fp32 than nearest rounding on the evaluation data" if keep else
                "nearest rounding was as close or closer to fp32 on the evaluation data"),
        "per_layer": [{k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in r.items()} for r in layers]}
