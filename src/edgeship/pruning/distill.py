"""Fine-tuning a pruned model with knowledge distillation from the original (the teacher).

The loss for a classifier is Hinton et al.'s: the KL divergence between the teacher's and the
student's softmax at temperature ``T`` (times T², so its gradients keep their scale), mixed with
the cross-entropy against the labels when the data has them (``alpha`` of it). Any other model
(embeddings, several outputs) is trained to match the teacher's outputs (mean squared error, each
output scaled by the teacher's variance). The teacher's outputs are computed once, before training.

Batch norms keep their running statistics (the kept channels' statistics are still right, and a
few hundred samples in small batches would only add noise). A tenth of the data is held out
(seeded); each epoch is judged on it and the best state is kept, the pruned model as it was when
no epoch lowered the held-out loss (a learning rate too high for a pretrained model is caught so).

Training is reproducible (``seed`` fixes the initial state and each epoch's order), shows its loss
and accuracy as it goes, and keeps a checkpoint (weights, optimiser, schedule, position, random
state) in edgeship's cache under a key of everything that decides the result: the same command
after an interruption (Ctrl-C) resumes where it stopped, and gives the same weights an
uninterrupted run gives. A finished run removes its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import cache

__all__ = ["DistillSettings", "distill", "checkpoint_path"]

CHECKPOINT_EVERY_S = 30.0  # seconds between checkpoints within an epoch (and one at every epoch's end)


@dataclass(frozen=True)
class DistillSettings:
    epochs: int
    batch_size: int
    lr: float
    temperature: float
    alpha: float  # weight of the label loss when there are labels (the rest is the teacher's)
    seed: int
    distill: bool  # False: labels only (plain fine-tuning)


def checkpoint_path(key_parts: dict[str, Any]) -> Path:
    """Where a run decided by ``key_parts`` keeps its checkpoint (a file the cache folder derives
    from the model and the run's settings: :func:`edgeship.cache.derived`)."""
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return cache.derived("compress", key, "checkpoint.pt")


def data_digest(samples: list[tuple[np.ndarray, ...]], labels: list[int] | None) -> str:
    h = hashlib.sha256()
    for s in samples:
        for a in s:
            h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(labels).encode())
    return h.hexdigest()[:20]


def stack(samples: list[tuple[np.ndarray, ...]]) -> list[Any]:
    """Samples (tuples of arrays with a batch axis of 1) as one tensor per model input."""
    import torch

    return [torch.from_numpy(np.concatenate([s[k] for s in samples])) for k in range(len(samples[0]))]


def _train_mode(model: Any) -> None:
    """Training mode, but batch norms keep their running statistics (frozen): the pruned model's
    channels kept their statistics, and a few hundred samples in small batches would only add
    noise to them."""
    import torch

    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def distill(student: Any, teacher: Any, samples: list[tuple[np.ndarray, ...]], labels: list[int] | None,
            settings: DistillSettings, *, classifier: bool, checkpoint: Path,
            say: Callable[[str], None] = lambda _m: None, interrupt_after: int | None = None) -> dict[str, Any]:
    """Train ``student`` (in place) on ``samples``; return the history. ``interrupt_after`` (tests)
    raises KeyboardInterrupt after that many steps, as Ctrl-C would."""
    import torch
    import torch.nn.functional as F

    from ..sources import flatten_outputs

    if not settings.distill and labels is None:
        from ..errors import UsageError

        raise UsageError("--no-distill trains on labels, and the training data has none",
                         hint="give labelled data (an image folder per class, or an .npz with x and y), or keep --distill")
    torch.manual_seed(settings.seed)
    xs = stack(samples)
    n = len(samples)
    with torch.no_grad():
        teacher.eval()
        targets = [torch.cat(parts) for parts in zip(*[flatten_outputs(teacher(*[x[i:i + 64] for x in xs]))
                                                        for i in range(0, n, 64)])]
    scale = [t.var().clamp_min(1e-12) for t in targets]
    y = torch.tensor(labels, dtype=torch.long) if labels is not None else None
    # a tenth of the data (seeded) is held out: each epoch is judged on it, and the best state is kept
    # (the pruned model as it was counts as epoch 0: fine-tuning that does not help is not kept)
    split = np.random.default_rng([settings.seed, 10**6]).permutation(n)
    held = split[: n // 10] if n >= 20 else split[:0]
    fit = np.sort(split[len(held):])
    held_t = torch.from_numpy(np.sort(held))
    n_fit = len(fit)
    steps_per_epoch = math.ceil(n_fit / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    opt = torch.optim.Adam(student.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    def loss_of(outs: list[Any], idx: Any) -> tuple[Any, int]:
        """(loss, correct predictions) of the student's ``outs`` on the samples ``idx``."""
        if not classifier:
            return sum(F.mse_loss(o, t[idx]) / v for o, t, v in zip(outs, targets, scale)), 0
        logits, soft = outs[0], targets[0][idx]
        loss: Any = 0.0
        if settings.distill:
            kd = F.kl_div(F.log_softmax(logits / T, 1), F.log_softmax(soft / T, 1), log_target=True,
                          reduction="batchmean") * T * T
            loss = kd if y is None else (1 - settings.alpha) * kd
        if y is not None:
            loss = loss + (settings.alpha if settings.distill else 1.0) * F.cross_entropy(logits, y[idx])
        ref = y[idx] if y is not None else soft.argmax(1)
        return loss, int((logits.argmax(1) == ref).sum())

    def held_out() -> dict[str, float]:
        if not len(held_t):
            return {}
        student.eval()
        with torch.no_grad():
            loss, correct = loss_of(flatten_outputs(student(*[x[held_t] for x in xs])), held_t)
        return {"held_out_loss": float(loss), **({"held_out_" + measure: correct / len(held_t)} if classifier else {})}

    measure = "accuracy" if y is not None else "agreement"
    T = settings.temperature
    first = held_out()
    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "best_epoch": 0,
                             "best_loss": first.get("held_out_loss", math.inf), "untuned": first}
    best = {k: v.detach().clone() for k, v in student.state_dict().items()}
    if checkpoint.is_file():
        ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
        try:
            student.load_state_dict(ck["model"])
        except RuntimeError:  # a checkpoint of another structure under this key: start again
            say(f"ignoring a checkpoint that does not fit this model: {checkpoint}")
        else:
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            torch.set_rng_state(ck["rng"])
            state = json.loads(ck["state"])
            best = ck["best"]
            say(f"resuming from epoch {state['epoch'] + 1}, step {state['step']} ({checkpoint})")

    def save() -> None:
        cache.write_derived(checkpoint, lambda tmp: torch.save({
            "model": student.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
            "rng": torch.get_rng_state(), "best": best, "state": json.dumps(state)}, tmp))

    done, last_save, last_say = 0, time.monotonic(), 0.0
    try:
        while state["epoch"] < settings.epochs:
            e = state["epoch"]
            order = torch.from_numpy(fit[np.random.default_rng([settings.seed, e]).permutation(n_fit)])
            _train_mode(student)
            seen, correct, loss_sum = state.get("running", (0, 0, 0.0))  # this epoch's so far (when resumed)
            for s in range(state["step"], steps_per_epoch):
                idx = order[s * settings.batch_size:(s + 1) * settings.batch_size]
                loss, right = loss_of(flatten_outputs(student(*[x[idx] for x in xs])), idx)
                correct += right
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                seen += len(idx)
                loss_sum += float(loss.detach()) * len(idx)
                state["step"], state["running"] = s + 1, (seen, correct, loss_sum)
                done += 1
                now = time.monotonic()
                if now - last_say > 0.5 or s + 1 == steps_per_epoch:
                    last_say = now
                    acc = f", {measure} {correct / seen:.1%}" if classifier else ""
                    say(f"fine-tuning (distillation{' + labels' if y is not None and settings.distill else ''}): "
                        f"epoch {e + 1}/{settings.epochs}, step {s + 1}/{steps_per_epoch}, loss {loss_sum / seen:.4f}{acc}")
                if now - last_save > CHECKPOINT_EVERY_S:
                    save()
                    last_save = now
                if interrupt_after is not None and done >= interrupt_after:
                    raise KeyboardInterrupt
            judged = held_out()
            state["history"].append({"epoch": e + 1, **({"loss": loss_sum / seen} if seen else {}),
                                     **({"train_" + measure: correct / seen} if classifier and seen else {}), **judged})
            if judged.get("held_out_loss", -math.inf) < state["best_loss"]:
                state["best_epoch"], state["best_loss"] = e + 1, judged.get("held_out_loss", -math.inf)
                best = {k: v.detach().clone() for k, v in student.state_dict().items()}
            state["epoch"], state["step"], state["running"] = e + 1, 0, (0, 0, 0.0)
            save()
            last_save = time.monotonic()
    except KeyboardInterrupt:
        save()
        raise KeyboardInterrupt(f"interrupted at epoch {state['epoch'] + 1}/{settings.epochs}, step {state['step']}: "
                                f"the training so far is kept in {checkpoint}; run the same command again to resume "
                                "(nothing was written to the output folder)") from None
    if len(held_t):  # the best epoch on the held-out data (0: the pruned model as it was)
        student.load_state_dict(best)
    student.eval()
    checkpoint.unlink(missing_ok=True)
    kept = state["best_epoch"] if len(held_t) else settings.epochs
    return {"settings": asdict(settings), "samples": n_fit, "held_out": len(held_t), "labels": y is not None,
            "history": state["history"], "untuned": state["untuned"], "kept_epoch": kept,
            "kept": (f"epoch {kept} of {settings.epochs}, the lowest loss on the {len(held_t)} held-out samples" if kept
                     else f"the pruned model as it was: no epoch lowered the loss on the {len(held_t)} held-out samples")
            if len(held_t) else f"the last epoch (too few samples, {n}, to hold some out)",
            "loss": "KL divergence to the teacher at temperature T (x T^2)" +
                    (f" + {settings.alpha:g} x cross-entropy on the labels" if y is not None else "")
            if classifier and settings.distill else ("cross-entropy on the labels" if classifier else
                                                     "mean squared error to the teacher's outputs")}
